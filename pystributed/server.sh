# Everything pystributed does on a server, as one POSIX sh file: one function per action.
#
# It is never installed there. Each command sends it on ssh's standard input (or to `sh` on this
# machine for REMOTE_SERVER = "local"), followed by one line that calls an action, its words quoted
# for sh, then any input of the action (a build context, the container's environment, a tar
# stream). The login shell only starts `sh -c 'eval "$(dd bs=N count=1 …)"'`, a line that bash, dash,
# zsh, fish and tcsh all read alike; the script and its arguments are read by sh alone.
#
# Every answer starts with the line "$MARK": what a login shell's startup files print before it
# (a banner, conda) is skipped by the client, never parsed. Sections of an answer start with
# "$MARK NAME".

MARK=@@pystributed@@
LOG=output.log
STATE=.pystributed-state.json
LABEL=pystributed.run

answer() { printf '%s\n' "$MARK"; }
section() { printf '%s %s\n' "$MARK" "$1"; }
container() { printf 'pystributed-%s' "$1"; }

# A container's state as one line of JSON, saved in its run folder when it is removed, so that
# its exit code and times outlive it. $1: whether `cancel` stopped it (true or false).
state_format() {
    printf '%s' '{"Cancelled":'"$1"',"Name":{{json .Name}},"Image":{{json .Config.Image}},'
    printf '%s' '"State":{{json .State}},"Mounts":{{json .Mounts}}}'
}

# docker ARGS...: a docker command of docker.py's, as it is.
docker_command() { answer; docker "$@"; }

# rundir WORKDIR RUN_ID [BASE_IMAGE]: make the run folder; answer its absolute path, the user's uid
# and gid, `machine` and the machine's hardware name (`x86_64`: what an image built elsewhere must be
# built for), `rootless` if the engine is (see engine_kind), and, given BASE_IMAGE (a build here:
# TRANSPORT = "remote-build"), `base` and its id if the engine has it (features/base.py).
rundir() {
    mkdir -p -- "$1/$2" && cd -- "$1/$2" && answer && pwd && id -u && id -g &&
        printf 'machine %s\n' "$(uname -m)" && engine_kind || return
    if [ -n "${3-}" ]; then
        printf 'base %s\n' "$(docker image inspect --format '{{.Id}}' -- "$3" 2>/dev/null)"
    fi
}

# engine_kind: `rootless` if the engine's root is this user, so that a container run as root writes
# files as this user (and one run as the user's uid, as a subordinate uid that may not): rootless
# Docker (its security option `name=rootless`), Podman run by a user (`rootless: true`). Not asked
# as root, for whom both are the same.
engine_kind() {
    [ "$(id -u)" != 0 ] && docker info --format '{{json .}}' 2>/dev/null | grep -Eq '"name=rootless|"rootless": *true' &&
        echo rootless
    true
}

# rmdir_run DIR: a run that failed before its container started leaves no empty folder.
rmdir_run() { answer; rmdir -- "$1" 2>/dev/null || true; }

