#!/usr/bin/env bash
# A Slurm cluster on this machine, for pystributed's Slurm place (CLUSTER = "slurm") and its sweeps:
# `scripts/sandbox.sh start --slurm` starts the sandbox (its registry, remote engine and base image),
# then this. Debian 12's Slurm 22.05, all on 127.0.0.1, its state under $SANDBOX/slurm:
#   - munged (run as the user munge) with a key and a socket of the rig's own;
#   - slurmctld on port 16817 and two slurmd (`slurmd -N node1`, `-N node2`; Debian's build allows
#     several on one host) on ports 16818 and 16819, each node with 2 fake GPUs (gres `gpu`: character
#     devices $SLURM/dev/fakegpu0..1, which Slurm only stat()s); no accounting, SlurmUser=root;
#   - the login node: a second sshd on 127.0.0.1:2223 for the user pystributed-slurm, with its own
#     host key, known_hosts and ssh_config (Host alias pystributed-slurm). As a login node in the
#     field, it has no Docker: that user's PATH is a folder of links to the machine's programs less
#     docker and podman. Its home is the "shared filesystem": the jobs run on the nodes, which are
#     this machine, as that user;
#   - the nodes have Docker: the task prolog gives every job step the node's own PATH and DOCKER_HOST,
#     the sandbox's remote engine (its socket's group, pystributed, is one of the user's groups), which
#     pulls from the sandbox registry on 127.0.0.1;
#   - and, where ../shared/slurm-containers is beside the checkout ($PYSTRIBUTED_SLURM_CONTAINERS_SRC),
#     NVIDIA's enroot and pyxis too, as GPU clouds run containers: built once with its build.sh into
#     $SANDBOX/enroot (kept by `clean --slurm`; built again when the sources change), enroot's config for
#     every user (its paths under $SANDBOX/enroot-users/user-UID, plain HTTP for the sandbox's registry:
#     pyxis lets no job set that), pyxis loaded by the slurmds (PlugStackConfig) and srun, enroot on the
#     slurmds' and the jobs' PATH. `env --slurm` keeps SLURM_CONTAINERS = "docker" (the route the rig's
#     tests mean unless they say pyxis); PYSTRIBUTED_SANDBOX_PYXIS says whether pyxis is there, or why not.
#
#   scripts/slurm_rig.sh start    start it (idempotent)
#   scripts/slurm_rig.sh env      the exports that point pystributed at the login node
#   scripts/slurm_rig.sh status   its daemons
#   scripts/slurm_rig.sh stop     stop its daemons (never the sandbox's); `clean` also its state
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SANDBOX=${PYSTRIBUTED_SANDBOX:-/tmp/pystributed-sandbox}
SLURM=$SANDBOX/slurm
CTLD_PORT=16817
NODES=(1 2)
GPUS_PER_NODE=2
SSH_PORT=2223
USER_NAME=pystributed-slurm
SOCKET_GROUP=${PYSTRIBUTED_SANDBOX_USER:-pystributed}  # the group of the sandbox's remote engine's socket
ALIAS=pystributed-slurm
CONF=$SLURM/etc/slurm.conf
CONTAINERS_SRC=${PYSTRIBUTED_SLURM_CONTAINERS_SRC:-$(cd "$HERE/../.." && pwd)/shared/slurm-containers}
ENROOT=$SANDBOX/enroot  # enroot's and pyxis' PREFIX
PYXIS_NOTE=$SLURM/etc/pyxis  # "yes", or why the rig has no pyxis

WHO="slurm rig" LOGS=$SLURM
# shellcheck source=scripts/sandbox_lib.sh
. "$HERE/sandbox_lib.sh"

node_port() { echo $((CTLD_PORT + $1)); }
slurm() { SLURM_CONF=$CONF "$@"; }

