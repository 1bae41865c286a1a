"""`--gpus` in DOCKER_RUN_ARGS (or the magics' `--gpus`): checked before anything is pushed, and
`--gpus free` made into one GPU of the server's that no process uses.

Docker gives a container GPUs through the NVIDIA Container Toolkit: an `nvidia` runtime in the
engine's config (`nvidia-ctk runtime configure`), or the toolkit's hook on the engine's PATH
(`nvidia-container-runtime-hook`; `nvidia-cdi-hook` for the CDI way of Docker 28.3+), which is
enough for `--gpus`. Without either, `docker run --gpus` fails only when the container starts,
with `could not select device driver "" with capabilities: [[gpu]]`, after the image was built,
pushed and pulled. Here the run stops in the build step, before the push, and says what to
install. (The hook is looked for on the ssh user's PATH, the engine's is usually the same.)

`--gpus free` asks nvidia-smi on the server (server.sh's `gpus`) which GPUs have compute
processes, takes one that has none (the one using the least memory, when all have some) in
its own step after the pull, just before the container starts, says which, and gives
`docker run` `--gpus device=UUID` instead. "No compute process" is the test, not a memory
threshold: a process that just started holds its GPU with a few MiB.
"""
from __future__ import annotations

import dataclasses
import json

from pystributed import docker
from pystributed.errors import StepError
from pystributed.features import Feature
from pystributed.places.server import Server, sections

FREE = "free"
HELP = "See docs/gpu-servers.md."


def requested(args):
    """The values of `--gpus` in docker run's arguments (`--gpus X` or `--gpus=X`), in order."""
    values = []
    for i, arg in enumerate(args):
        if arg == "--gpus" and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--gpus="):
            values.append(arg.split("=", 1)[1])
    return values


def with_device(args, uuid):
    """The arguments with `--gpus free` made `--gpus device=UUID` (Docker's syntax for one GPU;
    in a shell, `--gpus '"device=UUID"'` gives the same words to docker)."""
    args, device = list(args), f"device={uuid}"
    for i, arg in enumerate(args):
        if arg == "--gpus" and i + 1 < len(args) and args[i + 1] == FREE:
            args[i + 1] = device
        elif arg == f"--gpus={FREE}":
            args[i] = f"--gpus={device}"
    return args


@dataclasses.dataclass
class Gpu:
    index: int
    uuid: str
    memory_used: int | None = None  # MiB; None where nvidia-smi says [N/A]
    processes: int = 0  # compute processes on it

    @property
    def shown(self):
        return f"GPU {self.index} {self.uuid}"


def _mib(text):
    text = text.strip()
    return int(text) if text.isdigit() else None


def parse(gpus_csv, apps_csv):
    """The GPUs from nvidia-smi's `--query-gpu=index,uuid,memory.used` and
    `--query-compute-apps=gpu_uuid,used_memory` (both `--format=csv,noheader,nounits`; the
    second is empty when no process runs). ValueError if a line is not of that form."""
    gpus = {}
    for line in gpus_csv.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1]:
            raise ValueError(f"not `index, uuid, memory.used`: {line!r}")
        gpus[fields[1]] = Gpu(int(fields[0]), fields[1], _mib(fields[2]))
    for line in apps_csv.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 2 or not fields[0]:
            raise ValueError(f"not `gpu_uuid, used_memory`: {line!r}")
        if fields[0] in gpus:  # (a process on a MIG instance names the instance: not counted)
            gpus[fields[0]].processes += 1
    return sorted(gpus.values(), key=lambda gpu: gpu.index)


def pick(gpus):
    """(the GPU to take, why): one without a compute process, else the one using the least
    memory; among equals the lowest index."""
    unknown = float("inf")
    gpu = min(gpus, key=lambda g: (g.processes > 0, unknown if g.memory_used is None else g.memory_used,
                                   g.index))
    used = "unknown" if gpu.memory_used is None else f"{gpu.memory_used} MiB"
    if not gpu.processes:
        return gpu, f"took {gpu.shown}: no compute process, {used} used"
    return gpu, (f"took {gpu.shown}: all {len(gpus)} GPUs have compute processes, this one uses the least "
                 f"memory, {used} ({gpu.processes} process{'es' * (gpu.processes != 1)})")


