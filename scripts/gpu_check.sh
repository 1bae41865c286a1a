#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and Docker: run a PyTorch cell through `python -m pystributed run`
# on the GPU, and print what it measured (the GPU's name, bf16 matrix products in TFLOP/s), which
# also comes back as results/<run-id>/gpu.json. For a person or a lent machine: CI has no GPU, and
# the test suite only checks that this script parses.
#
#   scripts/gpu_check.sh              # on this machine's engine (REMOTE_SERVER = "local"), as root
#                                     # or a user of the docker group
#   PYSTRIBUTED_REMOTE_SERVER=gpu-box PYSTRIBUTED_DOCKER_REGISTRY=registry:5000 scripts/gpu_check.sh
#                                     # on your server (any PYSTRIBUTED_* settings apply)
#
# How the container reaches the GPU (GPU_CHECK_MODE, by default the first that applies):
#   gpus     `docker run --gpus all` (GPU_CHECK_GPUS, e.g. free): the engine has the NVIDIA Container
#            Toolkit. BASE_IMAGE is GPU_CHECK_IMAGE (default pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime),
#            which the engine must have or be able to pull. Always so for a server.
#   devices  no toolkit, this machine only: the device nodes (--device /dev/nvidia0 ...) and, read-only,
#            this machine's /usr, /opt (and the Python's prefix, if elsewhere) with /etc/ld.so.cache, so
#            that the driver's libraries and a Python with torch (GPU_CHECK_PYTHON, else the first
#            python3 that imports torch) are the machine's own. The base image, made here, holds only
#            the folder layout, `sh` for the build, and a stand-in for that Python's path; nothing is
#            pulled, so this works without a network.
# GPU_CHECK_DIR: where the run's folder goes (default: a new folder under /tmp).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${GPU_CHECK_MODE:-}
IMAGE=${GPU_CHECK_IMAGE:-pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime}
GPUS=${GPU_CHECK_GPUS:-all}
SERVER=${PYSTRIBUTED_REMOTE_SERVER:-local}