# follow RUN_ID [DOCKER_RUN_ARGS...]: start the container if given how (its environment comes on
# stdin), then its output from the start, until it ends.
follow() {
    id=$1
    shift
    answer
    if [ $# -gt 0 ]; then docker run "$@" >/dev/null || return; fi
    docker logs --follow "$(container "$id")"
}

# start DOCKER_RUN_ARGS...: start the container and return (its environment comes on stdin).
start() { answer; docker run "$@" >/dev/null; }

# stop RUN_ID: interrupt the cell (SIGINT, so its `finally:` blocks run), then stop the container.
# It may have ended meanwhile: then `kill` fails, and `stop` has nothing to do.
stop() {
    answer
    docker kill --signal INT "$(container "$1")" >/dev/null 2>&1
    # Another process (wait, a notebook's finish) may have removed it already: nothing to stop.
    docker stop --time 10 "$(container "$1")" >/dev/null 2>&1 || ! docker container inspect "$(container "$1")" >/dev/null 2>&1
}

# finish DIR RUN_ID CANCELLED TOKEN: wait for the container, save its log and state into DIR under
# names of this call's own (TOKEN), rename them, remove the container; answer its exit code. If
# another process put it away first, answer the state that one saved; if there is neither a container
# nor a state (it never started: the process that started it ended first), answer absent. If the log cannot be saved
# (a full disk), the container stays, and the answer says log-not-saved.
finish() {
    name=$(container "$2")
    log_part=$1/.$LOG.$4 state_part=$1/$STATE.$4
    answer
    if ! code=$(docker wait "$name"); then
        # Another process put it away (its saved state), or it never started (no container, no state).
        if [ -f "$1/$STATE" ] || docker container inspect "$name" >/dev/null 2>&1; then
            cat -- "$1/$STATE"
            return
        fi
        echo absent
        return
    fi
    echo "$code"
    docker logs "$name" >"$log_part" 2>&1 &  # beside the inspect: a run's end waits for both
    logs=$!
    docker container inspect --format "$(state_format "$3")" "$name" >"$state_part"
    inspected=$?
    if wait "$logs" && [ "$inspected" -eq 0 ] &&
        mv -f -- "$log_part" "$1/$LOG" && mv -f -- "$state_part" "$1/$STATE"; then
        docker rm --force "$name" >/dev/null 2>&1
        return 0
    fi
    rm -f -- "$log_part" "$state_part"
    if docker container inspect "$name" >/dev/null 2>&1; then echo log-not-saved; fi
}

# fetch DIR GOING: the run folder as one tar stream. GNU tar exits 1 for "file changed as we read
# it" (its archive is still whole): only a run that goes on (GOING = going) may do that to it.
fetch() {
    answer
    tar -C "$1" -cf - . || { [ $? -eq 1 ] && [ "$2" = going ]; }
}

# fetch_tasks DIR INDEX...: the folders DIR/INDEX of a sweep's tasks (a container's chunk) as one tar
# stream; those not there are left out.
fetch_tasks() {
    answer
    dir=$1
    shift
    for name do
        shift
        if [ -d "$dir/$name" ]; then set -- "$@" "$name"; fi
    done
    if [ $# -eq 0 ]; then set -- -T /dev/null; fi
    tar -C "$dir" -cf - "$@"
}

# logs DIR RUN_ID [follow]: the run's output from the start, stdout and stderr apart while its
# container is there, then from its saved log.
logs() {
    name=$(container "$2")
    answer
    if docker container inspect "$name" >/dev/null 2>&1; then
        docker logs ${3:+--follow} "$name"
    elif [ -f "$1/$LOG" ]; then
        cat -- "$1/$LOG"
    fi
}

# survey WORKDIR [RUN_ID]: the run folders (with their ages), which have a log, their saved
# states, and the labelled containers' states, in sections; without RUN_ID also the sweeps' folders
# and their tasks' folders (with their ages), the tasks' saved states (sweep.py), the Slurm jobs'
# environment files (`envs`, WORKDIR/*.env, for clean), the images the pyxis route imported
# (`image_files`, WORKDIR/.pystributed-images/*.sqsh) and, unless squeue fails, the names of this
# user's jobs that Slurm still lists (`slurm_jobs`: none where there is no Slurm).
survey() {
    pattern=${2:-*}
    answer
    section now
    date +%s
    if cd -- "$1" 2>/dev/null; then
        section workdir
        pwd
        section folders
        find . -mindepth 1 -maxdepth 1 -type d -name "$pattern" -printf '%f %T@\n'
        section logs
        find . -mindepth 2 -maxdepth 2 -path "./$pattern/$LOG" -printf '%h\n'
        section states
        find . -mindepth 2 -maxdepth 2 -path "./$pattern/$STATE" -exec cat -- {} +
        if [ -z "$2" ]; then
            section sweeps
            find . -mindepth 1 -maxdepth 2 -type d -path './sweep-*' -printf '%P %T@\n'
            section sweep_states
            find . -mindepth 3 -maxdepth 3 -path "./sweep-*/*/$STATE" -exec cat -- {} +
            section envs
            find . -mindepth 1 -maxdepth 1 -type f -name '*.env' -printf '%f\n'
            section image_files  # (the pyxis route's images, imported once: places/slurm_job.sh)
            find . -mindepth 2 -maxdepth 2 -type f -path './.pystributed-images/*.sqsh' -printf '%P\n'
        fi
    fi
    if [ -z "$2" ] && ! command -v squeue >/dev/null 2>&1; then
        section slurm_jobs
    elif [ -z "$2" ] && queued=$(squeue --noheader --user="$(id -un)" --format=%j 2>/dev/null); then
        section slurm_jobs
        printf '%s\n' "$queued"
    fi
    section containers
    command -v docker >/dev/null 2>&1 || return 0  # a Slurm cluster's login node: no containers there
    ids=$(docker container ls --all --quiet --no-trunc --filter "label=$LABEL${2:+=$2}") || return
    # A container removed between the two commands is simply not listed.
    # shellcheck disable=SC2086 # one word per id
    [ -z "$ids" ] || docker container inspect --format "$(state_format false)" $ids 2>/dev/null
    true
}

# images REPOSITORY [WORKDIR]: the image of every container (those are in use), then REPOSITORY's
# images; with WORKDIR, then its stale cells (see stale_cells).
images() {
    answer
    section used
    docker container ls --all --format '{{.Image}}' || return
    section images
    docker image ls --format '{{.Repository}}:{{.Tag}}' -- "$1" || return
    [ -n "${2:-}" ] || return 0
    stale=$(stale_cells "$2") || return 0
    section cells
    printf '%s' "$stale"
}

# stale_cells WORKDIR: the folders of WORKDIR/.cells (see cell) that no run has kept or used for
# an hour (cell touches the folder it answers) and no container mounts a file of (any .cells/NAME/
# in a mount's source, however its path is spelt). Fails if the containers' mounts cannot be read
# (one removed between the two commands, say): then none is stale.
stale_cells() {
    [ -d "$1/.cells" ] || return 0
    ids=$(docker container ls --all --quiet) || return
    # shellcheck disable=SC2086 # one word per id
    mounts=$([ -z "$ids" ] || docker container inspect --format '{{range .Mounts}}{{println .Source}}{{end}}' $ids) ||
        return
    (cd -- "$1/.cells" && here=$(pwd) &&
        find . -mindepth 1 -maxdepth 1 -type d -mmin +60 | while IFS= read -r folder; do
            case "$mounts" in *"/.cells/${folder#./}/"*) ;; *) printf '%s\n' "$here/${folder#./}" ;; esac
        done)
}

