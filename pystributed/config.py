"""Load config.py (or $PYSTRIBUTED_CONFIG), then PYSTRIBUTED_<KEY> variables over it."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import runpy
import shlex
import sys

from pystributed.errors import ConfigError

LOCAL = "local"  # REMOTE_SERVER value that runs on the local engine, without ssh
# What interrupting the kernel during a run does to the container.
INTERRUPT_CHOICES = ("stop", "detach")
# How the image reaches the server: through DOCKER_REGISTRY, or built there from the context.
TRANSPORTS = ("registry", "remote-build")

# Docker's reference grammar (distribution/reference): lowercase path components.
_IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._/-]+)?")


# The BASE_IMAGE that config.py.example, README and docs/ recommend for a GPU cell (not the default).
RECOMMENDED_GPU_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"

# A whole number of at least 1: an annotation of its own, which _check_type reads as such (mypy: an int).
Count = int


def _default_base_image():
    # Pickles and wheels need the same Python on both sides, so follow the local one.
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


@dataclasses.dataclass(frozen=True)
class Config:
    REMOTE_SERVER: str
    DOCKER_REGISTRY: str = ""
    DOCKER_IMAGE_NAME: str = "pystributed"
    REMOTE_WORKDIR: str = "pystributed-runs"
    USER_CODE_PATH: str = "user_code.py"
    BASE_IMAGE: str = dataclasses.field(default_factory=_default_base_image)
    REQUIREMENTS: str | None = None
    LOCAL_RESULTS_DIR: str = "results"
    DOCKER_RUN_ARGS: list[str] = dataclasses.field(default_factory=list)
    SSH_OPTIONS: list[str] = dataclasses.field(default_factory=list)
    ON_INTERRUPT: str = "stop"
    TRANSPORT: str = "registry"
    ENV: dict[str, str] = dataclasses.field(default_factory=dict)
    SECRETS: list[str] = dataclasses.field(default_factory=list)
    DATA: list[str] = dataclasses.field(default_factory=list)
    REMOTE_DATA: dict[str, str] = dataclasses.field(default_factory=dict)
    CONTEXT_WARN_MB: float = 500
    # Many servers (places/swarm.py, sweep.py): "swarm" runs on the Docker Swarm that REMOTE_SERVER manages.
    CLUSTER: str = ""
    GPUS_PER_TASK: int = 1
    MAX_CONCURRENT: Count | None = None  # tasks of a sweep at once: 1 on a server, all on a cluster
    # a cluster's sweep: tasks run one after another in one container (short tasks)
    TASKS_PER_CONTAINER: Count = 1
    # CLUSTER = "slurm" (places/slurm.py): sbatch's options of the site (partition, account, QoS, time), and
    # how the nodes run containers ("" = found on the login node).
    SLURM_ARGS: list[str] = dataclasses.field(default_factory=list)
    SLURM_CONTAINERS: str = ""
    # CLUSTER = "slurm": a run's cell once per node, in one allocation (MASTER_ADDR, RANK, ...)
    NODES: Count = 1

    @property
    def is_local(self):
        return self.REMOTE_SERVER == LOCAL

    @property
    def is_cluster(self):
        return self.CLUSTER in (SWARM, SLURM)

    @property
    def image_repository(self):
        if self.DOCKER_REGISTRY:
            return f"{self.DOCKER_REGISTRY}/{self.DOCKER_IMAGE_NAME}"
        return self.DOCKER_IMAGE_NAME


# One line per key: what docs/configuration.md's reference says of it (scripts/config_reference.py
# prints that table from Config's fields and these; tests/test_docs.py checks that it is current).
HELP = {
    "REMOTE_SERVER": ("what you would give `ssh`: `user@host`, `host`, or a `Host` alias from "
                      "`~/.ssh/config` (port, key, user come from there). `local` runs on this machine's "
                      "engine, without ssh."),
    "DOCKER_REGISTRY": ("registry both machines reach, e.g. `registry.example.com:5000/team`. Empty only "
                        'with `local` or `TRANSPORT = "remote-build"` (nothing is pushed).'),
    "DOCKER_IMAGE_NAME": ("image name; each image is tagged with the hash of what went into it, "
                          "`BASE_IMAGE`'s id included (a rerun with nothing changed reuses it; a base "
                          "rebuilt under the same tag builds again)."),
    "REMOTE_WORKDIR": ("folder on the server (absolute, or relative to the ssh user's home; with `local`, "
                       "to yours) that gets one `<run-id>/` folder per run."),
    "USER_CODE_PATH": "where `%%save_for_remote` saves the cell, and what `runner.main()` runs.",
    "BASE_IMAGE": ("image to build on; needs `python3` or `python` on its `PATH` (and pip for requirements: "
                  "`python3 -m pip`). One without Python is named before anything is pushed. For a "
                  f"GPU cell: `{RECOMMENDED_GPU_IMAGE}`."),
    "REQUIREMENTS": ("pip requirements file, installed in its own layer before your code. Wheels it names "
                     'by relative path are shipped with it. `"auto"`: pin the versions installed here of '
                     "what the cell imports."),
    "LOCAL_RESULTS_DIR": "where runs land here: `LOCAL_RESULTS_DIR/<run-id>/`.",
    "DOCKER_RUN_ARGS": ('extra `docker run` arguments on the server, e.g. `["--gpus", "all"]` ([GPU '
                        "servers](gpu-servers.md))."),
    "SSH_OPTIONS": 'extra `ssh` arguments, e.g. `["-i", "~/.ssh/gpu_key"]` or `["-F", "ssh_config"]`.',
    "ON_INTERRUPT": "what interrupting the kernel does to the run: `stop` it, or `detach` (it goes on).",
    "TRANSPORT": ("`registry`: build here, push, pull there. `remote-build`: send the build context over "
                  "ssh and build on the server (its layer cache stays there; no registry needed)."),
    "ENV": "environment variables for the run (kept in `run.json`).",
    "SECRETS": ("names of variables (API tokens) taken from *this* machine's environment at run time; see "
                "[Safety](faults-and-safety.md#safety)."),
    "DATA": ("files and folders of the notebook's folder synced to the server once (only changes later) "
             "and mounted read-only at the same relative path, instead of being built into the image."),
    "REMOTE_DATA": ('paths on the server mounted read-only: `{"/srv/datasets/imagenet": "imagenet"}` '
                    "appears at `/app/imagenet`."),
    "CONTEXT_WARN_MB": ("warn before the build when the build context is larger (in MB); `0` turns the "
                        "warning off."),
    "CLUSTER": ('`"swarm"`: run on the Docker Swarm that `REMOTE_SERVER` manages ([Many '
                'servers](clusters.md)); `"slurm"`: as Slurm jobs submitted on the login node '
                '`REMOTE_SERVER` ([Slurm](slurm.md)); `""`: one server.'),
    "GPUS_PER_TASK": "on a cluster, the GPUs each run or sweep task asks Swarm or Slurm for (`0`: none).",
    "MAX_CONCURRENT": ("tasks of a sweep running at once: on one server `1` when unset; on a cluster all "
                       "(Swarm or Slurm queues those without a free GPU)."),
    "TASKS_PER_CONTAINER": ("on a cluster (swarm, Slurm), a sweep's tasks run one after another in each "
                            "container, K at a time: for many short tasks, whose container starts would "
                            "cost more than their work. Each task keeps its own folder, `output.log`, exit"
                            " code, traceback and retry; a Slurm job's time limit (`--time` in "
                            "`SLURM_ARGS`, or the partition's) must cover K tasks, which a note at the "
                            "sweep's start recalls."),
    "SLURM_ARGS": ("`CLUSTER = \"slurm\"` only: the site's sbatch options (partition, account, QoS, time "
                   'limit), e.g. `["--partition", "gpu", "--time", "02:00:00"]`; those pystributed sets '
                   "itself (`--array`, `--gres`, `--nodes`, ...) are refused."),
    "SLURM_CONTAINERS": ('`CLUSTER = "slurm"` only: how the nodes run containers, `"docker"`, `"pyxis"` or'
                         ' `"apptainer"`; `""`: found on the login node.'),
    "NODES": ("`CLUSTER = \"slurm\"` only: a run's cell once per node on that many nodes, in one allocation "
              "(`--nodes N` of `%%remote` and `run`, `runner.main(nodes=N)`; see [Slurm](slurm.md))."),
}
# How the reference shows a default that is computed (a default_factory) rather than written.
DEFAULT_SHOWN = {"BASE_IMAGE": "python:<your major.minor>-slim"}

# Each key's annotation, as written (`from __future__ import annotations`): what the checks below read.
_ANNOTATIONS = {field.name: field.type for field in dataclasses.fields(Config)}
KEYS = list(_ANNOTATIONS)


def _whole(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


# What a value of each annotation must be: its test, and how a message says it.
_TYPES = {
    "str": (lambda value: isinstance(value, str), "a string"),
    "str | None": (lambda value: value is None or isinstance(value, str), "a string or None"),
    "list[str]": (lambda value: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
                  "a list of strings"),
    "dict[str, str]": (lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()), "a dict of strings to strings"),
    "float": (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
              "a number (0 or more)"),
    "int": (lambda value: _whole(value, 0), "a whole number (0 or more)"),
    "Count": (lambda value: _whole(value, 1), "a whole number (at least 1)"),
    "Count | None": (lambda value: value is None or _whole(value, 1), "a whole number (at least 1)"),
}
# The annotations whose $PYSTRIBUTED_<KEY> text is a number: how it is read, and how a message says it.
_NUMBERS = {"float": (float, "a number"), "int": (int, "a whole number"), "Count": (int, "a whole number"),
            "Count | None": (int, "a whole number")}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SWARM, SLURM = "swarm", "slurm"
SLURM_ROUTES = ("", "docker", "pyxis", "apptainer")
# sbatch options that are pystributed's own (slurm.py sets them).
SLURM_OURS = ("--array", "-a", "--wrap", "--output", "-o", "--error", "-e", "--job-name", "-J", "--parsable",
              "--export", "--gres", "--chdir", "-D", "--nodes", "-N", "--ntasks-per-node")
# PYSTRIBUTED_ variables that are not config keys (the run sets RESULTS and RUN_ID).
_OTHER_VARIABLES = ("CONFIG", "RESULTS", "RUN_ID", "SANDBOX")


def load(path=None, environ=None, *, require_server=True, **overrides):
    """Return the Config from `path` (default $PYSTRIBUTED_CONFIG or ./config.py), the
    environment and `overrides`, each over the one before. Raise ConfigError on a bad value.
    Without `require_server`, a missing REMOTE_SERVER is taken as 'local' (to read other keys)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("PYSTRIBUTED_CONFIG")
    if path is None and os.path.exists("config.py"):
        path = "config.py"
    values = {}
    if path:
        values.update(_read_file(path))
    source = {key: path for key in values}
    for name, value in environ.items():
        key = name[len("PYSTRIBUTED_"):]
        if not name.startswith("PYSTRIBUTED_") or key.startswith(_OTHER_VARIABLES):
            continue
        if key in KEYS or difflib.get_close_matches(key, KEYS, n=1):  # a key, or a typo of one
            key = _check_key(key, f"${name}")
            values[key] = _from_string(key, value)
            source[key] = f"${name}"
    for key, value in overrides.items():
        values[_check_key(key, "the arguments")] = value
        source[key] = "the arguments"
    for key, value in values.items():
        _check_type(key, value, source[key])
    if "REMOTE_SERVER" not in values and not require_server:
        values["REMOTE_SERVER"] = LOCAL
    if "REMOTE_SERVER" not in values:
        where = f"{path}" if path else "config.py (none found in the working directory)"
        raise ConfigError(
            f"REMOTE_SERVER is not set in {where}. Set it to your server's ssh address "
            f"(e.g. REMOTE_SERVER = 'user@gpu-box') or to {LOCAL!r} to run on the local Docker engine; "
            f"config.py.example lists every key"
        )
    config = Config(**values)
    _check_values(config, source)
    return config


