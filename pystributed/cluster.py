"""`python -m pystributed cluster init HOST1 HOST2 …` and `cluster status`: a Docker Swarm made of the
ssh hosts one has, for CLUSTER = "swarm" (places/swarm.py).

`init` runs `docker swarm init` on the first host and `docker swarm join` on the others, over ssh
(the same ssh as runs: SSH_OPTIONS apply), labels each node with how it was reached
(`pystributed.ssh`, so that results are fetched from it the same way), reads each host's GPUs with
nvidia-smi, and says what each host's Docker daemon needs for Swarm to count them. It never edits a
server's daemon.json: that restarts Docker there, which is the server owner's call."""
import contextlib
import dataclasses
import json

from pystributed import util
from pystributed.errors import PystributedError
from pystributed.places import server, ssh, swarm, swarm_service

DAEMON_JSON = "/etc/docker/daemon.json"
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"


@dataclasses.dataclass
class Host:
    """One ssh host as `cluster_node` (server.sh) describes it."""

    name: str  # as given to ssh
    address: str = ""  # the one ssh reached it by
    info: dict = dataclasses.field(default_factory=dict)  # docker info
    gpus: list = dataclasses.field(default_factory=list)  # [(index, uuid)] from nvidia-smi
    nvidia_smi: str = ""  # "" (none), "ok", or what it said when it failed

    @property
    def swarm(self):
        return self.info.get("Swarm") or {}

    @property
    def advertised(self):
        """The GPUs its daemon advertises to Swarm (node-generic-resources)."""
        return [(r.get("NamedResourceSpec") or {}).get("Value")
                for r in self.info.get("GenericResources") or []
                if (r.get("NamedResourceSpec") or {}).get("Kind") == swarm_service.GPU]

    def advice(self):
        """What its daemon.json needs, and why; "" when nothing."""
        uuids = [uuid for _, uuid in self.gpus]
        runtimes = self.info.get("Runtimes") or {}
        lines = []
        if not uuids and not self.advertised:
            why = f"nvidia-smi failed: {self.nvidia_smi}" if self.nvidia_smi not in ("", "ok") else (
                "no nvidia-smi there" if not self.nvidia_smi else "nvidia-smi lists none")
            return (f"no GPU ({why}): tasks that ask for GPUs (GPUS_PER_TASK, default 1) never go to it; "
                    "runs with GPUS_PER_TASK = 0 do.")
        settings = {}
        if sorted(uuids) != sorted(self.advertised) and uuids:
            settings["node-generic-resources"] = [f"{swarm_service.GPU}={uuid}" for uuid in uuids]
            lines.append("- node-generic-resources: Swarm counts only the GPUs a daemon advertises (it "
                         f"advertises {len(self.advertised)}: {', '.join(self.advertised) or 'none'}; "
                         f"nvidia-smi lists {len(uuids)}); each task asks for GPUS_PER_TASK of them and "
                         "gets their UUIDs.")
        if self.info.get("DefaultRuntime") != "nvidia":
            if "nvidia" not in runtimes:
                settings["runtimes"] = {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}
            settings["default-runtime"] = "nvidia"
            lines.append(f"- default-runtime nvidia (now {self.info.get('DefaultRuntime', '?')}"
                         f"{'' if 'nvidia' in runtimes else ', and no nvidia runtime'}): a service cannot "
                         "ask for `--gpus`, so the NVIDIA Container Toolkit's runtime must be the default "
                         "for a task's container to see a GPU at all (install the toolkit: `nvidia-ctk "
                         "runtime configure --runtime=docker --set-as-default`).")
            lines.append(f"- in {TOOLKIT_CONFIG}, the line `swarm-resource = \"DOCKER_RESOURCE_GPU\"` "
                         "(uncomment it): the runtime then gives each container exactly the GPUs Swarm "
                         "assigned to its task.")
        if not settings:
            return ""
        shown = json.dumps(settings, indent=2).replace("\n", "\n    ")
        return (f"{DAEMON_JSON} on {self.name} needs (merged with what is there; then `sudo systemctl "
                f"restart docker`):\n    {shown}\n  " + "\n  ".join(lines))


def _host(place):
    found = server.sections(place.call("cluster_node", step="connect", hint=place.hint()))
    host = Host(place.name, address=(found.get("address") or [""])[0].strip())
    with contextlib.suppress(ValueError):
        host.info = json.loads((found.get("info") or ["{}"])[0])
    if "nvidia-smi-failed" in found:
        host.nvidia_smi = " ".join(found["nvidia-smi-failed"])[:300]
    elif "gpus" in found:
        host.nvidia_smi = "ok"
        for line in found["gpus"]:
            index, _, uuid = (part.strip() for part in line.partition(","))
            if index.isdigit() and uuid:
                host.gpus.append((int(index), uuid))
    return host


def _places(config, hosts, stack):
    return [stack.enter_context(ssh.Ssh(dataclasses.replace(config, REMOTE_SERVER=host)).connection())
            for host in hosts]


