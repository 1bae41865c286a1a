"""The job script's words for the container routes other than Docker on a Slurm cluster's nodes
(places/slurm_job.sh runs them): pyxis (`srun --container-image=REGISTRY#IMAGE`, NVIDIA's Slurm
plugin over enroot) and Apptainer or Singularity (`apptainer exec --nv docker://REGISTRY/IMAGE`).

Both start from a job's `docker run` arguments (docker.job_run_args) and answer

    --env NAME=VALUE ... -- LAUNCHER_ARGS...

the variables, which the job script exports (both routes hand the job's environment to the container),
then the words after `srun` or `apptainer exec`: the image, the run folder mounted at its place, the
image's working directory, the command. Both run the container as the job's user, with the GPUs Slurm
gave the job (its cgroups, CUDA_VISIBLE_DEVICES), on the node's own network."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from pystributed import context
from pystributed.errors import StepError

IMAGES = ".pystributed-images"  # in REMOTE_WORKDIR: the images imported once (image_file)

# docker run's options that job_run_args gives, and what each route makes of them: the variables and the
# mounts; --user and --label have no use (the container runs as the job's user, and is a job step or
# child, named by the job), nor --shm-size (features/shm.py): enroot's and Apptainer's containers share
# the node's /dev/shm.
_VALUED = {"--user", "--label", "--volume", "-v", "--env", "-e", "--shm-size"}


def split(args, route):
    """(variables, mounts, image, command) of job_run_args' words."""
    variables, mounts, at = [], [], 0
    while at < len(args) and args[at].startswith("-"):
        option, _, value = args[at].partition("=")
        if option not in _VALUED:
            raise StepError("start", f"the docker run option {option} (DOCKER_RUN_ARGS?) has no meaning for "
                                     f"the {route} route of this Slurm cluster, whose nodes run no Docker",
                            hint="Leave DOCKER_RUN_ARGS empty for this cluster: Slurm gives the GPUs "
                                 "(GPUS_PER_TASK), SLURM_ARGS the rest.")
        if not value:
            at += 1
            value = args[at]
        at += 1
        if option in ("--env", "-e"):
            variables.append(value)
        elif option in ("--volume", "-v"):
            mounts.append(value)
    if at >= len(args):
        raise StepError("start", "no image among the container's arguments")
    return variables, mounts, args[at], args[at + 1:]


def pyxis_image(ref):
    """pyxis (enroot) names an image's registry with `#`: reg:5000/team/name:tag is reg:5000#team/name:tag;
    an image of Docker Hub stays as it is."""
    first, slash, rest = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return ref


def plain_http(ref):
    """Whether the image's registry is one that Docker reaches over plain HTTP by default (on this
    host's own addresses): Apptainer must be told so (APPTAINER_NOHTTPS)."""
    host = ref.partition("/")[0].rsplit(":", 1)[0] if "/" in ref else ""
    return host == "localhost" or host.startswith("127.")


def image_file(workdir, ref, digest):
    """Where a job's first task saves enroot's squashfs of the image (`enroot import -o`), which the job's
    other tasks, and later jobs, start from: REMOTE_WORKDIR/.pystributed-images/KEY.sqsh, KEY its digest in
    the registry (or, where the registry would not tell it, the hash of its ref, whose tag pystributed
    derives from the image's content)."""
    key = digest.replace(":", "-") if digest else "ref-" + hashlib.sha256(ref.encode()).hexdigest()[:32]
    return f"{workdir}/{IMAGES}/{key}.sqsh"


def pyxis_args(args, *, image_file=""):
    """`image_file`: the image's squashfs, which the job script makes once (`--import FILE`, before `--`)."""
    variables, mounts, image, command = split(args, "pyxis")
    return [*_env(variables), *(["--import", image_file] if image_file else []),
            "--", f"--container-image={pyxis_image(image)}",
            *([f"--container-mounts={','.join(mounts)}"] if mounts else []),
            f"--container-workdir={context.APP_DIR}", *command]


def apptainer_args(args):
    variables, mounts, image, command = split(args, "apptainer")
    if plain_http(image):
        variables += ["APPTAINER_NOHTTPS=1", "SINGULARITY_NOHTTPS=1"]
    binds = [word for mount in mounts for word in ("--bind", mount)]
    return [*_env(variables), "--", "--nv", *binds, "--pwd", context.APP_DIR, f"docker://{image}", *command]


def _env(variables):
    return [word for variable in variables for word in ("--env", variable)]


ROUTES: dict[str, Callable[..., list]] = {"pyxis": pyxis_args, "apptainer": apptainer_args}
