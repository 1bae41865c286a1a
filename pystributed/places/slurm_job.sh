#!/bin/sh
# pystributed's Slurm job (places/slurm.py): one task's container, on the node Slurm gave it.
# POSIX sh; saved in the run folder (DIR/.pystributed-job.sh) by server.sh's slurm_submit and given to
# sbatch with these words:
#
#   slurm_job.sh DIR NAME MODE ROUTE ENV_FILE ARGS...
#
# DIR: the run (or sweep) folder, on the filesystem the login node shares with the nodes; NAME: the
# container's name (a sweep's task adds its index); MODE: 0 for a run, 1 for a sweep's task, whose
# folder is DIR/INDEX (INDEX: SLURM_ARRAY_TASK_ID plus PYSTRIBUTED_TASK_OFFSET, the first of its array's
# where a sweep is several arrays: MaxArraySize; or PYSTRIBUTED_TASK for a retry), `ranks` for a run
# over the job's nodes (see below; `rank` is one of them); ROUTE: docker, pyxis or apptainer; ENV_FILE:
# the container's ENV and SECRETS (NAME=VALUE lines, this user's only); ARGS: docker run's options, the
# image, its command (docker.job_run_args), or for pyxis and apptainer `--env NAME=VALUE ... --` and the
# words after `srun` or `apptainer exec` (slurm_routes.py): pyxis runs the container as a job step,
# Apptainer (or Singularity) as this script's child; both as the job's user, with Slurm's GPUs.
#
# In the container, task_runner.py saves output.log and .pystributed-state.json in the task's folder.
# A container that never started (an image its node could not pull) leaves a state of this script's
# own, with docker's exit code and its message in output.log. An interrupt (scancel --batch
# --signal=INT) is passed on to the cell (its `finally:` blocks run); a SIGTERM stops the container:
# Docker's containers are not the job's processes, and Slurm would not end them. A chunk's tasks that
# never began are then saved as cancelled (INT) or unstarted (TERM alone: run again by the engine).
#
# `ranks` (sbatch --nodes=N --ntasks-per-node=1): the batch script, on the first node, runs this script
# again on every node with `srun` (MODE `rank`, one container per node, on the host's network so that
# the ranks reach each other), each with MASTER_ADDR (the first node's address), MASTER_PORT (from the
# job id), RANK, NODE_RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (1) and the GPUs of its node. Rank
# 0 writes into DIR (its output.log is the run's, live), rank R into DIR/rank-R; each saves its state
# as .pystributed-rank-state.json. The first rank to fail stops the others; once all ended, the run's
# state is that rank's (else rank 0's), and its output is added to DIR/output.log.
dir=$1 name=$2 mode=$3 route=$4 env_file=$5
shift 5
RANK_STATE=.pystributed-rank-state.json RANK_ENDED=.pystributed-rank-ended

# The GPUs Slurm gave the job, where server.sh's slurm_jobs reads them for the engine's looks: squeue
# has no GPU indexes, and a scontrol call per running job at every look loads the controller. Gone
# at the job's end (a `rank` is a step of a job whose batch script wrote it).
gpus_file=$dir/.pystributed-gpus-${SLURM_JOB_ID:-0}
if [ "$mode" != rank ]; then
    printf '%s\n' "${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}" >"$gpus_file" 2>/dev/null
    trap 'rm -f -- "$gpus_file"' EXIT
fi

