"""CLUSTER = "swarm": a Docker Swarm whose manager is REMOTE_SERVER. No scheduler of ours: a run (or
a sweep, sweep.py) is one `replicated-job` service, each task asking for GPUS_PER_TASK of the generic
resource `gpu` that the nodes advertise; Swarm places it on a node with that many free, and keeps it
`pending` while no node has them (the queue).

Files stay where they are made, as on one server: the run folder REMOTE_WORKDIR/<run-id>/ is made on
every node before the service starts (one service mounts the same path wherever its task lands, so
REMOTE_WORKDIR must be the same absolute path on every node: the same user and home), and the results
are fetched from the node the task ran on. A node is reached with ssh as `cluster init` labelled it
(`pystributed.ssh`), else at the address Swarm knows it by, as REMOTE_SERVER's user; each with one
shared connection for the length of a run, like the manager.

In the container, task_runner.py runs before cell_runner.py: it tees the output into the run folder
(output.log: there is no `finish` on the node to save it), makes CUDA_VISIBLE_DEVICES of the GPUs
Swarm gave the task (DOCKER_RESOURCE_GPU), and for a sweep picks the task's parameters by its slot."""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import threading
import time

from pystributed import context, docker
from pystributed.errors import ConfigError, StepError
from pystributed.places import Place, server, ssh