def _read_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    try:
        namespace = runpy.run_path(path)
    except Exception as e:
        raise ConfigError(f"{path} could not be loaded: {type(e).__name__}: {e}") from e
    values = {}
    for name, value in namespace.items():
        if name.isupper() and not name.startswith("_"):
            values[_check_key(name, path)] = value
    return values


def _check_key(key, where):
    if key in KEYS:
        return key
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(KEYS)}"
    raise ConfigError(f"unknown config key {key} in {where}: {hint}")


def _from_string(key, value):
    """$PYSTRIBUTED_<KEY>'s text as a value of the key's annotation (which _check_type then checks)."""
    annotation = _ANNOTATIONS[key]
    if annotation == "str":
        return value
    if annotation == "list[str]":
        return shlex.split(value)
    if annotation == "dict[str, str]":  # "A=1 B='two words'"
        words = shlex.split(value)
        bad = [word for word in words if "=" not in word]
        if bad:
            raise ConfigError(f"$PYSTRIBUTED_{key} must be NAME=VALUE words, e.g. PYSTRIBUTED_{key}=\"A=1 "
                              f"B='two words'\", not {bad[0]!r}")
        return dict(word.partition("=")[::2] for word in words)
    if annotation.endswith(" | None") and value == "":
        return None
    if annotation == "str | None":
        return value
    number, said = _NUMBERS[annotation]
    try:
        return number(value)
    except ValueError:
        raise ConfigError(f"{key} must be {said}, not {value!r}") from None