# import_once FILE REF: FILE, enroot's squashfs of the image REF (pyxis' REGISTRY#NAME:TAG), made once for
# every task and job that uses it (pyxis would import it again for each: a whole image's download and
# unpacking), by whichever task comes first, under a lock (flock, on the shared filesystem) that the others
# wait on; its time is noted in FOLDER/.pystributed-import (`imported SECONDS`; `found` when it was there).
# Fails (the task then lets pyxis import the image itself, and shows pyxis' message if that fails too)
# where the node has no enroot or flock, or the import failed (its log: FOLDER/.pystributed-import.log).
import_once() {
    if [ -f "$1" ]; then echo found >"$folder/.pystributed-import"; return 0; fi
    command -v enroot >/dev/null 2>&1 && command -v flock >/dev/null 2>&1 && mkdir -p -- "${1%/*}" || return 1
    (
        flock 9 || exit 1
        if [ -f "$1" ]; then echo found >"$folder/.pystributed-import"; exit 0; fi
        began=$(date +%s)
        rm -f -- "$1.$$"
        enroot import --output "$1.$$" "docker://$2" >"$folder/.pystributed-import.log" 2>&1 &&
            mv -f -- "$1.$$" "$1" || { rm -f -- "$1.$$"; exit 1; }
        echo "imported $(($(date +%s) - began))" >"$folder/.pystributed-import"
        rm -f -- "$folder/.pystributed-import.log"
    ) 9>>"$1.lock"
}

# field FILE KEY: a value of the one-line JSON state FILE (a number, or a string without quotes).
field() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\).*/\1/p" "$1" 2>/dev/null | head -n 1; }

rank_folder() { if [ "$1" = 0 ]; then echo "$dir"; else echo "$dir/rank-$1"; fi; }