SSH_LABEL = "pystributed.ssh"  # a node's label: how to reach it with ssh (set by `cluster init`)
GPU = "gpu"  # the generic resource's kind
TASK_RUNNER = "/pystributed/task_runner.py"
# Task states (swarmkit's api.TaskState), in order.
QUEUED = ("new", "pending")  # no node (with GPUs free) yet
STARTING = ("assigned", "accepted", "preparing", "ready", "starting")
ENDED = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")
POLL = 0.5  # seconds between two looks at a service's tasks


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
        description, spec, status = info.get("Description") or {}, info.get("Spec") or {}, info.get("Status") or {}
        resources = (description.get("Resources") or {}).get("GenericResources") or []
        gpus = [(r.get("NamedResourceSpec") or {}).get("Value") for r in resources
                if (r.get("NamedResourceSpec") or {}).get("Kind") == GPU]
        gpus += [f"{(r.get('DiscreteResourceSpec') or {}).get('Value')} (a count)" for r in resources
                 if (r.get("DiscreteResourceSpec") or {}).get("Kind") == GPU]
        labels = spec.get("Labels") or {}
        address = status.get("Addr", "")
        if address == "0.0.0.0":  # a manager's own, at times: its advertised address is the one
            address = ((info.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
        node = Node(info["ID"], hostname=description.get("Hostname", ""), address=address, role=spec.get("Role", ""),
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
_SAME = {"--user", "--env", "--env-file", "--workdir", "--hostname", "--mount", "--label", "--cap-add", "--cap-drop",
         "--network", "--entrypoint", "--name", "--dns", "--sysctl"}
_RENAMED = {"-u": "--user", "-e": "--env", "-w": "--workdir", "--group-add": "--group", "-h": "--hostname"}
_FLAGS = {"--init", "--read-only", "--tty", "-t"}
_DROPPED = {"--detach", "-d", "--rm"}  # a service is always detached and put away by us


def service_args(run_args, *, replicas=1, max_concurrent=None, gpus=1, variables=()):
    """`docker service create` arguments for the container that `docker run run_args` would start
    (run_args end with the image): a replicated job of `replicas` tasks, `max_concurrent` at a time
    (default all: Swarm queues those without free GPUs), each asking for `gpus` GPUs. Its command is
    task_runner.py, which exits 0 whatever the cell does (Swarm would fill a failed task's slot again
    and again: see task_runner.py), so a failed task is never tried again by Swarm but by us (sweep.py's
    --retries). `variables`: more `--env` words. ConfigError for a `docker run` option that a service
    has no equivalent of."""
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
        takes_value = option in _SAME or option in _RENAMED or option in ("--volume", "-v", "--gpus", "--shm-size")
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
                f"DOCKER_RUN_ARGS holds {options[i - 1]!r}, which `docker service create` (CLUSTER = 'swarm') has no "
                f"equivalent of here; the ones that carry over: {', '.join(sorted(_SAME | set(_RENAMED) | _FLAGS))}, "
                "--volume/-v, --shm-size; --gpus is replaced by GPUS_PER_TASK")
    return [*args, image, *task_command()]


def task_command(*args):
    """The container's command: task_runner.py (with `--cell`, the cell itself) by the image's Python."""
    return ["sh", "-c", context.RUN_PYTHON, "sh", TASK_RUNNER, *args]


def _mount(volume):
    """`docker run --volume SOURCE:TARGET[:OPTIONS]` as a `--mount` value."""
    source, target, *rest = volume.split(":")
    kind = "bind" if source.startswith("/") else "volume"
    readonly = ",readonly" if rest and "ro" in rest[0].split(",") else ""
    return f"type={kind},source={source},target={target}{readonly}"


def check_run_args(args):
    """Refuse, before anything is built, DOCKER_RUN_ARGS that a service cannot take."""
    service_args([*args, "image"])


class _Deferred:
    """A context manager entered later (`open()`) than it is put on an ExitStack: the stack's lock is
    not held while a connection opens."""

    def __init__(self, manager):
        self.manager, self.entered = manager, False

    def __enter__(self):
        return self

    def open(self):
        value = self.manager.__enter__()
        self.entered = True
        return value

    def __exit__(self, *exc):
        return self.manager.__exit__(*exc) if self.entered else False


class Swarm(Place):
    """The swarm, through its manager (REMOTE_SERVER) and, for files, through each node."""

    def __init__(self, config):
        self.config, self.name = config, config.REMOTE_SERVER
        self.manager = ssh.Ssh(config)
        self.steps = None  # the run's display, for "queued" (set by features/cluster.py)
        self.prepared = {}  # node id -> the run folder's path there, for the nodes that have it
        self.ran_on = {}  # run folder -> the node id its task ran on
        self._nodes = None
        self._places = {}
        self._stack = None
        self._lock = threading.Lock()
        self._locks = {}
        check_run_args(config.DOCKER_RUN_ARGS)

    def hint(self):
        return self.manager.hint()

    def engine_hint(self, error):
        return self.manager.engine_hint(error)

    @contextlib.contextmanager
    def connection(self):
        with self.manager.connection() as manager, contextlib.ExitStack() as stack:
            place = Swarm(self.config)
            place.manager, place._stack, place.steps = manager, stack, self.steps
            yield place

    # The nodes.

    def nodes(self, *, again=False):
        if self._nodes is None or again:
            user = self.config.REMOTE_SERVER.rpartition("@")[0]
            out = self.manager.call("swarm_nodes", step="connect", hint=(
                f"Is {self.name} a manager of a swarm? (`docker node ls` there; `python -m pystributed cluster "
                "init` makes one.)"))
            self._nodes = parse_nodes(out.splitlines(), user=user)
            if not self._nodes:
                raise StepError("connect", f"{self.name} lists no swarm node")
        return self._nodes

    def node(self, node_id):
        return next((n for n in self.nodes() if n.id == node_id), None) or next(
            (n for n in self.nodes(again=True) if n.id == node_id), Node(node_id, ssh=node_id))

    def at(self, node):
        """The place that reaches `node` (a Node or its id) with ssh: one shared connection per node."""
        node = node if isinstance(node, Node) else self.node(node)
        with self._lock:  # one lock per node: the nodes' connections open at the same time
            lock = self._locks.setdefault(node.id, threading.Lock())
        with lock:
            if node.id not in self._places:
                place = ssh.Ssh(dataclasses.replace(self.config, REMOTE_SERVER=node.ssh))
                if self._stack is not None:
                    with self._lock:  # (an ExitStack is no thread's own)
                        place = self._stack.enter_context(_Deferred(place.connection()))
                    place = place.open()
                self._places[node.id] = place
            return self._places[node.id]

    def each(self, nodes, action):
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

    def usable(self):
        """The nodes tasks may be placed on."""
        return [n for n in self.nodes() if n.ready]

    # Services.

    def create(self, run_args, env, **options):
        """Start a replicated job (service_args' options; its environment `env` goes on its stdin);
        its id."""
        args = service_args(run_args, **options)
        unreachable = [n for n in self.usable() if n.id not in self.prepared] if self.prepared else []
        for node in unreachable:  # its run folder could not be made: no task of this run goes there
            args[2:2] = ["--constraint", f"node.id!={node.id}"]
        args[2:2] = ["--with-registry-auth"]  # the nodes pull with this machine's login, if any
        out = self.manager.docker(["docker", *args], step="run", hint=(
            f"Swarm refused the service on {self.name}. Is it a manager (`docker node ls` there)?"),
            stdin=server._env_writer(env))
        return out.strip().splitlines()[-1] if out.strip() else ""

    def tasks(self, *services):
        """(whether the (first) service exists, the services' tasks)."""
        out = self.manager.call("swarm_tasks", *services, step="run")
        found = server.sections(out)
        return services[0] in found.get("services", []), parse_tasks(found.get("tasks", []))

    def ours(self):
        """(the names of our services (labelled pystributed.run), the tasks of them all)."""
        found = server.sections(self.manager.call("swarm_tasks", step="status"))
        return found.get("services", []), parse_tasks(found.get("tasks", []))

    def remove_service(self, *services, step="run", interrupt=False, nodes=None):
        """Remove the services and their containers on the nodes (`nodes`: ids; default all).

        Swarm leaves the containers of a removed job, even running ones, and still starts its tasks
        that waited for a GPU once one is free. So, to interrupt a job (`interrupt`), it is first given
        a new version that no node can take (a constraint): Swarm then stops its containers with its
        stop signal, SIGINT (the cells' `finally:` blocks run; 10 seconds each), and removes them;
        then the service goes, then whatever containers are left."""
        where = self.usable() if nodes is None else [self.node(n) for n in nodes]
        if interrupt:
            for service in services:
                with contextlib.suppress(StepError):
                    self.manager.docker(["docker", "service", "update", "--detach", "--constraint-add",
                                         "node.labels.pystributed.cancelled==true", service], step=step)
            deadline = time.monotonic() + 15
            while any(self.leftovers(s, where, running=True) for s in services) and time.monotonic() < deadline:
                time.sleep(POLL)
        with contextlib.suppress(StepError):
            self.manager.docker(["docker", "service", "rm", *services], step=step)
        for service in services:
            self.each(where, lambda node, service=service: self.at(node).call(
                "swarm_put_away", service, "interrupt" if interrupt else "", step=step))

    def leftovers(self, service, nodes=None, *, running=False):
        """{node id: container ids} of the service still on the nodes (`running`: only those that run)."""
        def ids(node):
            out = self.at(node).docker(["docker", "ps", *([] if running else ["--all"]), "--quiet", "--filter",
                                        f"label=com.docker.swarm.service.name={service}"], step="cancel")
            return out.split()
        found = self.each(nodes or self.usable(), ids)
        return {node: out for node, out in found.items() if out and not isinstance(out, StepError)}

    def say(self, text):
        if self.steps is not None:
            self.steps.say(text)

    # The Place methods, for a single run: a job of one task.

    def prepare(self, run_id):
        # Each node as a server of its own: the same checks (a ':' in the path, a rootless engine).
        made = self.each(self.usable(), lambda node: self.at(node).prepare(run_id))
        ok = {node: found for node, found in made.items() if not isinstance(found, StepError)}
        if not ok:
            error = next(iter(made.values()), None)
            raise StepError("connect", f"no node of the swarm managed by {self.name} could be reached to make the run "
                            f"folder: {error.message if error else 'it has no usable node'}",
                            output=error.output if error else "", hint=self.hint())
        for node_id, error in made.items():
            if isinstance(error, StepError):
                self.say(f"note: node {self.node(node_id).shown} could not be reached ({error.message}); "
                         "no task goes there\n")
        paths = {found for found in ok.values()}
        if len(paths) > 1:
            shown = "; ".join(f"{self.node(n).shown}: {path} as {user}" for n, (path, user) in ok.items())
            raise StepError("connect", f"the run folder is not the same path (and user) on every node ({shown})",
                            hint="One service mounts one path wherever its task lands: use the same user, home and "
                                 "REMOTE_WORKDIR on every node (or an absolute REMOTE_WORKDIR).")
        self.prepared = {node: path for node, (path, _) in ok.items()}
        # An image built here is built for the platform of the nodes its tasks may go to (those
        # with GPUs, when tasks ask for some) when they share one; where they do not, Swarm places
        # each task on a node that runs the image's.
        wanted = [node for node in ok if not self.config.GPUS_PER_TASK or self.node(node).gpus] or list(ok)
        platforms = {self.at(node).platform for node in wanted}
        self.platform = platforms.pop() if len(platforms) == 1 else ""
        return paths.pop()

    def discard(self, remote_dir):
        self.each([self.node(n) for n in self.prepared],
                  lambda node: self.at(node).call("rmdir_run", remote_dir, step="connect"))

    def docker(self, argv, *, step, hint="", stdin=None, read=None):
        """On the manager; but an image is there when every node has it, and a pull pulls on every node
        at once (tasks start without waiting for it, and a registry they cannot reach shows here)."""
        nodes = [self.node(n) for n in self.prepared] or self.usable()
        if argv[1:3] == ["image", "inspect"]:
            found = self.each(nodes, lambda node: self.at(node).docker(argv, step=step))
            if any(isinstance(v, StepError) for v in found.values()):
                raise next(v for v in found.values() if isinstance(v, StepError))
            return next(iter(found.values()), "")
        if argv[1:2] == ["pull"]:
            done = []

            def pull(node):
                out = self.at(node).docker(argv, step=step, hint=hint)
                done.append(node)
                if self.steps is not None:
                    self.steps.progress(f"{len(done)}/{len(nodes)} nodes")
                return out

            found = self.each(nodes, pull)
            for node_id, error in found.items():
                if isinstance(error, StepError):
                    raise StepError(error.step, f"{error.message} (node {self.node(node_id).shown})",
                                    output=error.output, hint=error.hint, code=error.code)
            return ""
        return self.manager.docker(argv, step=step, hint=hint, stdin=stdin, read=read)

    def start(self, start, env):
        self.create(start, env, gpus=self.config.GPUS_PER_TASK)

    def wait_placed(self, service, *, report=True):
        """The service's first task once it runs (or ended before); says, once, that it waits in the queue."""
        said = ""
        while True:
            exists, tasks = self.tasks(service)
            if not exists:
                raise StepError("run", f"the service {service} is gone from {self.name} (cancelled?)")
            task = tasks[-1] if tasks else None
            if task and (task.state == "running" or task.ended):
                where = self.node(task.node).shown if task.node else ""
                if said and report:
                    self.say(f"placed on {where}" + (f", GPU {', '.join(task.gpus)}" if task.gpus else "") + "\n")
                if self.steps is not None and where:
                    self.steps.progress(f"on {where}" + (" after a wait in the queue" if said else ""))
                return task
            why = task and task.state in QUEUED and task.error
            if why and not said and report:
                said = why
                self.say(f"queued: {why} (every node's GPUs are taken, or too few; Swarm starts it as soon as "
                         f"{self.config.GPUS_PER_TASK} GPU(s) on one node are free)\n")
                if self.steps is not None:
                    self.steps.progress("queued")
            time.sleep(POLL)

    def follow(self, run_id, on_stdout, on_stderr, *, start=None, env=None):
        service = service_name(run_id)
        if start:
            self.start(start, env or {})
        task = self.wait_placed(service)
        if not task.container:  # it never started (rejected: an image it could not pull, a mount)
            on_stderr(f"the task of {service} did not start on {self.node(task.node).shown if task.node else 'any node'}"
                      f": {task.error or task.message or task.state}\n")
            self.remove_service(service, nodes=[task.node] if task.node else None)  # Swarm would try it again
            return 125
        if task.node in self.prepared:
            self.ran_on[self.prepared[task.node]] = task.node
        return self.at(task.node).stream("docker_command", "logs", "--follow", task.container, step="run",
                                         on_stdout=on_stdout, on_stderr=on_stderr)

    def finish(self, remote_dir, run_id, *, cancelled=False):
        """Wait for the task to end (and its retries); remove the service; its exit code."""
        service = service_name(run_id)
        while True:
            exists, tasks = self.tasks(service)
            if not exists or not tasks:
                raise StepError("run", f"the service {service} is gone from {self.name}, with its exit code",
                                hint="Its output and results are in its run folder on the node it ran on.")
            last = tasks[-1]
            if last.ended:
                break
            time.sleep(POLL)
        self.remove_service(service, nodes={t.node for t in tasks if t.node})
        if last.node:
            self.ran_on[remote_dir] = last.node
            others = [self.node(n) for n in self.prepared if n != last.node]
            self.each(others, lambda node: self.at(node).call("rmdir_run", remote_dir, step="run"))
            if last.succeeded:  # task_runner.py saved the cell's exit code
                state = self.at(last.node).call("saved_state", remote_dir, step="run").strip()
                if state:
                    return [state]
        return [str(last.exit_code if last.exit_code is not None else 125)]

    def stop(self, run_id, *, step="run"):
        """Interrupt the cell (SIGINT), then stop its container, on its node."""
        _, tasks = self.tasks(service_name(run_id))
        running = [t for t in tasks if t.container and not t.ended]
        for task in running:
            place = self.at(task.node)
            with contextlib.suppress(StepError):
                place.docker(["docker", "kill", "--signal", "INT", task.container], step=step)
            place.docker(["docker", "stop", "--time", "10", task.container], step=step)
        if not running:
            self.remove_service(service_name(run_id), step=step, interrupt=True)

    def where(self, remote_dir):
        """The node a run folder's task ran on: remembered, else the one whose folder has a log."""
        if remote_dir in self.ran_on:
            return self.ran_on[remote_dir]
        found = self.each(self.usable(), lambda node: self.at(node).call(
            "missing", f"{remote_dir}/output.log", step="fetch").strip())
        with_log = [node for node, missing in found.items() if missing == ""]
        return with_log[0] if with_log else self.manager_node()

    def manager_node(self):
        managers = [n for n in self.nodes() if n.ssh == self.name] or [n for n in self.nodes() if n.role == "manager"]
        return (managers or self.nodes())[0].id

    def fetch(self, remote_dir, read, *, going=False, hint=""):
        return self.at(self.where(remote_dir)).fetch(remote_dir, read, going=going, hint=hint)

    def logs(self, remote_dir, run_id, on_stdout, on_stderr, *, follow=False):
        _, tasks = self.tasks(service_name(run_id))
        running = [t for t in tasks if t.container and not t.ended]
        if running:
            task = running[-1]
            return self.at(task.node).stream("docker_command", "logs", *(["--follow"] if follow else []),
                                             task.container, step="logs", on_stdout=on_stdout, on_stderr=on_stderr)
        return self.at(self.where(remote_dir)).logs(remote_dir, run_id, on_stdout, on_stderr)

    def survey(self, run_id=None):
        """The nodes' surveys as one: every node's run folders, logs and saved states."""
        found = self.each(self.usable(), lambda node: self.at(node).survey(run_id))
        merged = {}
        for sections in found.values():
            if isinstance(sections, StepError):
                continue
            for name, lines in sections.items():
                if name in ("now", "workdir"):
                    merged.setdefault(name, lines)
                elif name != "containers":  # a task's container is Swarm's, not named after the run
                    merged.setdefault(name, []).extend(line for line in lines if line not in merged[name])
        if not merged:
            raise next(iter(found.values()))
        return merged

    def images(self, repository):
        found = self.each(self.usable(), lambda node: self.at(node).images(repository))
        merged = {"used": [], "images": []}
        for sections in found.values():
            if isinstance(sections, StepError):
                raise sections
            for name, lines in merged.items():
                lines += [line for line in sections.get(name, []) if line not in lines]
        return merged

    def remove(self, folders):
        self.each(self.usable(), lambda node: self.at(node).remove(folders))