def _check_type(key, value, where):
    annotation = _ANNOTATIONS[key]
    if annotation == "list[str]" and isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be a list of strings, e.g. {shlex.split(value)!r}")
    test, expected = _TYPES[annotation]
    if not test(value):
        raise ConfigError(f"{key} in {where} must be {expected}, not {type(value).__name__} {value!r}")


def _check_values(config, source):
    def refuse(key, why):
        raise ConfigError(f"{key} = {getattr(config, key)!r} in {source.get(key, 'the defaults')} {why}")

    if not config.REMOTE_SERVER or config.REMOTE_SERVER.startswith("-") or _has_space_or_control(
        config.REMOTE_SERVER
    ):
        refuse("REMOTE_SERVER", "is not an ssh destination (user@host, host, or a Host alias)")
    if config.DOCKER_REGISTRY and not _REGISTRY.fullmatch(config.DOCKER_REGISTRY):
        refuse("DOCKER_REGISTRY", "is not a registry address such as registry.example.com:5000/team")
    if config.TRANSPORT not in TRANSPORTS:
        refuse("TRANSPORT", f"must be one of {', '.join(TRANSPORTS)}")
    if not config.DOCKER_REGISTRY and not config.is_local and config.TRANSPORT == "registry":
        refuse("DOCKER_REGISTRY", "is empty: the server pulls the image from a registry both machines reach "
               "(or set TRANSPORT = 'remote-build' to build on the server)")
    if not _IMAGE_NAME.fullmatch(config.DOCKER_IMAGE_NAME):
        refuse("DOCKER_IMAGE_NAME",
               "is not a valid image name: lowercase letters, digits, '.', '_', '-', '/'")
    if not config.BASE_IMAGE or config.BASE_IMAGE.startswith("-") or _has_space_or_control(config.BASE_IMAGE):
        refuse("BASE_IMAGE", "is not an image reference such as python:3.11-slim")
    for name in [*config.ENV, *config.SECRETS]:
        if not _ENV_NAME.fullmatch(name):
            refuse("ENV" if name in config.ENV else "SECRETS",
                   f"holds {name!r}, which is not a variable name")
    if config.CLUSTER:
        _check_cluster(config, refuse)
    if config.NODES > 1 and config.CLUSTER != SLURM:
        refuse("NODES", "runs the cell over several nodes in one Slurm allocation: only with CLUSTER = "
                        f"\"slurm\" (here CLUSTER = {config.CLUSTER!r}); on one server or a swarm a run "
                        "is one container")
    if config.TASKS_PER_CONTAINER > 1 and not config.is_cluster:
        refuse("TASKS_PER_CONTAINER", "runs a sweep's short tasks one after another in one container of a "
                                      "cluster (CLUSTER = \"swarm\" or \"slurm\"); on one server each task "
                                      "is a container")
    if config.ON_INTERRUPT not in INTERRUPT_CHOICES:
        refuse("ON_INTERRUPT", f"must be one of {', '.join(INTERRUPT_CHOICES)}")
    for key in ("REMOTE_WORKDIR", "USER_CODE_PATH", "LOCAL_RESULTS_DIR"):
        value = getattr(config, key)
        if not value or "\0" in value or "\n" in value:
            refuse(key, "must be a non-empty path on one line")
    for path in config.DATA:
        if not _plain_relative(path):
            refuse("DATA", f"holds {path!r}: each entry must be a path relative to the notebook's folder, "
                           "without '..' or ':' (e.g. 'data/' or 'weights.pt')")
    for server_path, container_path in config.REMOTE_DATA.items():
        if not server_path.startswith("/") or ":" in server_path or _has_control(server_path):
            refuse("REMOTE_DATA", f"holds {server_path!r}: the keys are absolute paths on the server")
        if not (_plain_relative(container_path) or container_path.startswith("/") and _plain_relative(
                container_path.lstrip("/"))):
            refuse("REMOTE_DATA", f"maps {server_path!r} to {container_path!r}: the values are where it "
                                  "appears in the container, relative to /app (e.g. 'imagenet') or absolute")


