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
#   pystributed-sandbox-podman user pystributed-podman bash, whose `docker` is rootless Podman (when
#                                                      podman is installed; see podman_user)
# Their welcome lines go to stdout, before the output of every command run over ssh.
# They have a fake `nvidia-smi` first on their PATH (see fake_gpus), and no GPU.
#
# The fish and tcsh logins are made only where fish and tcsh are installed (`install --all`); the
# demo needs none of them.
#
# Its commands: `scripts/sandbox.sh --help` (usage, below).
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
PLOT_IMAGE=pystributed-sandbox/python-plot:bookworm  # BASE_IMAGE with matplotlib, pandas, IPython
HOST_ALIAS=pystributed-sandbox
# The login variants: user $SSH_USER-VARIANT, Host alias $HOST_ALIAS-VARIANT ("" is the plain one).
VARIANTS=("")
for shell in fish tcsh; do if command -v "$shell" >/dev/null; then VARIANTS+=("$shell"); fi; done
VARIANTS+=(noisy)
if command -v podman >/dev/null; then VARIANTS+=(podman); fi
# The sandbox's users and groups (uninstall deletes them): the logins above, and the rigs'.
USERS=("$SSH_USER" "$SSH_USER-fish" "$SSH_USER-tcsh" "$SSH_USER-noisy" "$SSH_USER-podman" pystributed-swarm
    pystributed-slurm)
GROUPS_MADE=("$SSH_USER" "$SSH_USER-podman" pystributed-swarm pystributed-slurm)
# The Debian packages `install` adds where missing, as WHAT:PACKAGE (WHAT: a program on PATH, or a
# file's absolute path). `install` alone: the demo's (the sandbox itself).
DEMO_PACKAGES=(dockerd:docker.io docker-registry:docker-registry sshd:openssh-server debootstrap:debootstrap)
# `install --all`: also what the test suite needs.
TEST_PACKAGES=(
    rsync:rsync            # DATA syncs with it when both sides have it
    ip:iproute2            # the swarm rig's namespaces (scripts/swarm_rig.sh)
    fish:fish              # login shells of the other sandbox users
    tcsh:tcsh
    shellcheck:shellcheck  # tests/test_gpu_check_script.py
    zsh:zsh                # tests/test_server_sh.py runs server.sh under it too
    podman:podman          # the rootless Podman of pystributed-podman
    newuidmap:uidmap
    # The Slurm rig (scripts/slurm_rig.sh): Debian's Slurm 22.05 and munge; nothing starts by itself.
    slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge
    # The browser tests (tests/e2e/test_browser_e2e.py): headless Chromium and its driver, and an
    # emoji font, as a desktop has, for the step display's marks.
    /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver
    /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf:fonts-noto-color-emoji
)
# What `install` added, one package a line, for `uninstall` to list (it removes no package itself).
INSTALLED=$CACHE/installed-packages

WHO=sandbox LOGS=$SANDBOX
# shellcheck source=scripts/sandbox_lib.sh
. "$(dirname "$0")/sandbox_lib.sh"

