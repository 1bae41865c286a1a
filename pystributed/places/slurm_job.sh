#!/bin/sh
# pystributed's Slurm job (places/slurm.py): one task's container, on the node Slurm gave it.
# POSIX sh; saved in the run folder by server.sh's slurm_submit and given to sbatch with these words:
#
#   slurm_job.sh DIR NAME SWEEP ROUTE ENV_FILE ARGS...
#
# DIR: the run (or sweep) folder, on the filesystem the login node shares with the nodes; NAME: the
# container's name (a sweep's task adds its index); SWEEP: 1 for a sweep's task, whose folder is
# DIR/INDEX (INDEX: SLURM_ARRAY_TASK_ID, or PYSTRIBUTED_TASK for a retry); ROUTE: docker, pyxis or
# apptainer; ENV_FILE: the container's ENV and SECRETS (NAME=VALUE lines, this user's only); ARGS:
# docker run's options, the image, its command (docker.job_run_args).
#
# In the container, task_runner.py saves output.log and .pystributed-state.json in the task's folder.
# A container that never started (an image its node could not pull) leaves a state of this script's
# own, with docker's exit code and its message in output.log. An interrupt (scancel --batch
# --signal=INT) is passed on to the cell (its `finally:` blocks run); a SIGTERM stops the container:
# Docker's containers are not the job's processes, and Slurm would not end them.
dir=$1 name=$2 sweep=$3 route=$4 env_file=$5
shift 5
index=${SLURM_ARRAY_TASK_ID:-${PYSTRIBUTED_TASK:-}}
folder=$dir
if [ "$sweep" = 1 ]; then
    folder=$dir/$index name=$name-$index
    mkdir -p -- "$folder" || exit 1
fi
state=$folder/.pystributed-state.json
rm -f -- "$state" "$folder/output.log"  # an earlier attempt's
gpus=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}
node=${SLURMD_NODENAME:-$(hostname)}
started=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)

case $route in
docker)
    set -- --rm --name "$name" --env-file "$env_file" --env "PYSTRIBUTED_NODE=$node" "$@"
    if [ "$sweep" = 1 ]; then set -- --env "PYSTRIBUTED_TASK=$index" --env PYSTRIBUTED_TASK_FOLDERS=1 "$@"; fi
    if [ -n "$gpus" ] && command -v nvidia-smi >/dev/null 2>&1; then
        set -- --gpus "device=$gpus" "$@"  # Docker bypasses Slurm's cgroups: the GPUs it gave, by their ids
    elif [ -n "$gpus" ]; then
        set -- --env "DOCKER_RESOURCE_GPU=$gpus" "$@"  # no NVIDIA runtime: CUDA_VISIBLE_DEVICES alone
    fi
    # shellcheck disable=SC2317 # (called by the traps)
    interrupt() { docker kill --signal INT "$name" >/dev/null 2>&1; }
    # shellcheck disable=SC2317
    terminate() { docker stop --time 5 "$name" >/dev/null 2>&1; }
    trap interrupt INT
    trap terminate TERM
    docker run "$@" >/dev/null 2>"$folder/.pystributed-docker.err" &
    ;;
*)
    echo "pystributed: the container route $route is not known to this job script" >"$folder/.pystributed-docker.err"
    false &
    ;;
esac
child=$!
# `wait` returns early when a trapped signal comes: wait again, until the container's command is done.
while :; do
    wait "$child"
    code=$?
    kill -0 "$child" 2>/dev/null || break
done
# The docker client may end before its container (a signal of its own): the job ends after the container.
while [ "$route" = docker ] && docker container inspect "$name" >/dev/null 2>&1; do sleep 1; done
if [ ! -f "$state" ]; then  # it never ran: its failure, as task_runner.py would have saved it
    cat -- "$folder/.pystributed-docker.err" >>"$folder/output.log" 2>/dev/null
    [ "$code" = 0 ] && code=125
    printf '{"Cancelled":false,"Name":"/%s","Image":"","State":{"Status":"exited","ExitCode":%s,' "$name" "$code" >"$state.$$"
    printf '"StartedAt":"%s","FinishedAt":"%s","OOMKilled":false,"Error":"the container did not start"},' \
        "$started" "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" >>"$state.$$"
    printf '"Mounts":[],"Node":"%s","Gpus":"%s"}\n' "$node" "$gpus" >>"$state.$$"
    mv -f -- "$state.$$" "$state"
fi
rm -f -- "$folder/.pystributed-docker.err"
exit 0
