"""CLUSTER = "swarm": a Docker Swarm whose manager is REMOTE_SERVER. No scheduler of ours: a job (a
sweep, or a run: a job of one task, sweep.run_one) is one `replicated-job` service (swarm_engine.py),
each task asking for GPUS_PER_TASK of the generic resource `gpu` that the nodes advertise; Swarm
places it on a node with that many free, and keeps it `pending` while no node has them (the queue).

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

import contextlib
import dataclasses
import threading
import time

from pystributed import docker
from pystributed.errors import StepError
from pystributed.places import ClusterPlace, server, ssh, swarm_secrets
from pystributed.places.swarm_service import (
    Node,
    check_run_args,
    on_each,
    parse_nodes,
    parse_tasks,
    service_args,
    service_name,
)

POLL = 0.5  # seconds between two looks at a service's tasks


class Swarm(ClusterPlace):
    """The swarm, through its manager (REMOTE_SERVER) and, for files, through each node."""

    engine = "swarm"

    def __init__(self, config):
        super().__init__(config)
        self.manager = self.login  # everything but a node's files goes through it
        self.steps = None  # the run's display, for "queued" (set by features/cluster.py)
        self.prepared = {}  # node id -> the run folder's path there, for the nodes that have it
        self._nodes = None
        self._places = {}
        self._stack = None
        self._lock = threading.Lock()
        self._locks = {}
        self.secrets = swarm_secrets.Secrets(self)
        check_run_args(config.DOCKER_RUN_ARGS)

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
                f"Is {self.name} a manager of a swarm? (`docker node ls` there; `python -m pystributed "
                "cluster init` makes one.)"))
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
                        place = self._stack.enter_context(ssh.Deferred(place.connection()))
                    place = place.open()
                self._places[node.id] = place
            return self._places[node.id]

    each = staticmethod(on_each)  # {node id: action(node) or the StepError it raised}, for each node at once

    def usable(self):
        """The nodes tasks may be placed on."""
        return [n for n in self.nodes() if n.ready]

    # Services.

    def create(self, run_args, env, *, job_id=None, **options):
        """Start a replicated job (service_args' options); its id. Of its environment `env`, ENV goes on
        the command's stdin (into the service's spec, which `docker service inspect` shows); SECRETS
        become Docker secrets of the job (`job_id`, by default the service's run id), given to its
        tasks only, as files that task_runner.py reads into their environment, and removed with it."""
        hidden = {name: value for name, value in env.items() if name in self.config.SECRETS}
        env = {name: value for name, value in env.items() if name not in hidden}
        name = run_args[run_args.index("--name") + 1]
        job_id = job_id or name.removeprefix(docker.container_name(""))
        user = run_args[run_args.index("--user") + 1] if "--user" in run_args else "0:0"
        mounts = self.secrets.mounts(job_id, hidden, user)
        variables = [*options.pop("variables", ()),
                     *([f"PYSTRIBUTED_SECRETS={','.join(hidden)}"] if hidden else [])]
        args = service_args(run_args, variables=variables, **options)
        for mount in mounts:
            args[2:2] = ["--secret", mount]
        unreachable = [n for n in self.usable() if n.id not in self.prepared] if self.prepared else []
        for node in unreachable:  # its run folder could not be made: no task of this run goes there
            args[2:2] = ["--constraint", f"node.id!={node.id}"]
        args[2:2] = ["--with-registry-auth"]  # the nodes pull with this machine's login, if any
        try:
            out = self.manager.docker(["docker", *args], step="run", hint=(
                f"Swarm refused the service on {self.name}. Is it a manager (`docker node ls` there)?"),
                stdin=server._env_writer(env))
        except StepError:
            if mounts and job_id == name.removeprefix(docker.container_name("")):  # the job's first service
                with contextlib.suppress(StepError):
                    self.secrets.remove(name, step="run")
            raise
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
                    self.manager.docker(docker.unplaceable(service), step=step)
            deadline = time.monotonic() + 15
            while (any(self.leftovers(s, where, running=True) for s in services)
                   and time.monotonic() < deadline):
                time.sleep(POLL)
        with contextlib.suppress(StepError):
            self.manager.docker(docker.remove_services(*services), step=step)
            if self.config.SECRETS:  # (a job made with none has none)
                self.secrets.remove(*services, step=step)
        for service in services:
            self.each(where, lambda node, service=service: self.at(node).call(
                "swarm_put_away", service, "interrupt" if interrupt else "", step=step))

    def leftovers(self, service, nodes=None, *, running=False):
        """{node id: container ids} of the service still on the nodes (`running`: only those that run)."""
        def ids(node):
            out = self.at(node).docker(docker.containers_of_service(service, running=running), step="cancel")
            return out.split()
        found = self.each(nodes or self.usable(), ids)
        return {node: out for node, out in found.items() if out and not isinstance(out, StepError)}

    def say(self, text):
        if self.steps is not None:
            self.steps.say(text)

    # The Place methods (a run's container is its job's: swarm_engine.py).

    def prepare(self, run_id):
        # Each node as a server of its own: the same checks (a ':' in the path, a rootless engine).
        made = self.each(self.usable(), lambda node: self.at(node).prepare(run_id))
        ok = {node: found for node, found in made.items() if not isinstance(found, StepError)}
        if not ok:
            error = next(iter(made.values()), None)
            raise StepError("connect", f"no node of the swarm managed by {self.name} could be reached to "
                            f"make the run folder: {error.message if error else 'it has no usable node'}",
                            output=error.output if error else "", hint=self.hint())
        for node_id, error in made.items():
            if isinstance(error, StepError):
                self.say(f"note: node {self.node(node_id).shown} could not be reached ({error.message}); "
                         "no task goes there\n")
        paths = {found for found in ok.values()}
        if len(paths) > 1:
            shown = "; ".join(f"{self.node(n).shown}: {path} as {user}" for n, (path, user) in ok.items())
            raise StepError("connect", "the run folder is not the same path (and user) on every "
                                       f"node ({shown})",
                            hint="One service mounts one path wherever its task lands: use the same user, "
                                 "home and REMOTE_WORKDIR on every node (or an absolute REMOTE_WORKDIR).")
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

    def container_logs(self, node, container, on_stdout, on_stderr, *, follow=False, step="logs"):
        """A task's container's output, on its node (with `follow`, until it ends); the exit code."""
        return self.at(node).stream("docker_command", *docker.logs(container, follow=follow)[1:], step=step,
                                    on_stdout=on_stdout, on_stderr=on_stderr)

    def where(self, remote_dir):
        """The node a run folder's task ran on: the one whose folder has a log."""
        found = self.each(self.usable(), lambda node: self.at(node).call(
            "missing", f"{remote_dir}/output.log", step="fetch").strip())
        with_log = [node for node, missing in found.items() if missing == ""]
        return with_log[0] if with_log else self.manager_node()

    def manager_node(self):
        managers = ([n for n in self.nodes() if n.ssh == self.name]
                    or [n for n in self.nodes() if n.role == "manager"])
        return (managers or self.nodes())[0].id

    def fetch(self, remote_dir, read, *, going=False, hint=""):
        return self.at(self.where(remote_dir)).fetch(remote_dir, read, going=going, hint=hint)

    def logs(self, remote_dir, run_id, on_stdout, on_stderr, *, follow=False):
        _, tasks = self.tasks(service_name(run_id))
        running = [t for t in tasks if t.container and not t.ended]
        if running:
            task = running[-1]
            return self.container_logs(task.node, task.container, on_stdout, on_stderr, follow=follow)
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
        # (runs only)
        found = self.each(self.usable(), lambda node: self.at(node).images(repository, cells=False))
        merged = {"used": [], "images": []}
        for sections in found.values():
            if isinstance(sections, StepError):
                raise sections
            for name, lines in merged.items():
                lines += [line for line in sections.get(name, []) if line not in lines]
        return merged

    def remove(self, folders):
        self.each(self.usable(), lambda node: self.at(node).remove(folders))