log() { printf 'gpu_check: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

CELL='import json, os, time
import torch

assert torch.cuda.is_available(), "torch sees no GPU in the container"
name = torch.cuda.get_device_name(0)
n, repeats = 8192, 1000  # about 2 s of products on an H200: a sustained figure, not a burst
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(50):  # warm up: kernels chosen, clocks up
    a @ b
torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(repeats):
    a @ b
torch.cuda.synchronize()
seconds = time.perf_counter() - start
tflops = 2 * n**3 * repeats / seconds / 1e12
print(f"{name}: bf16 matmul {tflops:.0f} TFLOP/s ({n}x{n}, {repeats} products in {seconds:.2f} s)")
measured = {"gpu": name, "gpus_visible": torch.cuda.device_count(), "bf16_matmul_tflops": round(tflops, 1),
            "n": n, "repeats": repeats, "seconds": round(seconds, 4), "torch": torch.__version__,
            "cuda": torch.version.cuda, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
with open(os.path.join(os.environ["PYSTRIBUTED_RESULTS"], "gpu.json"), "w") as f:
    json.dump(measured, f, indent=1)
'

toolkit_here() {  # the local engine gives containers GPUs with --gpus
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"nvidia"' ||
        command -v nvidia-container-runtime-hook >/dev/null || command -v nvidia-cdi-hook >/dev/null
}

python_with_torch() {  # the executable of GPU_CHECK_PYTHON, else of the first Python here that imports torch
    local candidate
    if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
        "$GPU_CHECK_PYTHON" -c 'import sys, torch; print(sys.executable)' ||
            die "GPU_CHECK_PYTHON=$GPU_CHECK_PYTHON cannot import torch"
        return
    fi
    for candidate in python3 /opt/torch/.venv/bin/python3 /opt/conda/bin/python3; do
        command -v "$candidate" >/dev/null || continue
        "$candidate" -c 'import sys, torch; print(sys.executable)' 2>/dev/null && return
    done
    die "no Python here imports torch: set GPU_CHECK_PYTHON to one that does (devices mode runs it)"
}

copy_file() {  # copy_file PATH ROOT: the file at PATH, as a plain file at ROOT/PATH
    mkdir -p "$2$(dirname "$1")"
    cp -L "$1" "$2$1"
}

make_base_image() {  # make_base_image TAG PYTHON_DIR: a tiny image, see "devices" above
    local tag=$1 python_dir=$2 root dir sh lib
    root=$(mktemp -d)
    mkdir -p "$root/etc" "$root/tmp" "$root$python_dir"
    chmod 1777 "$root/tmp"
    for dir in bin sbin lib lib32 lib64 libx32; do  # the same layout: /lib64 -> usr/lib64, as here
        if [ -L "/$dir" ]; then
            mkdir -p "$root/$(readlink "/$dir")"
            ln -s "$(readlink "/$dir")" "$root/$dir"
        elif [ -d "/$dir" ]; then
            mkdir -p "$root/$dir"
        fi
    done
    # `sh` and what it links to, for the build's RUN steps; when the cell runs, /usr is this machine's.
    sh=$(readlink -f /bin/sh)
    copy_file "$sh" "$root"
    [ -e "$root/bin/sh" ] || ln -s "$sh" "$root/bin/sh"
    for lib in $(ldd "$sh" | grep -o '/[^ ]*'); do copy_file "$lib" "$root"; done
    cp /etc/ld.so.cache "$root/etc/"
    # The build checks that `python3` is on the PATH; the machine's own is mounted over this one.
    printf '#!/bin/sh\necho "stand-in: the machine'"'"'s Python is mounted here when the cell runs" >&2\nexit 1\n' \
        >"$root$python_dir/python3"
    chmod 755 "$root$python_dir/python3"
    tar -C "$root" -c . | docker import \
        --change "ENV PATH=$python_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" - "$tag" >/dev/null
    rm -rf "$root"
}

command -v docker >/dev/null || die "docker is not installed here"
docker info >/dev/null 2>&1 || die "the Docker engine here does not answer (docker info): start it, or set DOCKER_HOST"
if [ -z "$MODE" ]; then
    if [ "$SERVER" != local ] || toolkit_here; then MODE=gpus; else MODE=devices; fi
fi
ARGS=()
case $MODE in
gpus)
    ARGS=(--gpus "$GPUS")
    BASE=$IMAGE
    PYTHON=$(command -v python3) || die "python3 is needed here, to run pystributed"
    ;;
devices)
    [ "$SERVER" = local ] || die "GPU_CHECK_MODE=devices mounts this machine's files: it needs REMOTE_SERVER local"
    if ! nvidia-smi -L >&2; then log "nvidia-smi -L failed (or there is none); going on"; fi
    PYTHON=$(python_with_torch)
    python_dir=$(dirname "$PYTHON")
    for node in /dev/nvidia[0-9]* /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools; do
        if [ -c "$node" ]; then ARGS+=(--device "$node"); fi
    done
    [ ${#ARGS[@]} -gt 0 ] || die "no /dev/nvidia* device nodes here: is the NVIDIA driver loaded?"
    mounts=(/usr)
    for dir in /opt /bin /sbin /lib /lib32 /lib64 /libx32; do  # (those that are not links into /usr)
        if [ -d "$dir" ] && [ ! -L "$dir" ]; then mounts+=("$dir"); fi
    done
    for prefix in $("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))'); do
        case $prefix in /usr | /usr/* | /opt | /opt/*) ;; *) mounts+=("$prefix") ;; esac
    done
    for mount in $(printf '%s\n' "${mounts[@]}" | sort -u); do ARGS+=(--volume "$mount:$mount:ro"); done
    ARGS+=(--volume /etc/ld.so.cache:/etc/ld.so.cache:ro)
    BASE=pystributed-gpu-check/base:$(printf '%s' "$python_dir" | sha256sum | cut -c1-12)
    docker image inspect "$BASE" >/dev/null 2>&1 || make_base_image "$BASE" "$python_dir"
    ;;
*) die "GPU_CHECK_MODE is gpus or devices, not $MODE" ;;
esac

DIR=${GPU_CHECK_DIR:-$(mktemp -d /tmp/pystributed-gpu-check.XXXXXX)}
mkdir -p "$DIR"
printf '%s' "$CELL" >"$DIR/gpu_check.py"
# config.py: the words as Python literals (json's strings are Python's), whatever they hold.
"$PYTHON" -c 'import json, sys
print("REMOTE_SERVER = " + json.dumps(sys.argv[1]))
print("BASE_IMAGE = " + json.dumps(sys.argv[2]))
print("DOCKER_RUN_ARGS = " + json.dumps(sys.argv[3:]))' "$SERVER" "$BASE" "${ARGS[@]}" >"$DIR/config.py"
log "mode $MODE on $SERVER, BASE_IMAGE $BASE, docker run ${ARGS[*]}"
log "in $DIR: python -m pystributed run gpu_check.py"
status=0
(cd "$DIR" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pystributed run gpu_check.py) || status=$?
measured=$(find "$DIR/results" -mindepth 2 -maxdepth 2 -name gpu.json 2>/dev/null | head -n 1)
if [ "$status" -ne 0 ] || [ -z "$measured" ]; then die "the run failed (exit code $status); its folder: $DIR"; fi
echo "measured ($MODE, $(date -u +%Y-%m-%d)), in $measured:"
cat "$measured"
echo