user() {
    getent group "$USER_NAME" >/dev/null || groupadd "$USER_NAME"
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        log "creating the user $USER_NAME (its jobs may use the remote engine: group $SOCKET_GROUP)"
        useradd --create-home --shell /bin/bash --gid "$USER_NAME" --groups "$SOCKET_GROUP" "$USER_NAME"
        usermod -p '*' "$USER_NAME"  # no password, but not locked: sshd refuses locked accounts
    fi
    chmod 755 "$(getent passwd "$USER_NAME" | cut -d: -f6)"
}

login_path() {  # the login node's PATH: links to the machine's programs, less Docker's and Podman's
    local dir=$SLURM/login/bin folder program
    rm -rf "$dir.new"
    mkdir -p "$dir.new"
    for folder in /usr/bin /usr/local/bin; do
        for program in "$folder"/*; do
            case ${program##*/} in docker* | podman* | containerd* | runc) continue ;; esac
            [ -e "$dir.new/${program##*/}" ] || ln -s "$program" "$dir.new/${program##*/}"
        done
    done
    rm -rf "$dir"
    mv "$dir.new" "$dir"
    chmod 755 "$SLURM/login" "$dir"
}

munge() {
    local dir=$SLURM/munge
    mkdir -p "$dir"
    [ -f "$dir/munge.key" ] || dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    chown -R munge:munge "$dir"
    chmod 755 "$dir"
    chmod 600 "$dir/munge.key"
    alive "$dir/munged.pid" && return
    log "starting munged"
    runuser -u munge -- munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
    wait_for 20 "munged" alive "$dir/munged.pid"
}