usage() {
    cat <<EOF
usage: $0 COMMAND    (the sandbox: Debian, as root)
  install               the apt packages the demo needs, where missing: ${DEMO_PACKAGES[*]#*:}
  install --all         also those the test suite needs (scripts/test.sh): ${TEST_PACKAGES[*]#*:}
  start [--swarm|--slurm]   start the sandbox (idempotent; the base image is built once); with
                        --swarm or --slurm also a Docker Swarm or a Slurm cluster beside it
  plot-image            build (once) $PLOT_IMAGE, the base image with matplotlib, pandas, IPython
                        (start builds it too; the sandbox must run)
  env [--swarm|--slurm]     print the shell exports that point pystributed at it
  status [--swarm|--slurm]  what runs
  stop [--swarm|--slurm]    stop it (with --swarm, --slurm: the rig only)
  clean [--swarm|--slurm]   stop it and delete its state (the base image's cache stays)
  uninstall [--dry-run] stop everything and delete what it made: its users (${USERS[*]}),
                        $SANDBOX and $CACHE; prints the packages install added, to remove
                        by hand (--dry-run: print what it would do, do nothing)
  --help                this
EOF
}

missing_packages() {  # missing_packages WHAT:PACKAGE...: the packages whose WHAT is not here
    local entry what
    for entry in "$@"; do
        what=${entry%%:*}
        case $what in
        /*) [ -e "$what" ] || echo "${entry#*:}" ;;
        *) command -v "$what" >/dev/null || echo "${entry#*:}" ;;
        esac
    done
}

install() {  # install [--all]
    local missing wanted=("${DEMO_PACKAGES[@]}")
    case ${1:-} in
    "") ;;
    --all) wanted+=("${TEST_PACKAGES[@]}") ;;
    *) usage >&2; exit 2 ;;
    esac
    mapfile -t missing < <(missing_packages "${wanted[@]}")
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "needs root to install: ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    mkdir -p "$CACHE"
    printf '%s\n' "${missing[@]}" >>"$INSTALLED"
}

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
    local name shell group=$SSH_USER
    name=$(user_of "$1")
    case $1 in
    fish | tcsh) shell=$(command -v "$1") || die "$1 is missing: run '$0 install' first" ;;
    *) shell=/bin/bash ;;
    esac
    grep -qxF "$shell" /etc/shells || echo "$shell" >>/etc/shells
    getent group "$SSH_USER" >/dev/null || groupadd "$SSH_USER"
    # The podman login is not in the group that may use the remote engine: its engine is its own.
    if [ "$1" = podman ]; then group=$name && { getent group "$group" >/dev/null || groupadd "$group"; }; fi
    if ! id "$name" >/dev/null 2>&1; then
        log "creating the user $name (login shell $shell; its group: $group)"
        useradd --create-home --shell "$shell" --gid "$group" "$name"
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
    podman) podman_user "$name" ;;
    esac
}

# The podman login's `docker` is rootless Podman, as on RHEL-family servers: subordinate ids for its
# user namespace, vfs storage, the sandbox registry marked insecure (plain HTTP), containers with no
# network (netns "none"), logs in files and cgroups by hand (there is no systemd user session behind
# an sshd without PAM). `docker` is a wrapper on its PATH that runs podman (as podman-docker's does,
# without its notice), put first by ~/.bashrc, which bash reads for `ssh HOST COMMAND` too.
podman_user() {  # podman_user NAME
    local name=$1 home
    home=$(getent passwd "$name" | cut -d: -f6)
    grep -q "^$name:" /etc/subuid || usermod --add-subuids 1000000-1065535 "$name"
    grep -q "^$name:" /etc/subgid || usermod --add-subgids 1000000-1065535 "$name"
    printf '[storage]\ndriver = "vfs"\n' | home_file "$name" .config/containers/storage.conf
    printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$REGISTRY_PORT" |
        home_file "$name" .config/containers/registries.conf
    printf '%s\n' '[containers]' 'netns = "none"' 'log_driver = "k8s-file"' '[engine]' 'cgroup_manager = "cgroupfs"' \
        'events_logger = "file"' | home_file "$name" .config/containers/containers.conf
    printf '#!/bin/sh\nexec podman --log-level=error "$@"\n' | home_file "$name" bin/docker
    chmod 755 "$home/bin/docker"
    # shellcheck disable=SC2016 # for its bash to expand
    { echo 'PATH="$HOME/bin:$PATH"; unset DOCKER_HOST'; cat /etc/skel/.bashrc; } | home_file "$name" .bashrc
}

# A fake `nvidia-smi`, for `--gpus free`: on the remote users' PATH only (sshd's SetEnv PATH below;
# the machine's own PATH, which tests with REMOTE_SERVER = "local" use, has none; a login shell's
# startup files would need one edit per shell, SetEnv reaches bash, fish and tcsh alike). It
# answers --query-gpu / --query-compute-apps (--format=csv[,noheader][,nounits]) and -L from
# $SANDBOX/gpu/gpus.csv (index, uuid, name, memory.total, memory.used, utilization.gpu) and
# apps.csv (gpu_uuid, pid, used_memory; empty: no process), which a test may rewrite (and puts
# back). Made once, they hold four GPUs, 0 and 2 busy. Each file is written whole, then renamed.
fake_gpus() {
    local dir=$SANDBOX/gpu
    mkdir -p "$dir/bin"
    chmod 755 "$dir" "$dir/bin"
    if [ ! -f "$dir/gpus.csv" ]; then
        printf '%s\n' "0, GPU-fa4e0000-0000-4000-8000-000000000000, NVIDIA H200, 143771, 7027, 100" \
            "1, GPU-fa4e0000-0000-4000-8000-000000000001, NVIDIA H200, 143771, 0, 0" \
            "2, GPU-fa4e0000-0000-4000-8000-000000000002, NVIDIA H200, 143771, 14, 0" \
            "3, GPU-fa4e0000-0000-4000-8000-000000000003, NVIDIA H200, 143771, 0, 0" >"$dir/gpus.csv.$$"
        mv "$dir/gpus.csv.$$" "$dir/gpus.csv"
    fi
    if [ ! -f "$dir/apps.csv" ]; then
        printf '%s\n' "GPU-fa4e0000-0000-4000-8000-000000000000, 4242, 7018" \
            "GPU-fa4e0000-0000-4000-8000-000000000002, 4243, 14" >"$dir/apps.csv.$$"
        mv "$dir/apps.csv.$$" "$dir/apps.csv"
    fi
    chmod 644 "$dir/gpus.csv" "$dir/apps.csv"
    {
        printf '#!/bin/sh\ndata=%s\n' "$dir"
        cat <<'EOF'
# The pystributed sandbox's fake nvidia-smi (scripts/sandbox.sh): no GPU here, only its answers.
file='' known='' fields='' format=csv
for arg in "$@"; do
    case $arg in
    --query-gpu=*) file=$data/gpus.csv known=index,uuid,name,memory.total,memory.used,utilization.gpu ;;
    --query-compute-apps=*) file=$data/apps.csv known=gpu_uuid,pid,used_memory ;;
    --format=*) format=${arg#*=} ;;
    -L) file= && break ;;
    *) echo "fake nvidia-smi (pystributed sandbox): $arg is not faked" >&2 && exit 2 ;;
    esac
    case $arg in --query-*) fields=${arg#*=} ;; esac
done
if [ -z "$file" ]; then  # -L, or no arguments
    exec awk -F' *, *' 'NF > 1 { printf "GPU %s: %s (UUID: %s)\n", $1, $3, $2 }' "$data/gpus.csv"
fi
exec awk -F' *, *' -v known="$known" -v fields="$fields" -v format="$format" '
function title(field) {
    if (field == "used_memory") field = "used_gpu_memory"
    if (units && field ~ /memory/) return field " [MiB]"
    if (units && field ~ /utilization/) return field " [%]"
    return field
}
BEGIN {
    n = split(known, names, ",")
    for (i = 1; i <= n; i++) column[names[i]] = i
    m = split(fields, want, ",")
    for (i = 1; i <= m; i++)
        if (!(want[i] in column)) { printf "Field \"%s\" is not a valid field to query.\n\n", want[i]; exit 2 }
    units = format !~ /nounits/
    if (format !~ /noheader/)
        for (i = 1; i <= m; i++) printf "%s%s", title(want[i]), (i < m ? ", " : "\n")
}
NF > 1 {
    for (i = 1; i <= m; i++) {
        value = $(column[want[i]])
        if (units && want[i] ~ /memory/) value = value " MiB"
        if (units && want[i] ~ /utilization/) value = value " %"
        printf "%s%s", value, (i < m ? ", " : "\n")
    }
}' "$file"
EOF
    } >"$dir/bin/nvidia-smi.$$"
    chmod 755 "$dir/bin/nvidia-smi.$$"
    mv "$dir/bin/nvidia-smi.$$" "$dir/bin/nvidia-smi"
}

start_sshd() {
    local dir=$SANDBOX/ssh users=() variant
    for variant in "${VARIANTS[@]}"; do users+=("$(user_of "$variant")"); done
    mkdir -p "$dir" /run/sshd
    chmod 755 "$SANDBOX" "$dir"
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys.$$"  # renamed into place, as below
    mv "$dir/authorized_keys.$$" "$dir/authorized_keys"
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
SetEnv DOCKER_HOST=unix://$SANDBOX/remote/docker.sock PATH=$SANDBOX/gpu/bin:/usr/local/bin:/usr/bin:/bin:/usr/games
EOF
    # A running sshd whose config changed (say, a sandbox from before a user was added) rereads it.
    local reload=
    cmp -s "$dir/sshd_config.new" "$dir/sshd_config" || reload=yes
    mv "$dir/sshd_config.new" "$dir/sshd_config"
    # The client side: a Host alias per user, the key, and a known_hosts that pins the host key.
    # Each written whole under another name, then renamed: a start while tests run (each test session
    # starts the sandbox) must never show ssh a half-written file.
    printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts.$$"
    mv "$dir/known_hosts.$$" "$dir/known_hosts"
    for variant in "${VARIANTS[@]}"; do
        cat <<EOF
Host $(alias_of "$variant")
    HostName 127.0.0.1
    Port $SSH_PORT
    User $(user_of "$variant")
$(client_options "$dir")
EOF
    done >"$dir/ssh_config.$$"
    mv "$dir/ssh_config.$$" "$dir/ssh_config"
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
    debootstrap_image "$BASE_IMAGE" python3,python3-pip,python-is-python3 "about a minute"
}

# The image with matplotlib, pandas and IPython (Debian's), for the figures' and display()'s tests.
build_plot_image() {
    local packages=python3,python3-pip,python-is-python3,python3-matplotlib,python3-pandas,python3-ipython
    debootstrap_image "$PLOT_IMAGE" "$packages" "a few minutes"
}

debootstrap_image() {  # debootstrap_image IMAGE PACKAGES HOW_LONG: built once per machine
    local local_docker=(docker -H "unix://$SANDBOX/local/docker.sock") image=$1
    "${local_docker[@]}" image inspect "$image" >/dev/null 2>&1 && return
    log "building the image $image with debootstrap (once per machine, $3)"
    local root=$CACHE/rootfs-${image//[^a-z0-9]/-}
    rm -rf "$root"
    debootstrap --variant=minbase --include="$2" \
        bookworm "$root" >"$SANDBOX/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $SANDBOX/debootstrap.log"
    # Like the python:3.x images: pip may install into the image's Python.
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "${local_docker[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$image" >/dev/null
    rm -rf "$root"
}

start() {
    for tool in dockerd docker-registry sshd debootstrap; do
        command -v "$tool" >/dev/null || die "$tool is missing: run '$0 install' first"
    done
    mkdir -p "$SANDBOX" "$CACHE"
    start_engine local "$CACHE/local-engine"
    for variant in "${VARIANTS[@]}"; do create_user "$variant"; done
    start_engine remote "$SANDBOX/remote/data" --group "$SSH_USER"
    start_registry
    fake_gpus
    start_sshd
    build_base_image
    build_plot_image
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
export PYSTRIBUTED_SANDBOX_PLOT_IMAGE=$PLOT_IMAGE
EOF
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

uninstall() {  # uninstall [--dry-run]
    local dry='' name installed=()
    case ${1:-} in
    "") ;;
    --dry-run) dry=yes ;;
    *) usage >&2; exit 2 ;;
    esac
    act() { if [ -n "$dry" ]; then echo "would run: $*"; else "$@"; fi; }
    [ -n "$dry" ] || [ "$(id -u)" = 0 ] || die "needs root to uninstall"
    # The rigs first (each stops its daemons, deletes its namespaces and state), then the sandbox.
    act "$(dirname "$0")/slurm_rig.sh" clean
    act "$(dirname "$0")/swarm_rig.sh" clean
    act stop
    # An engine's mounts go when it stops; one left (a dockerd that would not stop) keeps its files.
    if [ -z "$dry" ] && grep -qF -e " $SANDBOX/" -e " $CACHE/" /proc/self/mounts; then
        die "something is still mounted under $SANDBOX or $CACHE (see /proc/self/mounts): not deleting"
    fi
    for name in "${USERS[@]}"; do
        id "$name" >/dev/null 2>&1 || continue
        act pkill -KILL -u "$name" || true  # its processes (rootless Podman's, a login left open) hold it
        act userdel --remove "$name"
    done
    for name in "${GROUPS_MADE[@]}"; do
        # userdel deleted the groups named as their users, where no one else was in them
        if getent group "$name" >/dev/null; then act groupdel "$name"; fi
    done
    if [ -f "$INSTALLED" ]; then mapfile -t installed < <(sort -u "$INSTALLED"); fi
    act rm -rf "$SANDBOX" "$CACHE"
    if [ ${#installed[@]} -gt 0 ]; then
        log "uninstall removes no package; those install added, to remove by hand if nothing else needs them:"
        echo "apt-get remove ${installed[*]}"
    else
        log "uninstall removes no package, and install recorded none here; it installs these where" \
            "missing (remove by hand those you did not have before):" \
            "${DEMO_PACKAGES[*]#*:} ${TEST_PACKAGES[*]#*:}"
    fi
}

# COMMAND --swarm: the three-node Docker Swarm beside the sandbox (scripts/swarm_rig.sh; start starts both).
if [ "${2:-}" = --swarm ]; then exec "$(dirname "$0")/swarm_rig.sh" "$1"; fi
# COMMAND --slurm: the two-node Slurm cluster and its login node (scripts/slurm_rig.sh; start starts both).
if [ "${2:-}" = --slurm ]; then exec "$(dirname "$0")/slurm_rig.sh" "$1"; fi

case ${1:-} in
install) install "${2:-}" ;;
start) start ;;
plot-image) build_plot_image ;;
env) env_exports ;;
stop) stop ;;
status) status ;;
clean) stop; rm -rf "$SANDBOX" ;;
uninstall) uninstall "${2:-}" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
