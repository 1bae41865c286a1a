# shellcheck shell=bash
# What scripts/sandbox.sh and scripts/swarm_rig.sh share; each sets WHO (its name in messages) and
# LOGS (where its daemons' logs are) before sourcing this.

log() { printf '%s: %s\n' "$WHO" "$*" >&2; }
die() { log "$*"; exit 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up; see the logs in $LOGS"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {  # stop_pid PIDFILE
    alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

client_options() {  # client_options DIR: the ssh_config lines of a Host entry for the key and known_hosts in DIR
    printf '    %s\n' "IdentityFile $1/client_key" "IdentitiesOnly yes" "UserKnownHostsFile $1/known_hosts" \
        "StrictHostKeyChecking yes" "BatchMode yes"
}