containers() {  # enroot and pyxis, where their sources are here; PYXIS_NOTE says how it went
    local stamp users=$SANDBOX/enroot-users
    mkdir -p "$SLURM/etc"
    if [ ! -f "$CONTAINERS_SRC/build.sh" ]; then
        echo "no $CONTAINERS_SRC (enroot and pyxis sources, with build.sh): the rig has no pyxis" >"$PYXIS_NOTE"
        log "$(cat "$PYXIS_NOTE"); its nodes run Docker alone, and the pyxis tests skip"
        return 0
    fi
    stamp=$(cat "$CONTAINERS_SRC/build.sh" "$CONTAINERS_SRC"/*.tar.gz | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$ENROOT/.source" 2>/dev/null)" != "$stamp" ] || [ ! -f "$ENROOT/lib/slurm/spank_pyxis.so" ]; then
        log "building enroot and pyxis into $ENROOT with $CONTAINERS_SRC/build.sh"
        rm -rf "$ENROOT"
        bash "$CONTAINERS_SRC/build.sh" "$ENROOT" >&2 || die "enroot and pyxis did not build (see above)"
        echo "$stamp" >"$ENROOT/.source"
    fi
    chmod 755 "$SANDBOX" "$ENROOT"
    # Every user's enroot state in a folder of its own (enroot's defaults are under /run and the home);
    # plain HTTP: the sandbox's registry (127.0.0.1:5050) has no TLS, and pyxis drops ENROOT_ALLOW_HTTP
    # from a job's environment, so only this file can say it (enroot then uses HTTP for every registry).
    mkdir -p "$users"
    chmod 1777 "$users"
    cat >"$ENROOT/etc/enroot/enroot.conf.d/pystributed-rig.conf" <<EOF
ENROOT_RUNTIME_PATH $users/user-\$(id -u)/run
ENROOT_CACHE_PATH $users/user-\$(id -u)/cache
ENROOT_DATA_PATH $users/user-\$(id -u)/data
ENROOT_ALLOW_HTTP yes
EOF
    # slurmstepd runs the TaskProlog in a pyxis step's container: it is mounted into every container.
    printf '%s %s none x-create=file,bind,ro,nosuid,nodev,private 0 -1\n' "$SLURM/etc/task_prolog.sh" \
        "$SLURM/etc/task_prolog.sh" >"$ENROOT/etc/enroot/mounts.d/30-pystributed-rig.fstab"
    mkdir -p "$SLURM/pyxis"
    echo "required $ENROOT/lib/slurm/spank_pyxis.so runtime_path=$SLURM/pyxis" >"$SLURM/etc/plugstack.conf"
    chmod 644 "$SLURM/etc/plugstack.conf"
    echo yes >"$PYXIS_NOTE"
}

pyxis() { [ "$(cat "$PYXIS_NOTE" 2>/dev/null)" = yes ]; }

configure() {
    local n nodes="" gpu
    mkdir -p "$SLURM/etc" "$SLURM/ctld" "$SLURM/dev"
    chmod 755 "$SLURM" "$SLURM/etc" "$SLURM/dev"
    for gpu in $(seq 0 $((GPUS_PER_NODE - 1))); do
        [ -c "$SLURM/dev/fakegpu$gpu" ] || mknod "$SLURM/dev/fakegpu$gpu" c 1 3
    done
    for n in "${NODES[@]}"; do
        mkdir -p "$SLURM/node$n"
        nodes+="NodeName=node$n NodeAddr=127.0.0.1 NodeHostname=$(hostname) Port=$(node_port "$n") CPUs=4"
        nodes+=" RealMemory=1000 Gres=gpu:$GPUS_PER_NODE State=UNKNOWN"$'\n'

    done
    cat >"$CONF.new" <<EOF
ClusterName=pystributed
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SLURM/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$SLURM/ctld
SlurmctldPidFile=$SLURM/ctld/slurmctld.pid
SlurmctldLogFile=$SLURM/ctld/slurmctld.log
SlurmdSpoolDir=$SLURM/%n/spool
SlurmdPidFile=$SLURM/%n/slurmd.pid
SlurmdLogFile=$SLURM/%n/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$SLURM/etc/task_prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
GresTypes=gpu
PropagateResourceLimits=NONE
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=30
MaxArraySize=1001
# (pyxis removes a cancelled step's container within KillWait: a big one takes seconds here)
KillWait=30
$(if pyxis; then echo "PlugStackConfig=$SLURM/etc/plugstack.conf"; fi)
${nodes}PartitionName=gpu Nodes=node[1-${#NODES[@]}] Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -f "$CONF" ] && ! cmp -s "$CONF.new" "$CONF" && alive "$SLURM/ctld/slurmctld.pid"; then
        log "slurm.conf changed: restarting slurmctld and the slurmds (their jobs end)"
        for n in "${NODES[@]}"; do stop_pid "$SLURM/node$n/slurmd.pid"; done
        stop_pid "$SLURM/ctld/slurmctld.pid"
    fi
    mv "$CONF.new" "$CONF"
    printf 'AutoDetect=off\nName=gpu File=%s/dev/fakegpu[0-%s]\n' "$SLURM" $((GPUS_PER_NODE - 1)) >"$SLURM/etc/gres.conf"
    # A job step's environment on a node: the node's own PATH (with docker) and engine, whatever the
    # login node's environment that sbatch carried over; none in a pyxis step's container (no engine's
    # socket there), whose PATH is its image's.
    cat >"$SLURM/etc/task_prolog.sh" <<EOF
#!/bin/sh
[ -S $SANDBOX/remote/docker.sock ] || exit 0
echo "export PATH=/usr/local/bin:/usr/bin:/bin$(if pyxis; then echo ":$ENROOT/bin"; fi)"
echo "export DOCKER_HOST=unix://$SANDBOX/remote/docker.sock"
echo "export SLURM_CONF=$CONF"
EOF
    chmod 755 "$SLURM/etc/task_prolog.sh"
    chmod 644 "$CONF" "$SLURM/etc/gres.conf"
}

daemons() {
    if ! alive "$SLURM/ctld/slurmctld.pid"; then
        log "starting slurmctld on 127.0.0.1:$CTLD_PORT"
        slurm slurmctld -c -f "$CONF"
        wait_for 30 "slurmctld" slurm scontrol ping
    fi
    local n
    for n in "${NODES[@]}"; do
        alive "$SLURM/node$n/slurmd.pid" && continue
        log "starting slurmd node$n on 127.0.0.1:$(node_port "$n") (gpu:$GPUS_PER_NODE)"
        # (slurmstepd runs pyxis' enroot from the PATH slurmd was started with)
        PATH=$PATH$(if pyxis; then echo ":$ENROOT/bin"; fi) slurm slurmd -f "$CONF" -N "node$n"
    done
    for n in "${NODES[@]}"; do
        wait_for 60 "slurmd node$n" node_idle "node$n"
    done
}

node_idle() {  # node_idle NAME: the node serves jobs (idle, mixed or allocated)
    local state
    state=$(slurm sinfo --noheader --nodes "$1" --format %T 2>/dev/null) || return 1
    case $state in idle* | mixed* | allocated*) return 0 ;; down* | drain*) slurm scontrol update nodename="$1" state=resume >/dev/null 2>&1; return 1 ;; *) return 1 ;; esac
}

login_sshd() {
    local dir=$SLURM/ssh
    mkdir -p "$dir" /run/sshd
    chmod 755 "$SANDBOX" "$dir"
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    chmod 644 "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $USER_NAME
$(sshd_common)
SetEnv PATH=$SLURM/login/bin SLURM_CONF=$CONF
EOF
    printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts.$$"
    mv "$dir/known_hosts.$$" "$dir/known_hosts"
    cat >"$dir/ssh_config.$$" <<EOF
Host $ALIAS
    HostName 127.0.0.1
    Port $SSH_PORT
    User $USER_NAME
$(client_options "$dir")
EOF
    mv "$dir/ssh_config.$$" "$dir/ssh_config"
    if ! alive "$dir/sshd.pid"; then
        log "starting the login node's sshd on 127.0.0.1:$SSH_PORT (user $USER_NAME)"
        "$(command -v sshd)" -f "$dir/sshd_config" -E "$dir/sshd.log"
    fi
    wait_for 30 "the login node's sshd" ssh -F "$dir/ssh_config" "$ALIAS" sinfo
}

start() {
    [ "$(id -u)" = 0 ] || die "needs root: it starts daemons and makes a user"
    for tool in slurmctld slurmd sbatch munged sshd; do
        command -v "$tool" >/dev/null || die "$tool is missing: run 'scripts/sandbox.sh install --all' first"
    done
    "$HERE/sandbox.sh" start  # the registry, the remote engine and the base image are the sandbox's
    mkdir -p "$SLURM"
    user
    login_path
    munge
    containers
    configure
    daemons
    login_sshd
    log "ready; point pystributed at it with: eval \"\$($HERE/sandbox.sh env --slurm)\""
}

env_exports() {
    "$HERE/sandbox.sh" env | grep -v -e '^export PYSTRIBUTED_REMOTE_SERVER=' -e '^export PYSTRIBUTED_SSH_OPTIONS='
    cat <<EOF
export PYSTRIBUTED_CLUSTER=slurm
export PYSTRIBUTED_REMOTE_SERVER=$ALIAS
export PYSTRIBUTED_SSH_OPTIONS='-F $SLURM/ssh/ssh_config'
export PYSTRIBUTED_SANDBOX_SLURM_DIR=$SLURM
export PYSTRIBUTED_SANDBOX_SLURM_CONF=$CONF
export PYSTRIBUTED_SLURM_CONTAINERS=docker
export PYSTRIBUTED_SANDBOX_PYXIS='$(cat "$PYXIS_NOTE" 2>/dev/null || echo "the rig was not started")'
EOF
}

stop() {
    local n
    stop_pid "$SLURM/ssh/sshd.pid"
    for n in "${NODES[@]}"; do stop_pid "$SLURM/node$n/slurmd.pid"; done
    stop_pid "$SLURM/ctld/slurmctld.pid"
    stop_pid "$SLURM/munge/munged.pid"
}

status() {
    local ok=0 f
    for f in munge/munged.pid ctld/slurmctld.pid node1/slurmd.pid node2/slurmd.pid ssh/sshd.pid; do
        if alive "$SLURM/$f"; then echo "running  slurm/$f"; else echo "stopped  slurm/$f"; ok=1; fi
    done
    return $ok
}

rig_main --slurm "${1:-}" "$SLURM"
