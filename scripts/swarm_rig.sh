#!/usr/bin/env bash
# A Docker Swarm of three nodes on this machine, for pystributed's cluster place (CLUSTER = "swarm")
# and its sweeps: `scripts/sandbox.sh start --swarm` starts the sandbox, then this.
#
# Each node is what a GPU server in the field is, as far as pystributed can tell:
#   - its own network namespace (pst-swarm1..3), with an address on 10.77.0.0/24 (10.77.0.11..13)
#     behind a veth pair, all joined by a bridge in a fourth namespace (pst-swarm-hub); this machine
#     reaches them through one more veth pair, 10.77.0.1 on its side. Nothing is bridged, routed or
#     addressed in the root namespace beyond that one /24 on that one veth;
#   - its own mount namespace, in which the ssh user's home is a folder of its own
#     ($SWARM/nodeN/home): a run folder on one node is not on the others, as on separate machines;
#   - a dockerd (started with `nsenter --net=`, never `ip netns exec`, whose fresh mount namespace
#     hides the cgroup mounts) that advertises 2 fake GPUs (`--node-generic-resource gpu=GPU-<uuid>`),
#     its docker_gwbridge made beforehand on 10.77.1.0/24, inside the namespace;
#   - an sshd on port 22 of its address, for the user pystributed-swarm (who may use that dockerd),
#     with a fake `nvidia-smi` on that user's PATH that lists the node's 2 fake GPUs;
#   - the sandbox's registry at 127.0.0.1:$REGISTRY_PORT, as on this machine: a registry process in
#     the node's namespace serving the sandbox registry's storage, so that an image pushed here under
#     127.0.0.1:$REGISTRY_PORT/... is pulled there under the same name.
# The swarm itself is formed by `python -m pystributed cluster init` (ssh to the three nodes), as a
# user would; its overlay address pool is 10.77.2.0/24.
#
#   scripts/swarm_rig.sh start    start the nodes (idempotent) and form the swarm
#   scripts/swarm_rig.sh env      the exports that point pystributed at the manager
#   scripts/swarm_rig.sh status   each node's pieces
#   scripts/swarm_rig.sh stop     stop the nodes, remove the namespaces; `clean` also their state
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SANDBOX=${PYSTRIBUTED_SANDBOX:-/tmp/pystributed-sandbox}
CACHE=${PYSTRIBUTED_SANDBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pystributed-sandbox}
REGISTRY_PORT=${PYSTRIBUTED_SANDBOX_REGISTRY_PORT:-5000}
SWARM=$SANDBOX/swarm
NODES=(1 2 3)
GPUS_PER_NODE=2
NET=10.77.0            # the nodes' link: .1 here, .1N for node N
GWBRIDGE=10.77.1.0/24  # each node's docker_gwbridge (inside its namespace)
POOL=10.77.2.0/24      # the swarm's overlay networks (ingress)
USER_NAME=pystributed-swarm
HUB=pst-swarm-hub
HOST_VETH=pst-swarm0

WHO="swarm rig" LOGS=$SWARM
# shellcheck source=scripts/sandbox_lib.sh
. "$HERE/sandbox_lib.sh"

netns() { echo "pst-swarm$1"; }
address() { echo "$NET.1$1"; }
alias_of() { echo "pystributed-swarm$1"; }
gpu_uuid() { printf 'GPU-7700000%s-0000-4000-8000-%012d' "$1" "$2"; }  # node, index
node_dir() { echo "$SWARM/node$1"; }
holder() { cat "$(node_dir "$1")/holder.pid"; }
in_node() {  # in_node N COMMAND...: in node N's mount and network namespaces
    local n=$1
    shift
    nsenter --mount="/proc/$(holder "$n")/ns/mnt" --net="/var/run/netns/$(netns "$n")" "$@"
}
own_mount_namespace() { [ "$(readlink "/proc/$(holder "$1")/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]; }
node_docker() { docker -H "unix://$(node_dir "$1")/docker.sock" "${@:2}"; }

network() {
    ip netns list | grep -qw "$HUB" || {
        log "making the network: $HUB with a bridge, $HOST_VETH ($NET.1) here"
        ip netns add "$HUB"
        ip -n "$HUB" link add br0 type bridge
        ip -n "$HUB" link set br0 up
    }
    ip link show "$HOST_VETH" >/dev/null 2>&1 || {
        ip link add "$HOST_VETH" type veth peer name up0 netns "$HUB"
        ip addr add "$NET.1/24" dev "$HOST_VETH"
        ip link set "$HOST_VETH" up
        ip -n "$HUB" link set up0 master br0 up
    }
    local n
    for n in "${NODES[@]}"; do
        ip netns list | grep -qw "$(netns "$n")" && continue
        ip netns add "$(netns "$n")"
        ip -n "$HUB" link add "n$n" type veth peer name eth0 netns "$(netns "$n")"
        ip -n "$HUB" link set "n$n" master br0 up
        ip -n "$(netns "$n")" addr add "$(address "$n")/24" dev eth0
        ip -n "$(netns "$n")" link set eth0 up
        ip -n "$(netns "$n")" link set lo up
    done
}