def init(config, hosts, *, default_addr_pool=None, say=print):
    """Make (or complete) a swarm of `hosts`, the first its manager; return the hosts as found."""
    if not hosts:
        raise PystributedError("cluster init needs at least one ssh host (the first becomes the manager)")
    for host in hosts:
        if not host or host.startswith("-") or any(c.isspace() or ord(c) < 32 for c in host):
            raise PystributedError(f"{host!r} is not an ssh destination (user@host, host, or a Host alias)")
    with contextlib.ExitStack() as stack:
        places = _places(config, hosts, stack)
        found = [_host(place) for place in places]
        manager, first = found[0], places[0]
        if manager.swarm.get("LocalNodeState") != "active":
            address = manager.address or None
            args = ["docker", "swarm", "init", *(["--advertise-addr", address] if address else []),
                    *(["--default-addr-pool", default_addr_pool] if default_addr_pool else [])]
            first.docker(args, step="connect", hint=f"`docker swarm init` failed on {manager.name}.")
            say(f"{manager.name}: swarm initialised, a manager ({' '.join(args[1:])})")
        elif not manager.swarm.get("ControlAvailable"):
            raise PystributedError(f"{manager.name} is a worker of a swarm already: name one of its managers "
                                   f"first (or `docker swarm leave` on {manager.name})")
        else:
            say(f"{manager.name}: a manager of its swarm already")
        manager = found[0] = _host(first)
        token = first.docker(["docker", "swarm", "join-token", "--quiet", "worker"], step="connect").strip()
        manager_address = manager.swarm.get("NodeAddr") or manager.address
        members = {n.id for n in
                   swarm_service.parse_nodes(first.call("swarm_nodes", step="connect").splitlines())}
        for i, (host, place) in enumerate(zip(found[1:], places[1:]), 1):
            state = host.swarm.get("LocalNodeState")
            if state == "active" and host.swarm.get("NodeID") in members:
                say(f"{host.name}: in this swarm already")
                continue
            if state == "active":
                raise PystributedError(f"{host.name} is in another swarm: `docker swarm leave` there first")
            args = ["docker", "swarm", "join", "--token", token,
                    *(["--advertise-addr", host.address] if host.address else []), f"{manager_address}:2377"]
            place.docker(args, step="connect", hint=(
                f"`docker swarm join` failed on {host.name}: can it reach {manager_address} on TCP "
                "2377 (and 7946)?"))
            found[i] = _host(place)
            say(f"{host.name}: joined as a worker")
        for host in found:
            node = host.swarm.get("NodeID")
            if node:
                first.docker(["docker", "node", "update", "--label-add",
                              f"{swarm_service.SSH_LABEL}={host.name}", node],
                             step="connect")
    for host in found:
        gpus = ", ".join(uuid for _, uuid in host.gpus) or "none"
        say(f"\n{host.name} ({host.address or 'address unknown'}): GPUs {gpus}; Swarm counts "
            f"{len(host.advertised)}")
        advice = host.advice()
        say(f"  {advice}" if advice else "  ready: Swarm counts its GPUs, and the nvidia runtime "
                                         "is the default")
    say(f"\nUse it with CLUSTER = \"swarm\" and REMOTE_SERVER = {hosts[0]!r}.")
    return found


@dataclasses.dataclass
class Status:
    manager: str
    nodes: list
    services: list
    tasks: list
    names: dict = dataclasses.field(default_factory=dict)  # service id -> name

    def __str__(self):
        holders = {}
        for task in self.tasks:
            if task.state in ("running", *swarm_service.STARTING):
                for gpu in task.gpus:
                    holders[gpu] = f"{self.service_of(task)} task {task.slot}"
        rows = [("NODE", "ROLE", "STATE", "ADDRESS", "GPUS")]
        for node in sorted(self.nodes, key=lambda n: n.shown):
            gpus = ", ".join(f"{gpu} ({holders.get(gpu, 'free')})" for gpu in node.gpus) or "none"
            rows.append((node.shown, node.role, f"{node.state}/{node.availability}", node.address, gpus))
        lines = util.columns(rows)
        running = [t for t in self.tasks if not t.ended]
        lines.append("")
        if running:
            nodes = {n.id: n.shown for n in self.nodes}
            lines += util.columns([("SERVICE", "TASK", "STATE", "NODE", "GPU", "WHY")] + [
                (self.service_of(t), str(t.slot), t.state, nodes.get(t.node, "-"), ", ".join(t.gpus) or "-",
                 t.error or "") for t in running])
        else:
            lines.append("no task of pystributed's is running or queued")
        return "\n".join(lines)

    def service_of(self, task):
        return self.names.get(task.service, task.service[:12])

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def status(config):
    """The swarm's nodes with their GPUs (and which task holds each), and our tasks; a Slurm cluster's
    partitions, nodes and GPUs (cluster_slurm.py)."""
    if config.CLUSTER == "slurm" and not config.is_local:
        from pystributed import cluster_slurm

        return cluster_slurm.status(config)
    if config.is_local:
        raise PystributedError("cluster status asks the swarm's manager: set REMOTE_SERVER to it")
    with swarm.Swarm(config).connection() as place:
        nodes = place.nodes()
        out = server.sections(place.manager.call("swarm_tasks", step="status"))
        services = out.get("services", [])
        names = {}
        if services:
            ids = place.manager.docker(["docker", "service", "inspect", "--format", "{{.ID}} {{.Spec.Name}}",
                                        *services], step="status")
            names = dict(line.split(" ", 1) for line in ids.splitlines() if " " in line)
        return Status(place.name, nodes, services, swarm_service.parse_tasks(out.get("tasks", [])), names)


def command(config, args):
    """Run `cluster ACTION` from cli.py."""
    if args.cluster_command == "init":
        init(config, args.hosts, default_addr_pool=args.default_addr_pool)
    else:
        print(status(config))
    return 0