# remove_cells WORKDIR FOLDER...: those of the folders that are still stale (a run may have used
# one again since clean listed it).
remove_cells() {
    answer
    stale=$(stale_cells "$1") || return 0
    shift
    for folder; do
        if printf '%s\n' "$stale" | grep -Fxq -- "$folder"; then rm -rf -- "$folder"; fi
    done
}

# cell WORKDIR IMAGE SHA: if IMAGE is here (its layers are the run's but the cell's,
# features/cell_mount.py), answer its id and digests, keep the cell's files (a tar of them on
# stdin) in WORKDIR/.cells/SHA/, and answer that folder. Two runs may keep the same SHA at once:
# each extracts into a folder of its own, and the first to rename it wins; a loser whose mv came
# after the winner's (mv then moves into the folder) removes its folder from there.
cell() {
    found=$(docker image inspect --format '{{.Id}}{{range .RepoDigests}} {{.}}{{end}}' -- "$2" 2>/dev/null)
    answer
    [ -n "$found" ] || { cat >/dev/null; return 0; }
    mkdir -p -- "$1/.cells" && cd -- "$1/.cells" || return
    if [ -d "$3" ]; then
        cat >/dev/null
        touch -- "$3"  # used now: clean leaves it for an hour
    else
        new=$(mktemp -d "./.new-XXXXXX") || return
        if ! { tar -xf - -C "$new" && chmod 755 "$new" && { [ -d "$3" ] || mv -- "$new" "$3"; }; }; then
            rm -rf -- "$new"
            return 1
        fi
        rm -rf -- "$new" "${3:?}/${new#./}"  # another run kept the same files first
    fi
    printf '%s\n' "$found" && cd -- "$3" && pwd
}

# remove DIR...: run folders.
remove() { answer; rm -rf -- "$@"; }

# next_attempt DIR N: the task folder DIR is attempt N's now (places/slurm_job.sh leaves it alone at
# an earlier attempt's end); the state of the attempt before goes.
next_attempt() { answer; printf '%s\n' "$2" >"$1/.pystributed-attempt" && rm -f -- "$1/.pystributed-state.json"; }

# missing PATH...: those of the paths that do not exist.
missing() {
    answer
    for path in "$@"; do [ -e "$path" ] || printf '%s\n' "$path"; done
}

# Docker Swarm (places/swarm.py, cluster.py); Swarm's objects are answered as JSON, one line each.

# cluster_node: this machine as a node of a swarm, in sections: `address`, the one ssh reached it by
# ($SSH_CONNECTION's third word; nothing when not over ssh); `info`, `docker info` as JSON; `gpus`,
# nvidia-smi's `index, uuid` of each GPU (none without nvidia-smi), or `nvidia-smi-failed` and what it said.
cluster_node() {
    answer
    section address
    # shellcheck disable=SC2086 # its words: client address and port, server address and port
    set -- ${SSH_CONNECTION:-}
    printf '%s\n' "${3:-}"
    section info
    docker info --format '{{json .}}' || return
    section gpus
    command -v nvidia-smi >/dev/null || return 0
    out=$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>&1) || section nvidia-smi-failed
    printf '%s\n' "$out"
}

