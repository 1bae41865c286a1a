"""CLUSTER = "slurm": a Slurm cluster whose login node is REMOTE_SERVER (reached with ssh, as one
server is). No scheduler of ours: slurm_engine.py submits a job's tasks, a sweep's as one job array, a
run's (a job of one task, sweep.run_one) as one batch job, each asking for GPUS_PER_TASK GPUs
(`--gres=gpu:N`), with the site's SLURM_ARGS; Slurm queues them, places them and says why they wait.

The login node runs no container (it usually has no Docker): the job does, on its node, by the job
script places/slurm_job.sh, which pulls the image from the registry (the pipeline's `pull` step is
the nodes', as each job starts). REMOTE_WORKDIR is on the filesystem the login node shares with the
nodes: the run folder is made there from the login node, the task writes its output.log and its
state (.pystributed-state.json, task_runner.py) into it, and the folder is fetched from the login
node. Ended jobs are read from those state files: squeue forgets a job minutes after it ends.

Slurm is read with squeue's explicit formats (server.sh's slurm_* actions; one call a look, and no
scontrol: the GPUs a job was given are the ones its job script saved in the folder): Slurm 20.11's
commands and flags only, never --json."""
from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

from pystributed import docker, registry
from pystributed.errors import StepError
from pystributed.places import ClusterPlace, server, slurm_routes