user() {
    getent group "$USER_NAME" >/dev/null || groupadd "$USER_NAME"
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        log "creating the user $USER_NAME (it may use the nodes' engines)"
        useradd --create-home --shell /bin/bash --gid "$USER_NAME" "$USER_NAME"
        usermod -p '*' "$USER_NAME"  # no password, but not locked: sshd refuses locked accounts
    fi
}

fake_nvidia_smi() {  # fake_nvidia_smi N: node N's GPUs, as nvidia-smi prints them for the queries we make
    local n=$1 g lines=""
    for g in $(seq 0 $((GPUS_PER_NODE - 1))); do lines+="$g, $(gpu_uuid "$n" "$g")"$'\n'; done
    cat <<EOF
#!/bin/sh
# A fake nvidia-smi of the swarm rig's node $n: its GPUs are the generic resources its dockerd advertises.
gpus='${lines%$'\n'}'
case "\$*" in
*--query-compute-apps*) ;;  # no process uses them
*--query-gpu=index,uuid,*) printf '%s\n' "\$gpus" | sed 's/\$/, 0/' ;;
*--query-gpu=index,uuid*) printf '%s\n' "\$gpus" ;;
*-L*) printf '%s\n' "\$gpus" | sed 's/^\([0-9]*\), \(.*\)/GPU \1: Fake GPU (UUID: \2)/' ;;
*) echo "fake nvidia-smi (swarm rig node $n): \$*" >&2; exit 2 ;;
esac
EOF
}