# saved_state DIR: the state that task_runner.py saved in a run folder on a node of a swarm, if any.
saved_state() { answer; cat -- "$1/$STATE" 2>/dev/null || true; }

# swarm_put_away SERVICE [interrupt]: remove the containers of a (removed) service on this node: Swarm
# leaves a job's containers, even running ones, when its service is removed. With `interrupt`, those
# still running first get SIGINT (the cell's `finally:` blocks run) and 10 seconds to end.
swarm_put_away() {
    answer
    filter=label=com.docker.swarm.service.name=$1
    if [ "$2" = interrupt ]; then
        running=$(docker ps --quiet --filter "$filter") || return
        # shellcheck disable=SC2086 # one word per id
        if [ -n "$running" ]; then
            docker kill --signal INT $running >/dev/null 2>&1
            docker stop --time 10 $running >/dev/null 2>&1
        fi
    fi
    ids=$(docker ps --all --quiet --filter "$filter") || return
    # shellcheck disable=SC2086 # one word per id
    [ -z "$ids" ] || docker rm --force $ids >/dev/null
}

# swarm_nodes: every node of the swarm, as `docker node inspect` has it.
swarm_nodes() {
    answer
    ids=$(docker node ls --quiet) || return
    # shellcheck disable=SC2086 # one word per id
    docker node inspect --format '{{json .}}' $ids
}

