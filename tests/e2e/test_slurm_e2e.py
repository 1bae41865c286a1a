"""End-to-end on a real Slurm cluster (scripts/slurm_rig.sh, through `sandbox.sh start --slurm`):
Debian's Slurm 22.05, two slurmd with 2 fake GPUs each, a login node (an sshd on 127.0.0.1:2223)
without Docker, the jobs running their containers on the sandbox's remote engine. With CI=true a rig
that cannot start fails these tests."""
import json
import secrets
import shlex
import subprocess
import time

from conftest import (
    a_cluster_run_followed_then_cancelled,
    cancel_once_the_first_ended,
    interrupted_then_attached,
    long_sweep,
    own_ids,
    owned,
    pystributed,
    rig_fixtures,
    two_tasks_per_container,
)
from kernel import Kernel, error_of, stream_text

from pystributed import config, sweep
from pystributed.places import slurm

# slurm_env: the variables that point pystributed at the rig's login node; cluster: a test's view of it.
slurm_env, cluster = rig_fixtures("slurm", ["slurmctld", "slurmd", "sbatch", "munged", "sshd", "docker"],
                                  "starts daemons and a user", lambda *made: Rig(*made), name="cluster")


class Rig:
    """The rig, as a test sees it: the jobs of what the test started from its folder (conftest.own_ids)
    are all it counts, checks or cancels; other tests share the cluster and its login user."""

    def __init__(self, env, folder):
        self.env, self.folder = env, folder
        self.ssh = ["ssh", *shlex.split(env["PYSTRIBUTED_SSH_OPTIONS"]), env["PYSTRIBUTED_REMOTE_SERVER"]]

    def login(self, command):
        return subprocess.run([*self.ssh, command], capture_output=True, text=True, check=False)

    def jobs(self):
        """The ids of the test's jobs in the queue (named pystributed-ID; a retry's name goes on with
        -INDEX-ATTEMPT)."""
        ids = own_ids(self.folder)
        out = self.login("squeue --noheader --format='%A %j'").stdout
        listed = [line.split() for line in out.splitlines()]
        return [job for job, name in (words for words in listed if len(words) == 2) if owned(name, ids)]

    def containers(self, run_id):
        """The containers of the run (or sweep) on the nodes' engine (the sandbox's remote one, shared)."""
        host = self.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"]
        out = subprocess.run(["docker", "-H", host, "ps", "--all", "--filter", f"name=pystributed-{run_id}",
                              "--format", "{{.Names}}"], capture_output=True, text=True, check=False).stdout
        return out.split()

    def files_of(self, run_id):
        """The files on the shared disk named by the run's (or sweep's) id, beside its folder: its
        `ID.env`, a retry's `ID.INDEX-ATTEMPT.env`; and those anywhere in or beside it that hold `text`."""
        folder = self.login(f"find ~ -maxdepth 4 -type d -name {shlex.quote(run_id)}").stdout.split()
        assert len(folder) == 1, folder
        workdir = shlex.quote(folder[0].rsplit("/", 1)[0])
        ident = shlex.quote(run_id)
        return lambda text: self.login(f"cd {workdir} && grep -rlF -e {shlex.quote(text)} -- {ident}*; "
                                       f"ls -d -- {ident}*.env").stdout.split()

    def wait_for_no_job(self, timeout=120):
        deadline = time.time() + timeout
        while self.jobs():
            assert time.time() < deadline, self.jobs()
            time.sleep(1)

    def assert_nothing_left(self):
        left = self.jobs()
        if left:
            self.login(shlex.join(["scancel", *left]))
        assert left == [], left


def test_the_login_node_has_no_docker_and_a_run_from_the_cli_comes_back(cluster, tmp_path):
    assert cluster.login("command -v docker").returncode != 0
    cli_run_comes_back(tmp_path, "os.environ.get('CUDA_VISIBLE_DEVICES')")


