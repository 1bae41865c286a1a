#!/usr/bin/env bash
# A local stand-in for "your GPU server", so the whole pystributed path can be tried on one machine:
#   - a local Docker engine (the laptop's),
#   - a registry on 127.0.0.1,
#   - a "remote" Docker engine that is reached only through an sshd on 127.0.0.1, as a non-root user.
#
# The remote logins, all in the group that may use the remote engine, each with its Host alias in
# $SANDBOX/ssh/ssh_config, so the server commands can be tried under the shells found in the field:
#   pystributed-sandbox        user pystributed        bash, quiet
#   pystributed-sandbox-fish   user pystributed-fish   fish, whose config.fish prints a welcome line
#   pystributed-sandbox-tcsh   user pystributed-tcsh   tcsh, whose ~/.tcshrc prints a welcome line
#   pystributed-sandbox-noisy  user pystributed-noisy  bash, whose ~/.bashrc prints a line first,
#                                                      also for `ssh HOST COMMAND` (bash reads it then)
# Their welcome lines go to stdout, before the output of every command run over ssh.
#
#   scripts/sandbox.sh install   apt packages it needs (Debian, as root)
#   scripts/sandbox.sh start     start everything (idempotent) and build the base image once
#   scripts/sandbox.sh env       print the shell exports that point pystributed at it
#   scripts/sandbox.sh stop      stop everything; `clean` also deletes its state
#
# Engines run with --bridge=none --iptables=false: containers get no network, nothing outside
# 127.0.0.0/8 is touched.
set -euo pipefail

SANDBOX=${PYSTRIBUTED_SANDBOX:-/tmp/pystributed-sandbox}
# The local engine's data survives `stop`, so the base image is built once per machine.
CACHE=${PYSTRIBUTED_SANDBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pystributed-sandbox}
REGISTRY_PORT=${PYSTRIBUTED_SANDBOX_REGISTRY_PORT:-5000}
SSH_PORT=${PYSTRIBUTED_SANDBOX_SSH_PORT:-2222}
SSH_USER=${PYSTRIBUTED_SANDBOX_USER:-pystributed}
BASE_IMAGE=pystributed-sandbox/python:bookworm
HOST_ALIAS=pystributed-sandbox
# The login variants: user $SSH_USER-VARIANT, Host alias $HOST_ALIAS-VARIANT ("" is the plain one).
VARIANTS=("" fish tcsh noisy)

log() { printf 'sandbox: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

install() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v sshd >/dev/null || missing+=(openssh-server)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v rsync >/dev/null || missing+=(rsync)  # DATA syncs with it when both sides have it
    command -v fish >/dev/null || missing+=(fish)    # login shells of the other sandbox users
    command -v tcsh >/dev/null || missing+=(tcsh)
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "needs root to install: ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up; see the logs in $SANDBOX"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_engine() {  # start_engine NAME DATA_ROOT [EXTRA dockerd ARGS...]
    local name=$1 data=$2
    shift 2
    local dir=$SANDBOX/$name
    mkdir -p "$dir" "$data"
    alive "$dir/docker.pid" && return
    log "starting the $name Docker engine"
    dockerd --host "unix://$dir/docker.sock" --data-root "$data" --exec-root "$dir/exec" \
        --pidfile "$dir/docker.pid" --bridge=none --iptables=false --ip6tables=false "$@" \
        >"$dir/dockerd.log" 2>&1 &
    wait_for 60 "the $name Docker engine" docker -H "unix://$dir/docker.sock" info
}

start_registry() {
    local dir=$SANDBOX/registry
    mkdir -p "$dir/data"
    alive "$dir/pid" && return
    log "starting the registry on 127.0.0.1:$REGISTRY_PORT"
    cat >"$dir/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for 30 "the registry" bash -c "exec 3<>/dev/tcp/127.0.0.1/$REGISTRY_PORT"
}

user_of() { echo "$SSH_USER${1:+-$1}"; }     # user_of VARIANT
alias_of() { echo "$HOST_ALIAS${1:+-$1}"; }  # alias_of VARIANT

home_file() {  # home_file USER PATH: write stdin to ~USER/PATH, owned by USER
    local home
    home=$(getent passwd "$1" | cut -d: -f6)
    mkdir -p "$(dirname "$home/$2")"
    cat >"$home/$2"
    chown -R "$1:$SSH_USER" "$home/${2%%/*}"
}

create_user() {  # create_user VARIANT: the login, in the group that may use the remote engine
    local name shell
    name=$(user_of "$1")
    case $1 in
    fish | tcsh) shell=$(command -v "$1") || die "$1 is missing: run '$0 install' first" ;;
    *) shell=/bin/bash ;;
    esac
    grep -qxF "$shell" /etc/shells || echo "$shell" >>/etc/shells
    getent group "$SSH_USER" >/dev/null || groupadd "$SSH_USER"
    if ! id "$name" >/dev/null 2>&1; then
        log "creating the user $name (login shell $shell; its group may use the remote engine)"
        useradd --create-home --shell "$shell" --gid "$SSH_USER" "$name"
        usermod -p '*' "$name"  # no password, but not locked: sshd refuses locked accounts
    fi
    [ "$(getent passwd "$name" | cut -d: -f7)" = "$shell" ] || usermod --shell "$shell" "$name"
    # Startup files that talk, as they do on many servers (rewritten on each start).
    case $1 in
    fish) echo 'echo "Welcome to fish on the GPU box"' | home_file "$name" .config/fish/config.fish ;;
    tcsh) echo 'echo "Welcome to tcsh on the GPU box"' | home_file "$name" .tcshrc ;;
    noisy)  # first, before Debian's "If not running interactively, don't do anything"
        { echo 'echo "Welcome to the GPU cluster! conda base activated"'; cat /etc/skel/.bashrc; } |
            home_file "$name" .bashrc ;;
    esac
}