# swarm_tasks [SERVICE...]: in sections, `services`: the names of our services (labelled $LABEL);
# `tasks`: the tasks of SERVICEs (default: of all ours) that exist, as `docker inspect` has them.
swarm_tasks() {
    answer
    section services
    ours=$(docker service ls --filter "label=$LABEL" --format '{{.Name}}') || return
    printf '%s\n' "$ours"
    # shellcheck disable=SC2086 # one word per name
    [ $# -gt 0 ] || set -- $ours
    section tasks
    for service in "$@"; do
        # A service removed meanwhile (cancelled) has no tasks any more: not an error.
        ids=$(docker service ps --quiet --no-trunc "$service" 2>/dev/null) || continue
        # shellcheck disable=SC2086 # one word per id
        [ -z "$ids" ] || docker inspect --type task --format '{{json .}}' $ids 2>/dev/null
    done
    true
}

# Slurm (places/slurm.py, places/slurm_engine.py), read with squeue's explicit formats (Slurm 20.11
# has them; no --json); what squeue cannot say is read from the files the jobs write on the shared disk.
# A job is found by its name: pystributed-RUN_ID, a sweep's pystributed-SWEEP_ID, a retry's
# pystributed-SWEEP_ID-INDEX-ATTEMPT.

# slurm_route: how the nodes run containers, as the login node shows it, and by what: `pyxis|WHY` (srun
# takes --container-image), `apptainer|WHY` (or singularity), else `docker|WHY`.
slurm_route() {
    if srun --help 2>/dev/null | grep -q -e --container-image; then
        echo "pyxis|srun takes --container-image (NVIDIA's pyxis plugin)"
    elif command -v apptainer >/dev/null 2>&1 || command -v singularity >/dev/null 2>&1; then
        echo "apptainer|$(command -v apptainer || command -v singularity) on the login node"
    else
        echo "docker|neither pyxis (srun --container-image) nor apptainer on the login node"
    fi
}

# slurm_containers: slurm_route's route alone.
slurm_containers() {
    answer
    slurm_route | cut -d '|' -f 1
}

# slurm_status WORKDIR: what `cluster status` shows of a Slurm cluster (cluster_slurm.py), in sections:
# `nodes` (one sinfo call: NODE|PARTITION|STATE|GRES|GRES_USED|), `route` (slurm_route), `max_array_size`,
# `workdir` (its filesystem's type, then a state file that a job wrote there: a node shares it).
slurm_status() {
    answer
    section nodes
    sinfo --noheader --Node -O 'NodeList:|,Partition:|,StateLong:|,Gres:|,GresUsed:|' || return
    section route
    slurm_route
    section max_array_size
    scontrol show config 2>/dev/null | sed -n 's/^MaxArraySize *= *//p'
    section workdir
    stat -f -c %T -- "$1" 2>/dev/null
    find "$1" -mindepth 2 -maxdepth 3 -name .pystributed-state.json -print 2>/dev/null | head -n 1
}

# slurm_max_array: the cluster's MaxArraySize (`scontrol show config`; an array's indexes go up to one
# less), nothing if scontrol does not say.
slurm_max_array() {
    answer
    scontrol show config 2>/dev/null | sed -n 's/^MaxArraySize *= *\([0-9][0-9]*\).*/\1/p'
}

# slurm_submit ENV_FILE SCRIPT_FILE SCRIPT SBATCH_ARGS...: save the job script SCRIPT and the
# container's environment (NAME=VALUE lines, on stdin), both this user's only; submit; answer the job id.
# The environment is replaced whole (mv): a sweep's later arrays save it again while the first one's
# tasks read it.
slurm_submit() {
    answer
    (umask 077 && printf '%s\n' "$3" >"$2" && cat >"$1.$$" && mv -f -- "$1.$$" "$1") || return
    shift 3
    sbatch --parsable "$@"
}

# slurm_ended NAME: whether no job so named is pending, running or completing (squeue failing: no).
slurm_ended() {
    ids=$(squeue --noheader --name="$1" --format=%A 2>/dev/null) || return 1
    [ -z "$ids" ]
}

# slurm_jobs [--states] DIR NAME...: in sections, `states` (with --states): the tasks (DIR/INDEX; a run's
# DIR itself, 0) that saved their state, ended whether their job has or not; `jobs`: the jobs so named that Slurm still
# knows, one line per array task: job id|array job id|array task id|name|state|reason|nodes; `gpus`:
# each running one's job id and the GPU indexes it was given, as its job script saved them in
# DIR/.pystributed-gpus-JOB_ID (places/slurm_job.sh). One squeue call, whatever the number of tasks:
# the engine looks every 0.5 s in a sweep's last wave, and a scontrol call per running task (squeue
# has no GPU indexes) made some 1,000 controller calls a second at 500 tasks.
slurm_jobs() {
    states=
    if [ "$1" = --states ]; then states=1 && shift; fi
    dir=$1
    shift
    names=$(printf '%s,' "$@")
    answer
    if [ -n "$states" ]; then
        section states
        # (a run's own state: DIR is its folder, and it is the job's one task, 0)
        if [ -f "$dir/$STATE" ]; then echo 0; fi
        for state in "$dir"/*/"$STATE"; do
            if [ -f "$state" ]; then state=${state%/*} && printf '%s\n' "${state##*/}"; fi
        done
    fi
    jobs=$(squeue --noheader --array --states=all --name="${names%,}" --format='%A|%F|%K|%j|%T|%r|%N') ||
        return
    section jobs
    printf '%s\n' "$jobs"
    section gpus
    printf '%s\n' "$jobs" | while IFS='|' read -r id _ _ _ state _; do
        # (read, not cat: no process per running task either)
        if [ "$state" = RUNNING ] && { read -r gpus <"$dir/.pystributed-gpus-$id"; } 2>/dev/null; then
            printf '%s %s\n' "$id" "$gpus"
        fi
    done
}

# slurm_follow DIR NAME: the output of the job NAME (DIR/output.log, which its task writes as it
# goes) from its start, until it ends.
slurm_follow() {
    answer
    sent=0
    while :; do
        ended=
        if [ -f "$1/$STATE" ] || slurm_ended "$2"; then ended=1; fi
        size=0
        if [ -f "$1/$LOG" ]; then size=$(($(wc -c <"$1/$LOG"))); fi
        if [ "$size" -gt "$sent" ]; then
            tail -c +$((sent + 1)) -- "$1/$LOG" | head -c $((size - sent))
            sent=$size
        fi
        [ -z "$ended" ] || return 0
        sleep 1
    done
}

# slurm_cancel NAME...: the jobs' waiting tasks go; the running ones' cells get SIGINT (the job
# script passes it on: their `finally:` blocks run) and 15 seconds to end; then what is left is
# cancelled (the job script stops its container on the SIGTERM that comes first), and waited for.
slurm_cancel() {
    answer
    for name in "$@"; do scancel --state=PENDING --name="$name" 2>/dev/null; done
    for name in "$@"; do scancel --batch --signal=INT --state=RUNNING --name="$name" 2>/dev/null; done
    names=$(printf '%s,' "$@")
    i=0
    while [ $i -lt 15 ] && [ -n "$(squeue --noheader --name="${names%,}" --format=%A 2>/dev/null)" ]; do
        sleep 1
        i=$((i + 1))
    done
    for name in "$@"; do scancel --name="$name" 2>/dev/null; done
    while [ $i -lt 45 ] && [ -n "$(squeue --noheader --name="${names%,}" --format=%A 2>/dev/null)" ]; do
        sleep 1
        i=$((i + 1))
    done
    true
}

