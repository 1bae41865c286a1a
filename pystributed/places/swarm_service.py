"""A Docker Swarm as its manager describes it, and the services we make on it: the nodes and the
tasks as `docker node inspect` / `docker inspect --type task` print them, and `docker run`'s
options as `docker service create` takes them (swarm.py uses these)."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json

from pystributed import context, docker
from pystributed.errors import ConfigError, StepError

SSH_LABEL = "pystributed.ssh"  # a node's label: how to reach it with ssh (set by `cluster init`)
GPU = "gpu"  # the generic resource's kind
# Task states (swarmkit's api.TaskState), in order.
QUEUED = ("new", "pending")  # no node (with GPUs free) yet
STARTING = ("assigned", "accepted", "preparing", "ready", "starting")
ENDED = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")


@dataclasses.dataclass
class Node:
    id: str
    hostname: str = ""
    address: str = ""
    role: str = ""
    state: str = ""  # ready, down, ...
    availability: str = ""  # active, pause, drain
    gpus: list = dataclasses.field(default_factory=list)  # the UUIDs of its generic resource `gpu`
    labels: dict = dataclasses.field(default_factory=dict)
    ssh: str = ""  # what ssh is given to reach it

    @property
    def ready(self):
        return self.state == "ready" and self.availability == "active"

    @property
    def shown(self):
        return self.labels.get(SSH_LABEL) or self.address or self.hostname or self.id[:12]


@dataclasses.dataclass
class Task:
    id: str
    service: str = ""
    slot: int = 0  # a replicated job's tasks have slots 0..N-1; a retried task keeps its slot
    node: str = ""  # the node's id, once placed
    state: str = "new"
    desired: str = ""
    message: str = ""
    error: str = ""
    container: str = ""
    exit_code: int | None = None
    gpus: list = dataclasses.field(default_factory=list)
    created: str = ""
    run: str = ""  # its container's label pystributed.run: the run's id (a sweep's, or SWEEP-INDEX-ATTEMPT)

    @property
    def ended(self):
        return self.state in ENDED

    @property
    def succeeded(self):
        return self.state == "complete"


def parse_nodes(lines, *, user=""):
    """Nodes from `docker node inspect --format '{{json .}}'` lines; `user`: REMOTE_SERVER's, for
    nodes reached at their address."""
    nodes = []
    for line in lines:
        info = _json(line)
        if not info.get("ID"):
            continue
        description, spec, status = (info.get("Description") or {}, info.get("Spec") or {},
                                     info.get("Status") or {})
        resources = (description.get("Resources") or {}).get("GenericResources") or []
        gpus = [(r.get("NamedResourceSpec") or {}).get("Value") for r in resources
                if (r.get("NamedResourceSpec") or {}).get("Kind") == GPU]
        gpus += [f"{(r.get('DiscreteResourceSpec') or {}).get('Value')} (a count)" for r in resources
                 if (r.get("DiscreteResourceSpec") or {}).get("Kind") == GPU]
        labels = spec.get("Labels") or {}
        address = status.get("Addr", "")
        if address == "0.0.0.0":  # a manager's own, at times: its advertised address is the one
            address = ((info.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
        node = Node(info["ID"], hostname=description.get("Hostname", ""), address=address,
                    role=spec.get("Role", ""),
                    state=status.get("State", ""), availability=spec.get("Availability", ""), gpus=gpus,
                    labels=labels)
        node.ssh = labels.get(SSH_LABEL) or (f"{user}@{address}" if user else address)
        nodes.append(node)
    return nodes


def parse_tasks(lines):
    """Tasks from `docker inspect --type task --format '{{json .}}'` lines."""
    tasks = []
    for line in lines:
        info = _json(line)
        if not info.get("ID"):
            continue
        status = info.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        spec = (info.get("Spec") or {}).get("ContainerSpec") or {}
        gpus = [(r.get("NamedResourceSpec") or {}).get("Value") for r in info.get("GenericResources") or []
                if (r.get("NamedResourceSpec") or {}).get("Kind") == GPU]
        tasks.append(Task(info["ID"], service=info.get("ServiceID", ""), slot=int(info.get("Slot") or 0),
                          node=info.get("NodeID", ""), state=status.get("State", "new"),
                          desired=info.get("DesiredState", ""), message=status.get("Message", ""),
                          error=status.get("Err", ""), container=container.get("ContainerID", ""),
                          exit_code=container.get("ExitCode") if status.get("State") in ENDED else None,
                          gpus=[g for g in gpus if g], created=info.get("CreatedAt", ""),
                          run=(spec.get("Labels") or {}).get(docker.RUN_LABEL, "")))
    return sorted(tasks, key=lambda t: (t.slot, t.created))


def _json(line):
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def service_name(run_id):
    return docker.container_name(run_id)  # pystributed-<run-id>, as a server's container is named


# `docker run` options (of docker.run_detached, and DOCKER_RUN_ARGS) as `docker service create` has them.
_SAME = {"--user", "--env", "--env-file", "--workdir", "--hostname", "--mount", "--label", "--cap-add",
         "--cap-drop",
         "--network", "--entrypoint", "--name", "--dns", "--sysctl"}
_RENAMED = {"-u": "--user", "-e": "--env", "-w": "--workdir", "--group-add": "--group", "-h": "--hostname"}
_FLAGS = {"--init", "--read-only", "--tty", "-t"}
_DROPPED = {"--detach", "-d", "--rm"}  # a service is always detached and put away by us


def service_args(run_args, *, replicas=1, max_concurrent=None, gpus=1, variables=()):
    """`docker service create` arguments for the container that `docker run run_args` would start
    (run_args end with the image): a replicated job of `replicas` tasks, `max_concurrent` at a time
    (default all: Swarm queues those without free GPUs), each asking for `gpus` GPUs. Its command is
    task_runner.py, which exits 0 whatever the cell does (Swarm would fill a failed task's slot again
    and again: see task_runner.py), so a failed task is never tried again by Swarm but by us
    (swarm_engine.py's --retries). `variables`: more `--env` words. ConfigError for a `docker run`
    option that a service has no equivalent of."""
    *options, image = run_args
    args = ["service", "create", "--detach", "--mode", "replicated-job", "--replicas", str(replicas),
            "--max-concurrent", str(max_concurrent or replicas), "--restart-condition", "none",
            # Removing the service (cancel, an interrupt) interrupts the cell: its `finally:` blocks run.
            "--stop-signal", "SIGINT", "--stop-grace-period", "10s",
            # The task's slot: its index in a sweep (Swarm gives the node's id for slot 0: task_runner.py).
            "--env", "PYSTRIBUTED_SLOT={{.Task.Slot}}", "--env", "PYSTRIBUTED_NODE={{.Node.ID}}"]
    for word in variables:
        args += ["--env", word]
    if gpus:
        args += ["--generic-resource", f"{GPU}={gpus}"]
    i = 0
    while i < len(options):
        option, value = options[i], None
        if option.startswith("--") and "=" in option:
            option, value = option.split("=", 1)
        takes_value = option in _SAME or option in _RENAMED or option in ("--volume", "-v", "--gpus",
                                                                          "--shm-size")
        if takes_value and value is None:
            i += 1
            if i >= len(options):
                raise ConfigError(f"DOCKER_RUN_ARGS: {option} needs a value")
            value = options[i]
        i += 1
        if option in _DROPPED or option == "--gpus":  # GPUs are the generic resource (GPUS_PER_TASK)
            continue
        if option in _FLAGS:
            args.append("--tty" if option == "-t" else option)
        elif option in ("--volume", "-v"):
            args += ["--mount", _mount(value)]
        elif option == "--shm-size":  # a service has no --shm-size: a tmpfs of that size in its place
            args += ["--mount", f"type=tmpfs,destination=/dev/shm,tmpfs-size={value}"]
        elif option == "--label":
            args += ["--label", value, "--container-label", value]
        elif takes_value:
            args += [_RENAMED.get(option, option), value]
        else:
            raise ConfigError(
                f"DOCKER_RUN_ARGS holds {options[i - 1]!r}, which `docker service create` (CLUSTER = "
                "'swarm') has no equivalent of here; the ones that carry over: "
                f"{', '.join(sorted(_SAME | set(_RENAMED) | _FLAGS))}, --volume/-v, --shm-size; --gpus is "
                "replaced by GPUS_PER_TASK")
    return [*args, image, *context.task_command()]


def _mount(volume):
    """`docker run --volume SOURCE:TARGET[:OPTIONS]` as a `--mount` value."""
    source, target, *rest = volume.split(":")
    kind = "bind" if source.startswith("/") else "volume"
    readonly = ",readonly" if rest and "ro" in rest[0].split(",") else ""
    return f"type={kind},source={source},target={target}{readonly}"


def check_run_args(args):
    """Refuse, before anything is built, DOCKER_RUN_ARGS that a service cannot take."""
    service_args([*args, "image"])


def on_each(nodes, action):
    """{node id: action(node) or the StepError it raised}, for each node at once."""
    nodes = list(nodes)
    if not nodes:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        futures = {node.id: pool.submit(action, node) for node in nodes}
    found = {}
    for node_id, future in futures.items():
        try:
            found[node_id] = future.result()
        except StepError as e:
            found[node_id] = e
    return found