class Gpus(Feature):
    """For a run whose DOCKER_RUN_ARGS hold `--gpus` (features.for_run adds it then), on a place
    reached with a shell (a cluster place has GPUs of its own: CLUSTER = "swarm", GPUS_PER_TASK)."""

    def before_build(self, run):
        if isinstance(run.place, Server):
            check(run.place, requested(run.config.DOCKER_RUN_ARGS))

    def mounts(self, run):
        if not isinstance(run.place, Server) or FREE not in requested(run.config.DOCKER_RUN_ARGS):
            return []
        with run.steps.step("gpus", run.place.name):
            gpu, why = choose(run.place)
            run.steps.progress(why)
        args = with_device(run.config.DOCKER_RUN_ARGS, gpu.uuid)
        run.config = dataclasses.replace(run.config, DOCKER_RUN_ARGS=args)
        run.result.config["DOCKER_RUN_ARGS"] = args  # run.json says which GPU it had
        return []


def check(place, values):
    """Before the push: the engine can give containers GPUs, and `--gpus free` has nvidia-smi."""
    shown = ", ".join(f"`--gpus {value}`" for value in values)
    out = place.docker(docker.runtimes(), step="gpus")
    try:
        runtimes = json.loads(out.strip() or "{}")
    except ValueError:
        raise StepError("gpus", f"`docker info` on {place.name} did not answer its runtimes as JSON",
                        output=out) from None
    if "nvidia" in runtimes and FREE not in values:
        return
    found = sections(place.call("gpus", step="gpus"))
    if "nvidia" not in runtimes and not found.get("toolkit"):
        raise StepError(
            "gpus", f"{shown} cannot work on {place.name}: its Docker engine has no `nvidia` runtime "
                    f"(runtimes: {', '.join(sorted(runtimes)) or 'none'}) and no NVIDIA Container Toolkit "
                    "hook (nvidia-container-runtime-hook, nvidia-cdi-hook) is on PATH there. "
                    "Nothing was pushed.",
            hint=f"On {place.name}: install the NVIDIA driver and the NVIDIA Container Toolkit, then "
                 "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`; "
                 "`docker run --rm --gpus all IMAGE nvidia-smi` there must work. Or run without "
                 f"--gpus. {HELP}")
    if FREE in values and not found.get("nvidia-smi"):
        raise StepError(
            "gpus", f"`--gpus free` needs nvidia-smi on {place.name}, to see which GPUs are in use, and it "
                    "is not on PATH there. Nothing was pushed.",
            hint="Install the NVIDIA driver's utilities there (nvidia-smi comes with the driver), or name "
                 f"the GPU: --gpus '\"device=1\"' (DOCKER_RUN_ARGS [\"--gpus\", \"device=1\"]). {HELP}")


def choose(place):
    """(the GPU to take, why), from nvidia-smi on the place."""
    found = sections(place.call("gpus", FREE, step="gpus",
                                hint=f"nvidia-smi failed on {place.name}: is the NVIDIA driver loaded there "
                                     "(does `nvidia-smi` work)?"))
    if "nvidia-smi" in found and not found["nvidia-smi"]:  # gone since the check
        raise StepError("gpus",
                        f"`--gpus free` needs nvidia-smi on {place.name}, and it is not on PATH there")
    gpus_csv, apps_csv = "\n".join(found.get("gpus", [])), "\n".join(found.get("apps", []))
    try:
        gpus = parse(gpus_csv, apps_csv)
    except ValueError as e:
        raise StepError("gpus", f"nvidia-smi's answer on {place.name} was not understood ({e})",
                        output=f"{gpus_csv}\n{apps_csv}") from None
    if not gpus:
        raise StepError("gpus", f"nvidia-smi on {place.name} lists no GPU",
                        hint="Is the NVIDIA driver loaded there (`nvidia-smi -L`)?")
    return pick(gpus)
