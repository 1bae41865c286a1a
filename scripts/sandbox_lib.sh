# shellcheck shell=bash
# What scripts/sandbox.sh and the rigs (swarm_rig.sh, slurm_rig.sh) share; each sets WHO (its name in messages) and
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

sshd_common() {  # the sshd_config lines of every sshd of ours: keys only, no PAM, many logins at once
    printf '%s\n' "PasswordAuthentication no" "KbdInteractiveAuthentication no" "UsePAM no" "StrictModes no" \
        "MaxStartups 100:30:200"
}

rig_main() {  # rig_main FLAG COMMAND [FOLDER...]: a rig script's commands (`clean` also deletes FOLDERs)
    local flag=$1 command=${2:-}
    case $command in
    start) start ;;
    env) env_exports ;;
    stop) stop ;;
    status) status ;;
    clean) stop; rm -rf "${@:3}" ;;
    *) echo "usage: $0 {start|env|status|stop|clean}  (or scripts/sandbox.sh COMMAND $flag)" >&2; exit 2 ;;
    esac
}