def _check_cluster(config, refuse):
    """The keys that only a cluster reads (a run on one server reads none of them), SLURM_* Slurm's only."""
    if config.CLUSTER not in (SWARM, SLURM):
        refuse("CLUSTER", "must be \"swarm\" (a Docker Swarm that REMOTE_SERVER manages), \"slurm\" (a Slurm "
               "cluster whose login node is REMOTE_SERVER) or \"\" (one server)")
    to = "a manager of the swarm" if config.CLUSTER == SWARM else "the cluster's login node"
    if config.is_local:
        refuse("REMOTE_SERVER", f"is 'local', but CLUSTER = {config.CLUSTER!r} needs {to} to ssh to")
    if config.TRANSPORT != "registry":
        refuse("TRANSPORT", f"must be 'registry' with CLUSTER = {config.CLUSTER!r}: every node pulls the "
                            "image from it")
    if config.DATA:
        refuse("DATA", f"is synced to one server, and CLUSTER = {config.CLUSTER!r} runs on many: put the "
                       "data on every node and mount it with REMOTE_DATA")
    if config.CLUSTER != SLURM:
        return
    if config.SLURM_CONTAINERS not in SLURM_ROUTES:
        refuse("SLURM_CONTAINERS", "must be \"docker\", \"pyxis\", \"apptainer\", or \"\" (found on "
                                   "the login node)")
    for word in config.SLURM_ARGS:
        if word.split("=", 1)[0] in SLURM_OURS:
            refuse("SLURM_ARGS", f"holds {word!r}, which pystributed sets itself (GPUS_PER_TASK asks for the "
                                 "GPUs, MAX_CONCURRENT limits a sweep's tasks at once, NODES asks for nodes)")
        if "\n" in word or "\0" in word:
            refuse("SLURM_ARGS", "holds a word with a newline")


def _plain_relative(path):
    """A relative path that stays inside its folder, and that `docker run -v` can carry."""
    parts = path.split("/")
    return (bool(path.strip("/. ")) and not path.startswith("/") and ".." not in parts and ":" not in path
            and "," not in path and not _has_control(path))


def _has_control(text):
    return any(ord(c) < 32 for c in text)


def _has_space_or_control(text):
    return any(c.isspace() or ord(c) < 32 for c in text)


def environment(config):
    """ENV, and SECRETS taken from this machine's environment: given to the container at run time
    through the standard input of `docker run --env-file /dev/stdin`, so that no value is ever in
    an image layer, a log, or a command line that `ps` shows on the server."""
    env = dict(config.ENV)
    for name in config.SECRETS:
        if name not in os.environ:
            raise ConfigError(f"SECRETS names {name}, which is not set in this environment: "
                                   f"set it here (e.g. export {name}=...) before running")
        env[name] = os.environ[name]
    for name, value in env.items():
        if "\n" in value or "\0" in value:
            raise ConfigError(f"the value of {name} holds a newline, which docker's --env-file cannot carry")
    return env