def cli_run_comes_back(folder, shown):
    """`python -m pystributed run` of a cell that prints its node and `shown` and writes out.txt: its
    output here, its folder back with the file and exit code 0."""
    (folder / "cell.py").write_text(f"import os\nprint('on', os.environ['PYSTRIBUTED_NODE'], {shown})\n"
                                    "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), 'w')"
                                    ".write('hi')\n")
    proc = pystributed("run", "cell.py")
    assert "on node" in proc.stdout, proc.stdout + proc.stderr
    runs = [p for p in (folder / "results").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1 and (runs[0] / "out.txt").read_text() == "hi"
    assert json.loads((runs[0] / ".pystributed-state.json").read_text())["State"]["ExitCode"] == 0


SWEEP_CELL = """%%remote --sweep x=0,1,2,3,4,5,6,7 --out y
import json, os, time
started = time.time()
time.sleep(4)
if x == 5:
    raise ValueError("task five fails")
info = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "node": os.environ["PYSTRIBUTED_NODE"],
        "started": started, "ended": time.time()}
json.dump(info, open(os.path.join(os.environ["PYSTRIBUTED_RESULTS"], "info.json"), "w"))
y = x * 10
"""


def test_a_sweep_of_8_tasks_over_4_gpus_from_a_notebook_one_failing(cluster, tmp_path):
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")
        messages, reply = kernel.execute(SWEEP_CELL, timeout=300)
        shown = stream_text(messages) + json.dumps([m["content"] for m in messages if "data" in m["content"]])
        messages, _ = kernel.execute("print(_.statuses); print(_.errors[5])")
        out = stream_text(messages)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    statuses = ["succeeded"] * 8
    statuses[5] = "failed"
    assert out.splitlines()[0] == repr(statuses), out
    assert "ValueError: task five fails" in out and 'File "/app/' in out, out  # the remote traceback
    assert "Resources" in shown, shown  # tasks 4..7 waited for a GPU, with Slurm's reason shown
    folder = next(p for p in (tmp_path / "results").iterdir() if p.name.startswith("sweep-"))
    infos = {i: json.loads((folder / str(i) / "info.json").read_text()) for i in range(8) if i != 5}
    assert len(infos) == 7 and (folder / "5" / "output.log").exists()
    for a, first in infos.items():  # no (node, GPU) given to two running tasks at once
        for b, second in infos.items():
            if a < b and (first["node"], first["gpu"]) == (second["node"], second["gpu"]):
                assert first["ended"] <= second["started"] or second["ended"] <= first["started"], \
                    (first, second)
    assert {i["node"] for i in infos.values()} == {"node1", "node2"}
    assert {i["gpu"] for i in infos.values()} == {"0", "1"}


def test_tasks_per_container_keeps_each_tasks_folder_exit_code_traceback_and_retry(cluster, monkeypatch):
    # array tasks of tasks 0-1, 2-3, 4; a job each for the retries of 1 and 2
    two_tasks_per_container(monkeypatch)


def test_a_sweep_over_max_array_size_runs_as_several_arrays_to_its_end(cluster, tmp_path, monkeypatch):
    """The cluster's MaxArraySize caps an array's indexes: a larger sweep is several arrays, each's task
    ids counted from its offset. The rig's is Slurm's default, 1001 (slurm_rig.sh; `scontrol show config`
    is read, and says so); its answer is taken as 40 here, so that 300 short tasks, 3 a container, make
    arrays of 40, 40 and 20 jobs, which Slurm runs as they are (a cap of its own would take a restart)."""
    assert "MaxArraySize            = 1001" in cluster.login("scontrol show config").stdout
    with slurm.Slurm(config.load()).login.connection() as login:
        assert login.call("slurm_max_array", step="start").strip() == "1001"
    monkeypatch.setattr(slurm.Slurm, "max_array", lambda self: 40)
    monkeypatch.setenv("PYSTRIBUTED_SLURM_CONTAINERS", "docker")  # (the route is not what this is about)
    (tmp_path / "cell.py").write_text("import os\ny = x * 2\nfolder = os.environ['PYSTRIBUTED_RESULTS']\n"
                                      "open(os.path.join(folder, 'x.txt'), 'w').write(str(x))\n")
    job = sweep.run(config.load(TASKS_PER_CONTAINER=3), params=[{"x": i} for i in range(300)],
                    code_path="cell.py", out=["y"], quiet=True)
    assert job.statuses == ["succeeded"] * 300, job.summary()
    assert [service[3:] for service in job.services] == [[], [40], [80]]
    assert job.values["y"] == [2 * i for i in range(300)]
    folder = tmp_path / "results" / job.sweep_id
    assert [(folder / str(i) / "x.txt").read_text() for i in range(300)] == [str(i) for i in range(300)]
    cluster.wait_for_no_job(timeout=60)


def test_a_sweep_one_over_the_real_max_array_size_is_two_arrays_slurm_takes(cluster, tmp_path, monkeypatch):
    """At the rig's own MaxArraySize (1001, indexes 0 to 1000): 1,002 tasks are submitted as arrays of
    1,001 and 1 (held, so that nothing runs), which Slurm accepts as they are; cancel takes both."""
    monkeypatch.setenv("PYSTRIBUTED_SLURM_CONTAINERS", "docker")  # (the route is not what this is about)
    monkeypatch.setenv("PYSTRIBUTED_SLURM_ARGS", "--hold")
    (tmp_path / "cell.py").write_text("y = x\n")
    sweep_id = pystributed("sweep", "cell.py", "--param", "x=" + ",".join(map(str, range(1002))), "--detach",
                           "-q").stdout.strip()
    listed = cluster.login(f"squeue --noheader --array --name=pystributed-{sweep_id} --format='%F %K %r'")
    rows = [line.split() for line in listed.stdout.splitlines()]
    arrays = sorted({array for array, _, _ in rows})
    assert len(arrays) == 2 and {reason for _, _, reason in rows} == {"JobHeldUser"}, listed.stdout[:500]
    assert sorted(int(index) for array, index, _ in rows if array == arrays[0]) == list(range(1001))
    assert [index for array, index, _ in rows if array == arrays[1]] == ["0"]
    record = json.loads((tmp_path / "results" / ".sweeps" / f"{sweep_id}.json").read_text())
    assert [service[1:] for service in record["services"]] == [[arrays[0], None], [arrays[1], None, 1001]]
    assert pystributed("cancel", sweep_id, check=False).returncode == 0
    cluster.wait_for_no_job(timeout=60)


def test_cancel_mid_sweep_leaves_no_job_and_no_container(cluster, tmp_path):
    cancel_mid_sweep(cluster, tmp_path)


def cancel_mid_sweep(cluster, tmp_path, wait=90):
    """(`wait`: seconds for task 4 to start once task 0 ended; pyxis unpacks the image for each task)"""
    # Task 0 ends at once, task 4 takes its GPU, task 5 waits in the queue.
    sweep_id = long_sweep(0, *[120] * 5)
    proc = cancel_once_the_first_ended(sweep_id, lambda: len(cluster.containers(sweep_id)), 4, wait)
    # task 0 ended before: it stays succeeded
    assert "1 succeeded, 0 failed, 5 cancelled" in proc.stdout, proc.stdout
    assert cluster.jobs() == [] and cluster.containers(sweep_id) == []
    first = json.loads((tmp_path / "results" / sweep_id / "0" / ".pystributed-state.json").read_text())
    assert first["State"]["ExitCode"] == 0 and not first["Cancelled"]
    ran = [p for p in (tmp_path / "results" / sweep_id).iterdir() if p.is_dir() and p.name != "0"]
    assert len(ran) == 4
    for task in ran:  # the cell got a KeyboardInterrupt: its `finally:` ran, and its results came back
        assert (task / "finally.txt").read_text() == "ran"
        state = json.loads((task / ".pystributed-state.json").read_text())
        assert state["State"]["ExitCode"] == 130 and state["Cancelled"] is True


def test_an_interrupted_attach_exits_130_and_a_later_attach_from_a_new_process_brings_everything(
        cluster, tmp_path):
    sweep_id = long_sweep(8, 9, 10)
    folder = interrupted_then_attached(sweep_id, cluster.jobs)
    assert all((folder / str(i) / "finally.txt").read_text() == "ran" for i in range(3))


MEET_CELL = """%%remote --nodes 2
import os, socket, time
rank, addr, port = int(os.environ["RANK"]), os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
print("rank", rank, "of", os.environ["WORLD_SIZE"], "on", os.environ["PYSTRIBUTED_NODE"], flush=True)
if rank == 0:
    server = socket.create_server((addr, port))
    connection, _ = server.accept()
    value = int(connection.recv(64).decode()) * 10
else:
    for _ in range(150):
        try:
            client = socket.create_connection((addr, port))
            break
        except OSError:
            time.sleep(0.2)
    client.sendall(str(int(os.environ["NODE_RANK"]) + 41).encode())
    value = None
value
"""


def test_a_cell_over_two_nodes_meets_at_master_addr_and_returns_rank_0s_value(cluster, tmp_path):
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")
        messages, reply = kernel.execute(MEET_CELL, timeout=180)
        shown = stream_text(messages)
        messages, _ = kernel.execute("print(repr(_))")
        out = stream_text(messages)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    assert out.strip() == "420", out
    assert "rank 0 of 2 on node1" in shown and "rank 1" not in shown, shown  # rank 0's output, live
    run = next(p for p in (tmp_path / "results").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert "rank 1 of 2 on node2" in (run / "rank-1" / "output.log").read_text()
    cluster.assert_nothing_left()
    assert cluster.containers(run.name) == []


def test_a_rank_that_fails_fails_the_run_with_its_traceback(cluster, tmp_path):
    cell = ("%%remote --nodes 2\nimport os, socket\n"
            "if os.environ['RANK'] == '1':\n    raise ValueError('rank one fails')\n"
            "server = socket.create_server((os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT'])))\n"
            "server.accept()  # never: rank 1 failed, and the job stops rank 0\n")
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")
        messages, reply = kernel.execute(cell, timeout=180)
    finally:
        kernel.close()
    assert reply["status"] == "error", reply
    error, shown = json.dumps(error_of(messages)), stream_text(messages)
    assert "ValueError: rank one fails" in error and 'raise ValueError(' in error, error  # rank 1's traceback
    assert "rank 1 (on node2) failed with exit code 1" in shown, shown
    run = next(p for p in (tmp_path / "results").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert json.loads((run / ".pystributed-state.json").read_text())["State"]["ExitCode"] == 1
    cluster.assert_nothing_left()
    assert cluster.containers(run.name) == []


SECRET_CELL = "import os\nprint('token of', len(os.environ['PST_SLURM_TOKEN']), 'characters')\n"


def test_a_runs_secret_leaves_the_shared_disk_with_its_job_before_anyone_waits_for_it(cluster, tmp_path,
                                                                                     monkeypatch):
    """ENV and SECRETS reach the job in REMOTE_WORKDIR/ID.env (mode 600): the job removes it at its end,
    so that no secret stays after a detached run or a kernel that died; `wait` then finds the run."""
    value = f"pst-{secrets.token_hex(12)}"
    monkeypatch.setenv("PST_SLURM_TOKEN", value)
    monkeypatch.setenv("PYSTRIBUTED_SECRETS", "PST_SLURM_TOKEN")
    (tmp_path / "cell.py").write_text(SECRET_CELL)
    run_id = pystributed("submit", "cell.py").stdout.strip()
    holding = cluster.files_of(run_id)
    cluster.wait_for_no_job()  # (no one follows it: what is left is what the job left)
    assert holding(value) == [], "the secret stayed on the shared disk"
    done = pystributed("wait", run_id, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert holding(value) == []


def test_a_detached_sweeps_secret_leaves_the_shared_disk_with_its_array(cluster, tmp_path, monkeypatch):
    """A job array's tasks each read the file as they start: the last of them to end removes it."""
    value = f"pst-{secrets.token_hex(12)}"
    monkeypatch.setenv("PST_SLURM_TOKEN", value)
    monkeypatch.setenv("PYSTRIBUTED_SECRETS", "PST_SLURM_TOKEN")
    (tmp_path / "cell.py").write_text(SECRET_CELL)
    sweep_id = pystributed("sweep", "cell.py", "--param", "x=0,1,2", "--detach", "-q").stdout.strip()
    holding = cluster.files_of(sweep_id)
    cluster.wait_for_no_job()
    assert holding(value) == [], "the secret stayed on the shared disk"
    done = pystributed("attach", sweep_id, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "token of 28 characters" in (tmp_path / "results" / sweep_id / "2" / "output.log").read_text()


def test_a_run_is_followed_and_cancelled_from_another_process(cluster, tmp_path):
    a_cluster_run_followed_then_cancelled(tmp_path)
    cluster.wait_for_no_job(timeout=30)