# forget_env: ENV_FILE (the SECRETS' values) leaves the shared disk once no task of this job can need it
# again, so that no secret outlives its job, whoever follows it (a detached sweep, a kernel that died).
# A run's and a retry's job (each retry is sent a file of its own: slurm_engine.retry) remove it at
# their end; an array's tasks each read it as they start, so the last of them to end removes it: each
# notes its end in DIR/.pystributed-env-read/ first, and the one that finds all SLURM_ARRAY_TASK_COUNT
# notes there (PYSTRIBUTED_ARRAY_COUNT: of all the sweep's arrays) is the last (two at once both remove
# it). One that never ends here (cancelled while it waits, its node lost) leaves it to the engine's end
# and to `clean`.
forget_env() {
    if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
        rm -f -- "$env_file"
        return
    fi
    read_dir=$dir/.pystributed-env-read
    count=${PYSTRIBUTED_ARRAY_COUNT:-${SLURM_ARRAY_TASK_COUNT:-}}
    [ -n "$count" ] && mkdir -p -- "$read_dir" || return 0
    : >"$read_dir/$index" || return 0
    ended=0
    for note in "$read_dir"/*; do [ -e "$note" ] && ended=$((ended + 1)); done
    if [ "$ended" -ge "$count" ]; then rm -rf -- "$env_file" "$read_dir"; fi
}

# failures: `FINISHED RANK` of each rank that ended with a non-zero exit code (or never saved a state:
# `~ RANK`, last), the first to end first; a rank counts once its script is done (RANK_ENDED): a pyxis
# step removes its container after its command ended, and a signal to the rank's srun meanwhile would
# kill that removal.
failures() {
    r=0
    while [ "$r" -lt "${SLURM_JOB_NUM_NODES:-1}" ]; do
        s=$(rank_folder "$r")/$RANK_STATE
        if [ ! -f "$s" ]; then
            [ "${1:-}" = ended ] && echo "~ $r"
        elif [ "$(field "$s" ExitCode)" != 0 ] &&
            { [ "${1:-}" = ended ] || [ -e "$(rank_folder "$r")/$RANK_ENDED" ]; }; then
            echo "$(field "$s" FinishedAt) $r"
        fi
        r=$((r + 1))
    done | sort | head -n 1
}

if [ "$mode" = ranks ]; then
    first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    addr=$(scontrol --oneliner show node "$first" | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
    MASTER_ADDR=${addr:-$first} MASTER_PORT=$((20000 + ${SLURM_JOB_ID:-0} % 20000))
    export MASTER_ADDR MASTER_PORT
    rm -f -- "$dir/.pystributed-state.json" "$dir/output.log" "$dir/$RANK_STATE"
    # scancel without --batch signals the job's steps (the ranks' scripts), never this one.
    trap 'scancel --signal=INT "$SLURM_JOB_ID"' INT
    trap ':' TERM  # (the ranks stop their containers; this script then writes the run's state)
    srun --ntasks-per-node=1 --kill-on-bad-exit=0 sh -- "$dir/.pystributed-job.sh" "$dir" "$name" rank "$route" \
        "$env_file" "$@" &
    child=$! stopped=
    while kill -0 "$child" 2>/dev/null; do
        if [ -z "$stopped" ] && [ -n "$(failures)" ]; then
            stopped=1
            # A rank failed: the others would wait for it forever. Step 0, the ranks' scripts and their srun
            # (which stops a pyxis container): not a pyxis container's step, whose removal it would kill.
            scancel --signal=TERM "$SLURM_JOB_ID.0"
        fi
        sleep 1
    done
    wait "$child"
    chosen=$(failures ended | cut -d ' ' -f 2)
    from=$(rank_folder "${chosen:-0}")
    if [ -n "$chosen" ] && [ "$chosen" != 0 ]; then
        printf '\n[pystributed] rank %s (on %s) failed with exit code %s; its output (%s):\n' "$chosen" \
            "$(field "$from/$RANK_STATE" Node)" "$(field "$from/$RANK_STATE" ExitCode)" "rank-$chosen/output.log" \
            >>"$dir/output.log"
        cat -- "$from/output.log" >>"$dir/output.log" 2>/dev/null
    fi
    if [ -f "$from/$RANK_STATE" ]; then
        cp -- "$from/$RANK_STATE" "$dir/.pystributed-state.json.$$" &&
            mv -f -- "$dir/.pystributed-state.json.$$" "$dir/.pystributed-state.json"
    fi
    forget_env  # (every rank has ended: srun returned)
    exit 0
fi

index=${PYSTRIBUTED_TASK:-}
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then index=$((SLURM_ARRAY_TASK_ID + ${PYSTRIBUTED_TASK_OFFSET:-0})); fi
folder=$dir state_name=.pystributed-state.json
gpus=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}
first=$index last=$index per=${PYSTRIBUTED_TASKS_PER_CONTAINER:-1}
if [ "$mode" = 1 ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ "$per" -gt 1 ]; then
    # This array task's tasks, run one after another in its container (TASKS_PER_CONTAINER): its chunk.
    chunked=1 first=$((index * per)) last=$((index * per + per - 1))
    [ "$last" -lt "${PYSTRIBUTED_TASK_COUNT:-0}" ] || last=$((PYSTRIBUTED_TASK_COUNT - 1))
fi
if [ "$mode" = 1 ]; then
    folder=$dir/$first name=$name-$index
    i=$first
    while [ "$i" -le "$last" ]; do
        mkdir -p -- "$dir/$i" || exit 1
        rm -f -- "$dir/$i/$state_name" "$dir/$i/output.log"  # an earlier attempt's
        i=$((i + 1))
    done
elif [ "$mode" = rank ]; then
    rank=${SLURM_PROCID:-0} state_name=$RANK_STATE
    gpus=${SLURM_STEP_GPUS:-${CUDA_VISIBLE_DEVICES:-}}  # (SLURM_JOB_GPUS is the first node's, passed on)
    folder=$(rank_folder "$rank")
    if [ "$rank" != 0 ]; then
        name=$name-rank$rank
        mkdir -p -- "$folder" || exit 1
        for arg do  # its own folder at the results' place
            shift
            case $arg in
            "$dir:"*) arg=$folder:${arg#"$dir:"} ;;
            "--container-mounts=$dir:"*) arg=--container-mounts=$folder:${arg#"--container-mounts=$dir:"} ;;  # (pyxis)
            esac
            set -- "$@" "$arg"
        done
    fi
    set -- --env "MASTER_ADDR=$MASTER_ADDR" --env "MASTER_PORT=$MASTER_PORT" --env "RANK=$rank" \
        --env "NODE_RANK=${SLURM_NODEID:-0}" --env "WORLD_SIZE=${SLURM_NTASKS:-1}" --env "LOCAL_RANK=${SLURM_LOCALID:-0}" \
        --env LOCAL_WORLD_SIZE=1 --env "PYSTRIBUTED_STATE_NAME=$RANK_STATE" "$@"
    if [ "$route" = docker ]; then set -- --network host "$@"; fi
fi
state=$folder/$state_name
rm -f -- "$state" "$folder/output.log"  # an earlier attempt's
node=${SLURMD_NODENAME:-$(hostname)}
started=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)

if [ "$mode" = 1 ]; then set -- --env "PYSTRIBUTED_TASK=$index" --env PYSTRIBUTED_TASK_FOLDERS=1 "$@"; fi
if [ "$mode" = 1 ] && [ -n "${PYSTRIBUTED_ATTEMPT:-}" ]; then set -- --env "PYSTRIBUTED_ATTEMPT=$PYSTRIBUTED_ATTEMPT" "$@"; fi
if [ -n "${chunked:-}" ]; then set -- --env "PYSTRIBUTED_TASKS_PER_CONTAINER=$per" "$@"; fi
# A cancel (SIGINT, from slurm_cancel) and a stop (SIGTERM: the --time limit, a preemption, the TERM
# after a cancel's INT) are told apart for the tasks that never ran: see the end.
cancelled='' stopped=''
# shellcheck disable=SC2317 # (the routes define their own; called by the traps)
interrupt() { :; }
# shellcheck disable=SC2317
terminate() { :; }
trap 'cancelled=1; interrupt' INT
trap 'stopped=1; terminate' TERM
case $route in
docker)
    set -- --rm --name "$name" --env-file "$env_file" --env "PYSTRIBUTED_NODE=$node" "$@"
    if [ -n "$gpus" ] && command -v nvidia-smi >/dev/null 2>&1; then
        set -- --gpus "device=$gpus" "$@"  # Docker bypasses Slurm's cgroups: the GPUs it gave, by their ids
    elif [ -n "$gpus" ]; then
        set -- --env "DOCKER_RESOURCE_GPU=$gpus" "$@"  # no NVIDIA runtime: CUDA_VISIBLE_DEVICES alone
    fi
    # shellcheck disable=SC2317 # (called by the traps)
    interrupt() { docker kill --signal INT "$name" >/dev/null 2>&1; }
    # shellcheck disable=SC2317
    terminate() { docker stop --time 5 "$name" >/dev/null 2>&1; }
    docker run "$@" >/dev/null 2>"$folder/.pystributed-docker.err" &
    ;;
pyxis | apptainer)
    # The variables reach the container through the job's environment (ENV_FILE's lines, then ours).
    while IFS= read -r line; do case $line in [A-Za-z_]*=*) export "${line?}" ;; esac; done <"$env_file"
    image_file=''
    while [ $# -gt 0 ] && [ "$1" != -- ]; do  # --env NAME=VALUE ... [--import FILE] -- (slurm_routes.py)
        case $1 in --env) export "${2?}" ;; --import) image_file=$2 ;; esac
        shift 2
    done
    shift
    export "PYSTRIBUTED_NODE=$node"
    if [ -n "$image_file" ] && import_once "$image_file" "${1#--container-image=}"; then
        shift
        set -- "--container-image=$image_file" "$@"  # (pyxis_args gives --container-image first)
    fi
    if [ "$route" = pyxis ] && [ "$mode" = rank ]; then
        # A rank is a step already: its container is a step beside it on its node (--overlap: with the
        # rank's CPUs and GPUs). The batch script's scancel signals every step, the containers too.
        srun --overlap --nodes=1 --ntasks=1 --nodelist="$node" "$@" >/dev/null 2>"$folder/.pystributed-docker.err" &
    elif [ "$route" = pyxis ]; then
        # The container is a job step's task. The interrupt goes to its first process alone (task_runner.py,
        # which passes it on to the cell): scancel would signal each of the step's processes, and the
        # cell would get it twice (its `finally:` interrupted). `scancel` where that process is not found.
        # shellcheck disable=SC2317
        interrupt() {
            for _ in 1 2 3 4 5; do  # (slurmstepd may be slow to answer on a busy node)
                # (the node's name: where one host runs several slurmd, scontrol would ask the first)
                pids=$(scontrol listpids "$SLURM_JOB_ID" ${SLURMD_NODENAME:+"$SLURMD_NODENAME"} 2>/dev/null |
                    awk '$3 ~ /^[0-9]+$/ && $4 == "0" {print $1}')
                [ -z "$pids" ] || break
                sleep 1
            done
            # shellcheck disable=SC2086 # (one word per pid)
            if [ -n "$pids" ]; then kill -INT $pids; return; fi
            echo "pystributed: the container's first process was not found: scancel --signal=INT" >&2
            scancel --signal=INT "$SLURM_JOB_ID"
        }
        # shellcheck disable=SC2317
        terminate() { :; }  # (Slurm ends the job's steps itself)
        srun --ntasks=1 "$@" >/dev/null 2>"$folder/.pystributed-docker.err" &
    else
        launcher=apptainer
        command -v apptainer >/dev/null 2>&1 || launcher=singularity
        # shellcheck disable=SC2317
        interrupt() { kill -INT "$child" 2>/dev/null; }
        # shellcheck disable=SC2317
        terminate() { kill -TERM "$child" 2>/dev/null; }
        "$launcher" exec "$@" >/dev/null 2>"$folder/.pystributed-docker.err" &
    fi
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
[ "$code" = 0 ] && code=125
err=$folder/.pystributed-docker.err i=$first
while :; do  # the task (each of the chunk's) that never ran: its failure, as task_runner.py would have saved it
    if [ "$mode" = 1 ]; then folder=$dir/$i state=$dir/$i/$state_name; fi
    # A task whose folder a later attempt owns (a retry, started when this one's state was seen, removes
    # it first: slurm_engine.retry) is that attempt's, not one that never ran.
    owner=$(cat -- "$folder/.pystributed-attempt" 2>/dev/null) || owner=1
    if [ ! -f "$state" ] && [ "$owner" -le "${PYSTRIBUTED_ATTEMPT:-1}" ]; then
        # One that never began (task_runner.py writes output.log as a task starts) was cancelled if a
        # cancel came, and is unstarted if a stop came: the engine runs it again (as task_runner.py
        # saves it when it gets the SIGTERM itself), as no failure of its own; else its container failed.
        task_code=$code cancel=false unstarted='' error="the container did not start"
        if [ ! -f "$folder/output.log" ] && [ -n "$cancelled" ]; then
            task_code=130 cancel=true error="cancelled before it started"
        elif [ ! -f "$folder/output.log" ] && [ -n "$stopped" ]; then
            task_code=143 unstarted='"Unstarted":true,' error="stopped before it started"
        fi
        cat -- "$err" >>"$folder/output.log" 2>/dev/null
        printf '{%s"Cancelled":%s,"Name":"/%s","Image":"","State":{"Status":"exited","ExitCode":%s,' \
            "$unstarted" "$cancel" "$name" "$task_code" >"$state.$$"
        printf '"StartedAt":"%s","FinishedAt":"%s","OOMKilled":false,"Error":"%s"},' \
            "$started" "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" "$error" >>"$state.$$"
        printf '"Mounts":[],"Node":"%s","Gpus":"%s"}\n' "$node" "$gpus" >>"$state.$$"
        mv -f -- "$state.$$" "$state"
    fi
    if [ "$mode" != 1 ] || [ "$i" -ge "$last" ]; then break; fi
    i=$((i + 1))
done
rm -f -- "$err"
if [ "$mode" != rank ]; then forget_env; fi  # (a rank's batch script removes it, once every rank ended)
if [ "$mode" = rank ]; then : >"$folder/$RANK_ENDED"; fi
exit 0