start_sshd() {
    local dir=$SANDBOX/ssh users=() variant
    for variant in "${VARIANTS[@]}"; do users+=("$(user_of "$variant")"); done
    mkdir -p "$dir" /run/sshd
    chmod 755 "$SANDBOX" "$dir"
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    chmod 644 "$dir/authorized_keys"
    cat >"$dir/sshd_config.new" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers ${users[*]}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=unix://$SANDBOX/remote/docker.sock
EOF
    # A running sshd whose config changed (say, a sandbox from before a user was added) rereads it.
    local reload=
    cmp -s "$dir/sshd_config.new" "$dir/sshd_config" || reload=yes
    mv "$dir/sshd_config.new" "$dir/sshd_config"
    # The client side: a Host alias per user, the key, and a known_hosts that pins the host key.
    printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
    for variant in "${VARIANTS[@]}"; do
        cat <<EOF
Host $(alias_of "$variant")
    HostName 127.0.0.1
    Port $SSH_PORT
    User $(user_of "$variant")
    IdentityFile $dir/client_key
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
EOF
    done >"$dir/ssh_config"
    if alive "$dir/sshd.pid"; then
        [ -n "$reload" ] || return 0
        log "sshd's config changed: it rereads it"
        kill -HUP "$(cat "$dir/sshd.pid")"
        sleep 0.5
    else
        log "starting sshd on 127.0.0.1:$SSH_PORT (users ${users[*]})"
        "$(command -v sshd)" -f "$dir/sshd_config" -E "$dir/sshd.log"
    fi
    for variant in "${VARIANTS[@]}"; do
        wait_for 30 "sshd (as $(user_of "$variant"))" ssh -F "$dir/ssh_config" "$(alias_of "$variant")" docker info
    done
}

build_base_image() {
    local local_docker=(docker -H "unix://$SANDBOX/local/docker.sock")
    "${local_docker[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    log "building the base image $BASE_IMAGE with debootstrap (once per machine, about a minute)"
    local root=$CACHE/rootfs
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3 \
        bookworm "$root" >"$SANDBOX/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $SANDBOX/debootstrap.log"
    # Like the python:3.x images: pip may install into the image's Python.
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "${local_docker[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
}

start() {
    for tool in dockerd docker-registry sshd debootstrap fish tcsh; do
        command -v "$tool" >/dev/null || die "$tool is missing: run '$0 install' first"
    done
    mkdir -p "$SANDBOX" "$CACHE"
    start_engine local "$CACHE/local-engine"
    for variant in "${VARIANTS[@]}"; do create_user "$variant"; done
    start_engine remote "$SANDBOX/remote/data" --group "$SSH_USER"
    start_registry
    start_sshd
    build_base_image
    log "ready; point pystributed at it with: eval \"\$($0 env)\""
}

env_exports() {
    cat <<EOF
export DOCKER_HOST=unix://$SANDBOX/local/docker.sock
export PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST=unix://$SANDBOX/remote/docker.sock
export PYSTRIBUTED_REMOTE_SERVER=$HOST_ALIAS
export PYSTRIBUTED_SSH_OPTIONS='-F $SANDBOX/ssh/ssh_config'
export PYSTRIBUTED_DOCKER_REGISTRY=127.0.0.1:$REGISTRY_PORT
export PYSTRIBUTED_BASE_IMAGE=$BASE_IMAGE
EOF
}

stop_pid() {  # stop_pid PIDFILE
    alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    stop_pid "$SANDBOX/ssh/sshd.pid"
    stop_pid "$SANDBOX/registry/pid"
    stop_pid "$SANDBOX/remote/docker.pid"
    stop_pid "$SANDBOX/local/docker.pid"
}

status() {
    local ok=0
    for f in local/docker.pid remote/docker.pid registry/pid ssh/sshd.pid; do
        if alive "$SANDBOX/$f"; then echo "running  $f"; else echo "stopped  $f"; ok=1; fi
    done
    return $ok
}

case ${1:-} in
install) install ;;
start) start ;;
env) env_exports ;;
stop) stop ;;
status) status ;;
clean) stop; rm -rf "$SANDBOX" ;;
*) echo "usage: $0 {install|start|env|status|stop|clean}" >&2; exit 2 ;;
esac
