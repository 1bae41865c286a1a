"""`python -m pystributed cluster status` with CLUSTER = "slurm": what a user needs to know of the cluster
before a sweep, from one call to its login node (server.sh's slurm_status: one sinfo call, the route as
slurm_containers finds it, MaxArraySize, REMOTE_WORKDIR's filesystem): the partitions and their nodes,
the GPUs free and in use on each, the container route and what it was found by, whether REMOTE_WORKDIR is
shared with the nodes, and the largest job array the site allows."""
import dataclasses
import re

from pystributed import util
from pystributed.places import server, slurm

# The filesystems that nodes share (a local one, such as ext4, is shared only where the nodes are the login
# node itself).
SHARED_TYPES = ("nfs", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "fuse.glusterfs", "glusterfs", "wekafs",
                "panfs", "smb2", "cifs")


def _gpus(gres):
    """The GPUs in a gres string (gpu:4, gpu:a100:2(S:0-1), gpu:2(IDX:0-1),shard:8): their count."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[\w.-]+)?:(\d+)", gres or ""))


@dataclasses.dataclass
class Node:
    name: str
    partition: str
    state: str
    gpus: int
    used: int


@dataclasses.dataclass
class Status:
    login: str
    nodes: list
    route: str
    found_by: str
    max_array_size: str
    filesystem: str
    written_by_a_job: str  # a state file that a job wrote in REMOTE_WORKDIR ("": none yet)
    workdir: str

    @property
    def shared(self):
        if self.written_by_a_job:
            return f"yes: a job on a node wrote {self.written_by_a_job}"
        if self.filesystem in SHARED_TYPES:
            return (f"likely: it is on {self.filesystem}, a filesystem that nodes share (no job has written "
                    "there yet)")
        where = self.filesystem or "a filesystem that could not be read"
        return (f"not known: it is on {where}, and no job has written there yet (the first run says so if "
                "the nodes do not share it)")

    def __str__(self):
        rows = [("PARTITION", "NODE", "STATE", "GPUS FREE", "GPUS IN USE")]
        for node in sorted(self.nodes, key=lambda n: (n.partition, n.name)):
            rows.append((node.partition, node.name, node.state, str(max(node.gpus - node.used, 0)),
                         str(node.used)))
        lines = util.columns(rows)
        free = sum(max(n.gpus - n.used, 0) for n in {n.name: n for n in self.nodes}.values())
        used = sum(n.used for n in {n.name: n for n in self.nodes}.values())
        lines += ["", f"GPUs: {free} free, {used} in use (each node once, whatever its partitions)",
                  f"containers: {self.route} ({self.found_by})",
                  f"REMOTE_WORKDIR {self.workdir} shared with the nodes: {self.shared}",
                  f"MaxArraySize: {self.max_array_size or 'not known'} (a sweep's tasks in one job array)"]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def status(config):
    place = slurm.Slurm(config)  # (one call: no shared connection to open)
    found = server.sections(place.call("slurm_status", place.login.workdir(), step="status"))
    nodes = []
    for line in found.get("nodes", []):
        fields = [f.strip() for f in (line.split("|") + [""] * 5)[:5]]
        if fields[0]:
            partition = fields[1].removesuffix("*") + (" (default)" if fields[1].endswith("*") else "")
            nodes.append(Node(fields[0], partition, fields[2], _gpus(fields[3]), _gpus(fields[4])))
    route, _, why = ((found.get("route") or ["docker|"])[0]).partition("|")
    if config.SLURM_CONTAINERS:
        route, why = config.SLURM_CONTAINERS, f"SLURM_CONTAINERS says so; the login node shows {route}: {why}"
    fs = [line.strip() for line in found.get("workdir", []) if line.strip()]
    return Status(place.name, nodes, route, why, "".join(found.get("max_array_size", [])).strip(),
                  fs[0] if fs else "", fs[1] if len(fs) > 1 else "", config.REMOTE_WORKDIR)