# DATA's cache under REMOTE_WORKDIR/.data (see features/data.py): objects/<sha256>, trees/<key>,
# incoming/<run-id> for a transfer in progress.

# data_prepare BASE RUN_ID KEY: answer the cache's path, whether rsync is there, and whether the
# tree KEY is; if not, the newest trees and which of the hashes on stdin are missing.
data_prepare() {
    mkdir -p -- "$1/objects" "$1/trees" "$1/incoming" && cd -- "$1" || return
    answer
    pwd
    # Leftovers of transfers cut off more than a day ago go; a tree being made now stays.
    find incoming -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf -- {} + || return
    if command -v rsync >/dev/null; then echo rsync; else echo no-rsync; fi
    if [ -d "trees/$3" ]; then
        echo tree-present
        return
    fi
    echo tree-missing
    mkdir -p -- "incoming/$2" || return
    ls -tc trees | head -n 5 | sed 's/^/tree /'
    while read -r hash; do [ -e "objects/$hash" ] || echo "missing $hash"; done
}

# data_receive DATA_DIR RUN_ID: unpack our own transfer (tar on stdin); its objects go into
# objects/ only once all arrived (the last entry, `complete`, says so).
data_receive() {
    cd -- "$1" || return
    answer
    tar -x -f - && test -e "incoming/$2/complete" &&
        find "incoming/$2/objects" -type f -exec sh -c 'mv -f -- "$@" objects/' sh {} +
}

# data_finish DATA_DIR RUN_ID KEY [rsync]: the tree that arrived takes its place. Under its key
# first, then into trees/: `mv` onto a tree that another run made meanwhile would put this one
# inside it (a tree never changes once made); into trees/, it fails, and that one is used.
data_finish() {
    cd -- "$1" || return
    answer
    mv -- "incoming/$2/tree" "incoming/$2/$3" &&
        { mv -- "incoming/$2/$3" trees/ 2>/dev/null || [ -d "trees/$3" ]; } &&
        rm -rf -- "incoming/$2" ${4:+trees/partial}
}

# data_salvage DATA_DIR RUN_ID [rsync]: keep the whole files of a cut-off transfer: rsync's (it
# writes each under a temporary name first) as trees/partial, for the next --link-dest; ours
# checked by hash.
data_salvage() {
    cd -- "$1" || return
    answer
    incoming=incoming/$2
    if [ -n "$3" ]; then
        rm -rf trees/partial && mv -- "$incoming/tree" trees/partial
    else
        for f in "$incoming"/objects/*; do
            [ -f "$f" ] || continue
            hash=$(sha256sum <"$f") && hash=${hash%% *} && [ "$f" = "$incoming/objects/$hash" ] &&
                mv -f -- "$f" objects/
        done
    fi
    rm -rf -- "$incoming"
}

# gpus [free]: what `docker run --gpus` needs there, in sections: `toolkit`, the NVIDIA Container
# Toolkit's hooks on PATH (Docker gives a container its GPUs through one, with or without an
# `nvidia` runtime in its config); `nvidia-smi`, its path. With `free`, also nvidia-smi's GPUs
# (`gpus`: index, uuid, MiB used) and compute processes (`apps`: gpu uuid, MiB used), as CSV without
# header or units (no process: nothing at all). If nvidia-smi fails, what it printed goes to stderr.
gpus() {
    answer
    section toolkit
    for hook in nvidia-container-runtime-hook nvidia-cdi-hook; do command -v "$hook" || true; done
    section nvidia-smi
    command -v nvidia-smi || return 0
    [ "$1" = free ] || return 0
    section gpus
    out=$(nvidia-smi --query-gpu=index,uuid,memory.used --format=csv,noheader,nounits) ||
        { code=$?; printf '%s\n' "$out" >&2; return "$code"; }
    printf '%s\n' "$out"
    section apps
    out=$(nvidia-smi --query-compute-apps=gpu_uuid,used_memory --format=csv,noheader,nounits) ||
        { code=$?; printf '%s\n' "$out" >&2; return "$code"; }
    printf '%s\n' "$out"
}