JOB_SCRIPT = (Path(__file__).parent / "slurm_job.sh").read_text(encoding="utf-8")
ENDED = ("COMPLETED", "COMPLETING", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED")


def job_name(run_id):
    return docker.container_name(run_id)  # pystributed-<run-id>, as its container


class Row:
    """One line of squeue (server.sh's slurm_jobs): a job, or one task of a job array."""

    def __init__(self, line):
        fields = (line.split("|") + [""] * 7)[:7]
        self.id, self.array_id, task, self.name, self.state, self.reason, self.nodes = fields
        self.index = int(task) if task.isdigit() else None
        self.state = self.state.strip()
        self.gpus = ""

    @property
    def ended(self):
        return self.state in ENDED

    @property
    def pending(self):
        return self.state in ("PENDING", "REQUEUED", "SUSPENDED", "CONFIGURING")


def parse_jobs(text):
    """[Row] of slurm_jobs' answer, each with the GPU indexes it was given."""
    found = server.sections(text)
    rows = [Row(line) for line in found.get("jobs", []) if "|" in line]
    gpus = dict((line.split(" ", 1) + [""])[:2] for line in found.get("gpus", []))
    for row in rows:
        row.gpus = gpus.get(row.id, "").strip()
    return rows


class Slurm(ClusterPlace):
    """The cluster, through its login node."""

    engine = "slurm"

    def __init__(self, config):
        super().__init__(config)
        self.route = config.SLURM_CONTAINERS
        self.dirs = {}  # run id -> its folder there, once made
        self.digests = {}  # image ref -> its digest in the registry ("": it would not say)

    @contextlib.contextmanager
    def connection(self):
        with self.login.connection() as login:
            place = Slurm(self.config)
            place.login, place.steps, place.route, place.dirs = login, self.steps, self.route, self.dirs
            place.digests = self.digests
            yield place

    def say(self, text):
        if self.steps is not None:
            self.steps.say(text)

    def call(self, action, *args, **kwargs):
        return self.login.call(action, *args, **kwargs)

    # Jobs.

    def containers(self):
        """How the nodes run containers: SLURM_CONTAINERS, else what the login node shows."""
        if not self.route:
            self.route = self.call("slurm_containers", step="connect").strip() or "docker"
        return self.route

    def max_array(self):
        """The cluster's MaxArraySize: a job array's indexes are 0 to one less (Slurm's default: 1001)."""
        out = self.call("slurm_max_array", step="start").strip()
        return int(out) if out.isdigit() else 1001

    def submit(self, run_args, env, *, remote_dir, name, sweep=False, array=None, variables=(), nodes=1,
               env_file=None, after=None):
        """sbatch the job script for the container `docker run run_args` would start; its job id.
        `array`: the tasks' indexes (`0-7%4`); `after`: a job that must end first (afterany);
        `variables`: more of the job's environment (NAME=VALUE);
        `nodes` > 1: one allocation of that many nodes, the container once per node (the job script's
        `ranks`); `env_file`: where `env` is saved (REMOTE_WORKDIR/ID.env unless given), which the job
        removes at its end."""
        route = self.containers()
        if route != "docker" and route not in slurm_routes.ROUTES:
            raise StepError("start", f"the container route {route!r} of {self.name} is not known",
                            hint="Set SLURM_CONTAINERS to 'docker', 'pyxis' or 'apptainer'.")
        env_file, script = env_file or f"{remote_dir}.env", f"{remote_dir}/.pystributed-job.sh"
        gpus = self.config.GPUS_PER_TASK
        options = ["--job-name", name, "--chdir", remote_dir,
                   "--output", f"{remote_dir}/.pystributed-slurm-%j.out",
                   *([f"--gres=gpu:{gpus}"] if gpus else []), *([f"--array={array}"] if array else []),
                   *([f"--export=ALL,{','.join(variables)}"] if variables else []),
                   *([f"--nodes={nodes}", "--ntasks-per-node=1"] if nodes > 1 else []),
                   *([f"--dependency=afterany:{after}"] if after else []),
                   *self.config.SLURM_ARGS]
        args = docker.job_run_args(run_args)
        if route == "pyxis":
            args = slurm_routes.pyxis_args(args, image_file=self.image_file(remote_dir, run_args[-1]))
        elif route != "docker":
            args = slurm_routes.ROUTES[route](args)
        out = self.call("slurm_submit", env_file, script, JOB_SCRIPT, *options, script, remote_dir,
                        name, "1" if sweep else "ranks" if nodes > 1 else "0", route,
                        env_file, *args, step="start", stdin=server._env_writer(env),
                        hint=f"sbatch refused the job on {self.name}: check SLURM_ARGS (partition, account, "
                             "time limit) and GPUS_PER_TASK against the cluster's limits "
                             "(`sinfo`, `sacctmgr show qos`).")
        return out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""

    def image_file(self, remote_dir, ref):
        """The squashfs that the pyxis route imports `ref` into once (slurm_routes.image_file), keyed by its
        digest, which this machine asks the registry for (it pushed there), once a run."""
        if ref not in self.digests:
            try:
                self.digests[ref] = registry.digest(ref) or ""
            except StepError:  # (a registry that wants a login: the tag's hash stands for it)
                self.digests[ref] = ""
        return slurm_routes.image_file(remote_dir.rsplit("/", 1)[0], ref, self.digests[ref])

    def sweep_jobs(self, remote_dir, *names):
        """([Row] as jobs() has them, {the indexes of the tasks that saved their state in
        remote_dir/INDEX})."""
        out = self.call("slurm_jobs", "--states", remote_dir, *names, step="run")
        return parse_jobs(out), {int(i) for i in server.sections(out).get("states", []) if i.isdigit()}

    def cancel(self, *names, step="cancel"):
        self.call("slurm_cancel", *names, step=step)

    # The Place methods (a run's job is slurm_engine.py's).

    def prepare(self, run_id):
        path, user = self.login.prepare(run_id)
        self.dirs[run_id] = path
        self.platform = self.login.platform
        self.containers()
        return path, user

    def discard(self, remote_dir):
        self.login.discard(remote_dir)

    def docker(self, argv, *, step, hint="", stdin=None, read=None):
        """The login node has no images: each job's node pulls the image as the job starts."""
        if argv[1:3] == ["image", "inspect"]:
            raise StepError(step, f"the login node {self.name} keeps no images: the nodes pull them")
        if argv[1:2] == ["pull"]:
            if self.steps is not None:
                self.steps.progress("by the nodes, as each job starts")
            # There, a tag the registry lost (a clean, a reset) could not be pushed again: ask the
            # registry now, as their pull will, so that the pull step pushes it again (pipeline.pull).
            if registry.has(argv[-1]) is False:  # (None, it cannot say: a login; the nodes will)
                raise StepError(step, f"the registry has no {argv[-1]}", output="manifest unknown",
                                hint="Is DOCKER_REGISTRY the registry the nodes pull from, "
                                     "and was the push through?")
            return ""
        raise StepError(step, f"{shlex.join(argv[:3])}: the login node {self.name} runs no Docker command",
                        hint="On a Slurm cluster, containers run in jobs on the nodes "
                             "(TRANSPORT = 'registry').")

    def fetch(self, remote_dir, read, *, going=False, hint=""):
        return self.login.fetch(remote_dir, read, going=going, hint=hint)

    def fetch_tasks(self, remote_dir, indexes, read, *, hint=""):
        return self.login.fetch_tasks(remote_dir, indexes, read, hint=hint)

    def logs(self, remote_dir, run_id, on_stdout, on_stderr, *, follow=False):
        if follow:
            return self.login.stream("slurm_follow", remote_dir, job_name(run_id), step="logs",
                                     on_stdout=on_stdout, on_stderr=on_stderr)
        return self.login.logs(remote_dir, run_id, on_stdout, on_stderr)

    def survey(self, run_id=None):
        return self.login.survey(run_id)

    def images(self, repository):
        return {"used": [], "images": []}  # (the nodes' images are their engines', not the login node's)

    def remove(self, folders):
        self.login.remove(folders)