start_node() {  # start_node N
    local n=$1 dir data
    dir=$(node_dir "$n")
    data=$CACHE/swarm/node$n
    mkdir -p "$dir/home" "$dir/bin" "$dir/ssh" "$data"
    chown "$USER_NAME:$USER_NAME" "$dir/home"
    chmod 755 "$dir" "$dir/bin"
    fake_nvidia_smi "$n" >"$dir/bin/nvidia-smi"
    chmod 755 "$dir/bin/nvidia-smi"
    if ! alive "$dir/holder.pid"; then
        # A process that only holds the node's mount namespace, in which the user's home is the node's own.
        unshare --mount --propagation slave -- sleep infinity >/dev/null 2>&1 &
        echo $! >"$dir/holder.pid"
        wait_for 10 "node $n's mount namespace" own_mount_namespace "$n"
        nsenter --mount="/proc/$(holder "$n")/ns/mnt" mount --bind "$dir/home" "$(getent passwd "$USER_NAME" | cut -d: -f6)"
    fi
    if ! alive "$dir/docker.pid"; then
        log "starting node $n: dockerd at $(address "$n") with GPUs $(gpu_uuid "$n" 0) $(gpu_uuid "$n" 1)"
        rm -rf "$data/swarm"  # a plain node: `cluster init` makes the swarm
        local gpus=() g
        for g in $(seq 0 $((GPUS_PER_NODE - 1))); do gpus+=(--node-generic-resource "gpu=$(gpu_uuid "$n" "$g")"); done
        in_node "$n" dockerd --host "unix://$dir/docker.sock" --data-root "$data" --exec-root "$dir/exec" \
            --pidfile "$dir/docker.pid" --group "$USER_NAME" --bridge=none --iptables=false --ip6tables=false \
            "${gpus[@]}" >"$dir/dockerd.log" 2>&1 &
        wait_for 60 "node $n's dockerd" node_docker "$n" info
        wait_for 10 "node $n's dockerd (pid file)" alive "$dir/docker.pid"
    fi
    node_docker "$n" network inspect docker_gwbridge >/dev/null 2>&1 ||
        node_docker "$n" network create --driver bridge --subnet "$GWBRIDGE" \
            --opt com.docker.network.bridge.name=docker_gwbridge \
            --opt com.docker.network.bridge.enable_icc=false \
            --opt com.docker.network.bridge.enable_ip_masquerade=false docker_gwbridge >/dev/null
    if ! alive "$dir/registry.pid"; then
        sed "s/^\( *addr:\).*/\1 127.0.0.1:$REGISTRY_PORT/" "$SANDBOX/registry/config.yml" >"$dir/registry.yml"
        # nsenter itself, not in_node: a function in the background is a subshell, whose pid $! would
        # be (and `stop` would end it, leaving the registry running); nsenter execs the registry.
        nsenter --mount="/proc/$(holder "$n")/ns/mnt" --net="/var/run/netns/$(netns "$n")" \
            docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
        echo $! >"$dir/registry.pid"
        wait_for 30 "node $n's registry" in_node "$n" bash -c "exec 3<>/dev/tcp/127.0.0.1/$REGISTRY_PORT"
    fi
    [ -f "$dir/ssh/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/host_key"
    cat >"$dir/ssh/sshd_config" <<EOF
ListenAddress $(address "$n")
Port 22
HostKey $dir/ssh/host_key
PidFile $dir/ssh/sshd.pid
AuthorizedKeysFile $SWARM/ssh/authorized_keys
AllowUsers $USER_NAME
$(sshd_common)
SetEnv DOCKER_HOST=unix://$dir/docker.sock PATH=$dir/bin:/usr/local/bin:/usr/bin:/bin
EOF
    if ! alive "$dir/ssh/sshd.pid"; then
        mkdir -p /run/sshd
        in_node "$n" "$(command -v sshd)" -f "$dir/ssh/sshd_config" -E "$dir/ssh/sshd.log"
    fi
}

client() {  # the client side: a key, a known_hosts pinning each node's host key, a Host alias per node
    local dir=$SWARM/ssh n
    mkdir -p "$dir"
    chmod 755 "$SANDBOX" "$SWARM" "$dir"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    chmod 644 "$dir/authorized_keys"
    for n in "${NODES[@]}"; do
        printf '%s %s\n' "$(address "$n")" "$(cut -d' ' -f1,2 "$(node_dir "$n")/ssh/host_key.pub")"
    done >"$dir/known_hosts"
    {
        for n in "${NODES[@]}"; do
            printf 'Host %s\n    HostName %s\n' "$(alias_of "$n")" "$(address "$n")"
        done
        # Also by address: pystributed reaches a node by the address Swarm knows it by.
        cat <<EOF
Host pystributed-swarm* $NET.*
    User $USER_NAME
$(client_options "$dir")
EOF
    } >"$dir/ssh_config"
}

form_swarm() {
    if [ "$(node_docker 1 info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
        return
    fi
    log "forming the swarm with \`python -m pystributed cluster init\`"
    local hosts=() n
    for n in "${NODES[@]}"; do hosts+=("$(alias_of "$n")"); done
    # From the rig's folder (no config.py there), with no config file named: the hosts are all it needs.
    # The installed package (scripts/test.sh installs the wheel), as a user has it.
    (cd "$SWARM" && env -u PYSTRIBUTED_CONFIG \
        PYSTRIBUTED_SSH_OPTIONS="-F $SWARM/ssh/ssh_config" \
        python3 -m pystributed cluster init --default-addr-pool "$POOL" "${hosts[@]}") >"$SWARM/cluster-init.log" 2>&1 ||
        { cat "$SWARM/cluster-init.log" >&2; die "cluster init failed"; }
}

start() {
    [ "$(id -u)" = 0 ] || die "needs root: it makes network namespaces and starts daemons"
    for tool in dockerd docker-registry sshd nsenter unshare ip; do
        command -v "$tool" >/dev/null || die "$tool is missing: run 'scripts/sandbox.sh install --all' first"
    done
    "$HERE/sandbox.sh" start  # the registry and the base image are the sandbox's
    mkdir -p "$SWARM" "$CACHE/swarm"
    user
    network
    local n
    for n in "${NODES[@]}"; do start_node "$n"; done
    client
    for n in "${NODES[@]}"; do
        wait_for 30 "sshd of node $n" ssh -F "$SWARM/ssh/ssh_config" "$(alias_of "$n")" docker info
    done
    form_swarm
    log "ready; point pystributed at it with: eval \"\$($HERE/sandbox.sh env --swarm)\""
}

env_exports() {
    local hosts=() n
    for n in "${NODES[@]}"; do hosts+=("$(alias_of "$n")"); done
    "$HERE/sandbox.sh" env | grep -v -e '^export PYSTRIBUTED_REMOTE_SERVER=' -e '^export PYSTRIBUTED_SSH_OPTIONS='
    cat <<EOF
export PYSTRIBUTED_CLUSTER=swarm
export PYSTRIBUTED_REMOTE_SERVER=$(alias_of 1)
export PYSTRIBUTED_SSH_OPTIONS='-F $SWARM/ssh/ssh_config'
export PYSTRIBUTED_SANDBOX_SWARM_NODES='${hosts[*]}'
export PYSTRIBUTED_SANDBOX_SWARM_DIR=$SWARM
EOF
}

stop() {
    local n dir
    for n in "${NODES[@]}"; do
        dir=$(node_dir "$n")
        stop_pid "$dir/ssh/sshd.pid"
        stop_pid "$dir/registry.pid"
        stop_pid "$dir/docker.pid"
        stop_pid "$dir/holder.pid"  # its mount namespace (the home's bind mount) goes with it
        ip netns del "$(netns "$n")" 2>/dev/null || true
    done
    ip netns del "$HUB" 2>/dev/null || true  # the veth pairs go with it
    ip link del "$HOST_VETH" 2>/dev/null || true
}

status() {
    local ok=0 n f
    for n in "${NODES[@]}"; do
        for f in holder.pid docker.pid registry.pid ssh/sshd.pid; do
            if alive "$(node_dir "$n")/$f"; then echo "running  node$n/$f"; else echo "stopped  node$n/$f"; ok=1; fi
        done
    done
    return $ok
}

rig_main --swarm "${1:-}" "$SWARM" "$CACHE/swarm"
