"""places/slurm_job.sh itself, run by `sh` as Slurm would run it, with fake `srun`, `scontrol`,
`scancel` and `docker` on PATH that record their words. The fake srun runs its command once per node
(one after the other, with the step's variables); the fake `docker run` plays the container: it
writes the output and the state task_runner.py would, into the folder mounted at /results, with the
exit code FAKE_CODE_<RANK> (0 unless given)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pystributed.places import slurm, slurm_routes

NAME = "pystributed-20261125-101502-3fa9c1"

FAKE = r"""#!PYTHON
import json, os, subprocess, sys, time
prog, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(os.environ["FAKE"], "calls"), "a") as f:
    f.write(json.dumps([prog, *argv]) + "\n")


def container(folder, env):
    if env.get("PYSTRIBUTED_TASK_FOLDERS") == "1":  # (as task_runner.py does: the first task of its chunk)
        folder = os.path.join(folder, str(int(env["PYSTRIBUTED_TASK"])
                                          * int(env.get("PYSTRIBUTED_TASKS_PER_CONTAINER", "1"))))
    rank = env.get("RANK", "")
    code = int(os.environ.get(f"FAKE_CODE_{rank}", "0"))
    open(os.path.join(folder, "output.log"), "w").write(f"rank {rank} ran\n"
                                                        + ("Traceback\nValueError: no\n" * bool(code)))
    state = {"Cancelled": False,
             "State": {"ExitCode": code, "FinishedAt": os.environ.get(f"FAKE_AT_{rank}", "T1")},
             "Node": env.get("PYSTRIBUTED_NODE", ""),
             "Env": {k: env.get(k) for k in ("A", "B", "RANK", "PYSTRIBUTED_RESULTS", "APPTAINER_NOHTTPS",
                                             "PYSTRIBUTED_NODE", "PYSTRIBUTED_TASK")}}
    open(os.path.join(folder, env.get("PYSTRIBUTED_STATE_NAME", ".pystributed-state.json")), "w").write(
        json.dumps(state) + "\n")


if prog == "scontrol":
    print("node1\nnode2" if argv[:2] == ["show", "hostnames"]
          else "NodeName=node1 NodeAddr=10.0.0.1 Arch=x86_64")
elif prog == "srun" and "sh" in argv:
    command = argv[argv.index("sh"):]
    for rank in range(int(os.environ["SLURM_JOB_NUM_NODES"])):
        env = dict(os.environ, SLURM_PROCID=str(rank), SLURM_NODEID=str(rank), SLURM_LOCALID="0",
                   SLURM_NTASKS=os.environ["SLURM_JOB_NUM_NODES"], SLURMD_NODENAME=f"node{rank + 1}",
                   SLURM_STEP_GPUS=f"{rank}")
        subprocess.run(command, env=env, check=False)
    time.sleep(float(os.environ.get("FAKE_SRUN_LINGER", "0")))
elif prog == "srun":  # pyxis
    mounts = next(a for a in argv if a.startswith("--container-mounts=")).split("=", 1)[1]
    container(mounts.split(",")[0].rsplit(":", 1)[0], os.environ)
elif prog == "enroot" and argv[0] == "import":
    open(argv[argv.index("--output") + 1], "w").write(argv[-1])
elif prog == "apptainer":
    container(argv[argv.index("--bind") + 1].rsplit(":", 1)[0], os.environ)
elif prog == "docker" and argv[0] == "run":
    env = {argv[i + 1].split("=", 1)[0]: argv[i + 1].split("=", 1)[1]
           for i, a in enumerate(argv) if a == "--env"}
    container(next(argv[i + 1] for i, a in enumerate(argv) if a == "--volume").rsplit(":", 1)[0], env)
elif prog == "docker" and argv[:2] == ["container", "inspect"]:
    sys.exit(1)
"""


class Job:
    def __init__(self, tmp_path):
        self.dir = tmp_path / "runs" / "r1"
        self.dir.mkdir(parents=True)
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for prog in ("srun", "scontrol", "scancel", "docker", "apptainer", "enroot"):
            path = self.bin / prog
            path.write_text(FAKE.replace("PYTHON", sys.executable))
            path.chmod(0o755)
        self.fake = tmp_path / "fake"
        self.fake.mkdir()
        self.script = self.dir / ".pystributed-job.sh"
        self.script.write_text(slurm.JOB_SCRIPT)
        self.env_file = f"{self.dir}.env"

    def run(self, mode, route="docker", args=None, **env):
        args = args or ["--user", "1000:1000", "--volume", f"{self.dir}:/results", "--env",
                        "PYSTRIBUTED_RESULTS=/results", "reg:5000/p:1", "python", "/app/task_runner.py"]
        environ = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE": str(self.fake), "SLURM_JOB_ID": "45",
                   "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_GPUS": "0",
                   "SLURMD_NODENAME": "node1", **env}
        proc = subprocess.run(["sh", str(self.script), str(self.dir), NAME, mode, route, self.env_file,
                               *args], env=environ, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return args

    def calls(self, prog=None):
        lines = (self.fake / "calls").read_text().splitlines() if (self.fake / "calls").exists() else []
        return [call[1:] for call in map(json.loads, lines) if prog in (None, call[0])]

    def state(self, folder=None):
        return json.loads(((folder or self.dir) / ".pystributed-state.json").read_text())


def env_of(argv):
    return {argv[i + 1].split("=", 1)[0]: argv[i + 1].split("=", 1)[1]
            for i, a in enumerate(argv) if a == "--env"}


@pytest.fixture
def job(tmp_path):
    return Job(tmp_path)


def test_a_run_over_two_nodes_runs_one_container_per_node_with_the_ranks_variables(job):
    args = job.run("ranks")
    srun, = job.calls("srun")
    assert srun == ["--ntasks-per-node=1", "--kill-on-bad-exit=0", "sh", "--", str(job.script), str(job.dir),
                    NAME, "rank", "docker", job.env_file, *args]
    runs = [call for call in job.calls("docker") if call[0] == "run"]
    assert len(runs) == 2
    for rank, run in enumerate(runs):
        env = env_of(run)
        assert {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "NODE_RANK", "WORLD_SIZE",
                                    "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PYSTRIBUTED_NODE",
                                    "DOCKER_RESOURCE_GPU")} == {
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "20045", "RANK": str(rank), "NODE_RANK": str(rank),
            "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
            "PYSTRIBUTED_NODE": f"node{rank + 1}",
            "DOCKER_RESOURCE_GPU": str(rank)}  # the step's GPUs, not the first node's SLURM_JOB_GPUS
        assert run[run.index("--network") + 1] == "host" and "--rm" in run
        folder = job.dir if rank == 0 else job.dir / f"rank-{rank}"
        assert run[run.index("--volume") + 1] == f"{folder}:/results"
        assert run[run.index("--name") + 1] == (NAME if rank == 0 else f"{NAME}-rank1")
        assert run[-4:] == args[-4:]  # the image and its command, last
    assert job.state()["State"]["ExitCode"] == 0 and job.state()["Node"] == "node1"
    assert (job.dir / "output.log").read_text() == "rank 0 ran\n"
    assert (job.dir / "rank-1" / "output.log").read_text() == "rank 1 ran\n"
    assert job.calls("scancel") == []


def test_the_first_rank_to_fail_fails_the_run_with_its_output_and_stops_the_others(job):
    job.run("ranks", FAKE_CODE_0="143", FAKE_AT_0="T2", FAKE_CODE_1="3", FAKE_AT_1="T1",
            FAKE_SRUN_LINGER="2.5")
    assert job.state()["State"]["ExitCode"] == 3 and job.state()["Node"] == "node2"
    log = (job.dir / "output.log").read_text()
    assert log == ("rank 0 ran\nTraceback\nValueError: no\n\n"
                   "[pystributed] rank 1 (on node2) failed with exit code 3; "
                   "its output (rank-1/output.log):\nrank 1 ran\nTraceback\nValueError: no\n")
    assert ["--signal=TERM", "45.0"] in job.calls("scancel")


def test_rank_0_failing_first_is_the_runs_failure(job):
    job.run("ranks", FAKE_CODE_0="1", FAKE_AT_0="T1", FAKE_CODE_1="143", FAKE_AT_1="T2")
    assert job.state()["State"]["ExitCode"] == 1
    assert "[pystributed]" not in (job.dir / "output.log").read_text()


def test_a_one_task_run_is_unchanged(job):
    args = job.run("0")
    run, = [call for call in job.calls("docker") if call[0] == "run"]
    assert run[1:] == ["--env", "DOCKER_RESOURCE_GPU=0", "--rm", "--name", NAME, "--env-file", job.env_file,
                       "--env", "PYSTRIBUTED_NODE=node1", *args]
    assert job.calls("srun") == [] and job.state()["State"]["ExitCode"] == 0


DOCKER_ARGS = ["--user", "1000:1000", "--volume", "{dir}:/results", "--env", "PYSTRIBUTED_RESULTS=/results",
               "--env", "B=run's", "127.0.0.1:5000/p:1", "python", "/app/task_runner.py"]


@pytest.mark.parametrize("route", ["pyxis", "apptainer"])
@pytest.mark.parametrize("mode", ["0", "1"])
def test_pyxis_and_apptainer_start_the_container_with_the_variables_in_its_environment(job, route, mode):
    docker_args = [word.format(dir=job.dir) for word in DOCKER_ARGS]
    Path(job.env_file).write_text("A=secret value\nB=from the file\n")
    args = slurm_routes.ROUTES[route](docker_args)
    job.run(mode, route, args, SLURM_ARRAY_TASK_ID="3")
    launched, = job.calls("srun" if route == "pyxis" else "apptainer")
    assert launched == (([] if route == "pyxis" else ["exec"]) + (["--ntasks=1"] if route == "pyxis" else [])
                        + args[args.index("--") + 1:])
    folder = job.dir / "3" if mode == "1" else job.dir
    env = job.state(folder)["Env"]
    assert env["A"] == "secret value" and env["B"] == "run's" and env["PYSTRIBUTED_NODE"] == "node1"
    assert env["PYSTRIBUTED_TASK"] == ("3" if mode == "1" else None)
    assert env["APPTAINER_NOHTTPS"] == ("1" if route == "apptainer" else None)
    assert job.calls("docker") == []


def test_apptainer_over_two_nodes_binds_each_ranks_folder(job):
    docker_args = [word.format(dir=job.dir) for word in DOCKER_ARGS]
    job.run("ranks", "apptainer", slurm_routes.apptainer_args(docker_args))
    binds = [call[call.index("--bind") + 1] for call in job.calls("apptainer")]
    assert binds == [f"{job.dir}:/results", f"{job.dir}/rank-1:/results"]
    assert job.state()["Env"]["RANK"] == "0"
    assert json.loads((job.dir / "rank-1" / ".pystributed-rank-state.json").read_text())["Env"]["RANK"] == "1"


def test_pyxis_over_two_nodes_mounts_each_ranks_folder_in_a_container_step_beside_the_rank(job):
    docker_args = [word.format(dir=job.dir) for word in DOCKER_ARGS]
    job.run("ranks", "pyxis", slurm_routes.pyxis_args(docker_args))
    containers = [call for call in job.calls("srun") if "sh" not in call]
    assert [call[:4] for call in containers] == [
        ["--overlap", "--nodes=1", "--ntasks=1", f"--nodelist=node{n}"] for n in (1, 2)]
    mounts = [next(a for a in call if a.startswith("--container-mounts=")) for call in containers]
    assert mounts == [f"--container-mounts={folder}:/results" for folder in (job.dir, job.dir / "rank-1")]
    assert json.loads((job.dir / "rank-1" / ".pystributed-rank-state.json").read_text())["Env"]["RANK"] == "1"


def test_pyxis_imports_the_image_once_and_every_task_starts_from_that_file(job, tmp_path):
    docker_args = [word.format(dir=job.dir) for word in DOCKER_ARGS]
    image = tmp_path / "runs" / ".pystributed-images" / "sha256-ab.sqsh"
    args = slurm_routes.pyxis_args(docker_args, image_file=str(image))
    for task in ("0", "1"):
        job.run("1", "pyxis", args, SLURM_ARRAY_TASK_ID=task)
    assert job.calls("enroot") == [["import", "--output", job.calls("enroot")[0][2], "docker://127.0.0.1:5000#p:1"]]
    assert image.read_text() == "docker://127.0.0.1:5000#p:1"
    assert [call[1] for call in job.calls("srun")] == [f"--container-image={image}"] * 2
    assert (job.dir / "0" / ".pystributed-import").read_text().startswith("imported ")
    assert (job.dir / "1" / ".pystributed-import").read_text() == "found\n"


def test_an_array_task_of_a_chunk_runs_its_tasks_in_one_container_and_each_that_never_ran_fails(job):
    for index in (6, 7, 8, 1):  # an earlier attempt's, in the chunk; another chunk's task 1, done
        (job.dir / str(index)).mkdir()
        (job.dir / str(index) / ".pystributed-state.json").write_text("{}\n")
    # Array task 2 of 3 tasks a container, of 8 tasks: tasks 6 and 7. The fake container runs only the first.
    job.run("1", SLURM_ARRAY_TASK_ID="2", PYSTRIBUTED_TASKS_PER_CONTAINER="3", PYSTRIBUTED_TASK_COUNT="8")
    run, = [call for call in job.calls("docker") if call[0] == "run"]
    env = env_of(run)
    # task_runner's chunk
    assert env["PYSTRIBUTED_TASK"] == "2" and env["PYSTRIBUTED_TASKS_PER_CONTAINER"] == "3"
    assert run[run.index("--name") + 1] == f"{NAME}-2"
    assert job.state(job.dir / "6")["State"]["ExitCode"] == 0 and (job.dir / "6" / "output.log").exists()
    # its container ended before it: it fails, and is tried again by --retries
    never = job.state(job.dir / "7")
    assert never["State"]["ExitCode"] == 125 and never["State"]["Error"] == "the container did not start"
    assert job.state(job.dir / "1") == job.state(job.dir / "8") == {}  # other chunks': left alone


def test_a_chunks_task_whose_folder_a_retry_owns_gets_no_state_at_the_chunks_end(job):
    """The engine retries a chunk's task as soon as its state shows (the chunk's container goes on with
    the others), and marks the folder the retry's (server.sh next_attempt): the chunk's end must not
    take the task for one that never ran, and write a state the retry's look would read as its end."""
    (job.dir / "7").mkdir()
    (job.dir / "7" / ".pystributed-attempt").write_text("2\n")
    job.run("1", SLURM_ARRAY_TASK_ID="2", PYSTRIBUTED_TASKS_PER_CONTAINER="3", PYSTRIBUTED_TASK_COUNT="8")
    assert job.state(job.dir / "6")["State"]["ExitCode"] == 0
    assert not (job.dir / "7" / ".pystributed-state.json").exists()


def test_a_retry_of_a_chunks_task_runs_that_task_alone(job):
    job.run("1", PYSTRIBUTED_TASK="7", PYSTRIBUTED_ATTEMPT="2", PYSTRIBUTED_TASKS_PER_CONTAINER="3",
            PYSTRIBUTED_TASK_COUNT="8")
    run, = [call for call in job.calls("docker") if call[0] == "run"]
    assert env_of(run)["PYSTRIBUTED_TASK"] == "7" and "PYSTRIBUTED_TASKS_PER_CONTAINER" not in env_of(run)
    assert env_of(run)["PYSTRIBUTED_ATTEMPT"] == "2"  # (as on a swarm: the cell knows it is tried again)


def test_the_job_saves_its_gpus_for_the_looks_and_removes_them_at_its_end(job, tmp_path):
    """server.sh's slurm_jobs reads a running job's GPUs from the shared disk, not from scontrol."""
    seen = tmp_path / "seen"
    args = ["--volume", f"{job.dir}:/results", "reg:5000/p:1", "sh", "-c",
            f"cat {job.dir}/.pystributed-gpus-45 >{seen}"]  # (the container: what a look reads meanwhile)
    fake_docker = '#!/bin/sh\n[ "$1" = run ] || exit 1\nshift $(($# - 3))\nexec "$@"\n'  # (runs the command)
    job.bin.joinpath("docker").write_text(fake_docker)
    job.run("1", args=args, SLURM_ARRAY_TASK_ID="3", SLURM_JOB_GPUS="0,1")
    assert seen.read_text() == "0,1\n"
    assert not (job.dir / ".pystributed-gpus-45").exists()


STOPPABLE_DOCKER = """#!/bin/sh
# A container that runs until `docker stop` or `docker kill` ends it (killed before task_runner.py saved
# any state), its first task begun (its output.log written).
case $1 in
run) echo began >"$FAKE_FOLDER/output.log"; echo $$ >"$FAKE/pid"; exec sleep 60 ;;
stop | kill) kill "$(cat "$FAKE/pid")" ;;
*) exit 1 ;;
esac
"""


STOPPED = {"Unstarted": True, "Cancelled": False, "Error": "stopped before it started", "Code": 143}
CANCELLED = {"Unstarted": None, "Cancelled": True, "Error": "cancelled before it started", "Code": 130}


@pytest.mark.parametrize("number, unstarted", [(signal.SIGTERM, STOPPED), (signal.SIGINT, CANCELLED)])
def test_a_stop_saves_a_chunks_unstarted_tasks_as_such_a_cancel_as_cancelled(job, number, unstarted):
    """Slurm's --time limit and a preemption send SIGTERM (the engine runs such tasks again, using no
    retry); our cancel sends SIGINT first. The task that ran is a failure in both."""
    job.bin.joinpath("docker").write_text(STOPPABLE_DOCKER)
    environ = {"PATH": f"{job.bin}:/usr/bin:/bin", "FAKE": str(job.fake), "FAKE_FOLDER": str(job.dir / "6"),
               "SLURM_JOB_ID": "45", "SLURM_ARRAY_TASK_ID": "3", "PYSTRIBUTED_TASKS_PER_CONTAINER": "2",
               "PYSTRIBUTED_TASK_COUNT": "8", "SLURMD_NODENAME": "node1"}
    proc = subprocess.Popen(["sh", str(job.script), str(job.dir), NAME, "1", "docker", job.env_file, "img",
                             "cmd"], env=environ)
    deadline = time.monotonic() + 30
    while not (job.fake / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(number)
    assert proc.wait(timeout=30) == 0
    ran, never = job.state(job.dir / "6"), job.state(job.dir / "7")
    assert ran["State"]["ExitCode"] in (130, 143) and "Unstarted" not in ran  # it had begun: a failure
    assert {"Unstarted": never.get("Unstarted"), "Cancelled": never["Cancelled"],
            "Error": never["State"]["Error"], "Code": never["State"]["ExitCode"]} == unstarted


def test_a_runs_job_removes_its_environment_file_at_its_end(job):
    """ENV and SECRETS leave the shared disk with the job: also after a detached run or a crashed kernel."""
    Path(job.env_file).write_text("TOKEN=s3cret\n")
    job.run("0")
    assert job.state()["State"]["ExitCode"] == 0 and not Path(job.env_file).exists()


def test_a_retrys_job_removes_its_own_environment_file(job):
    retry_env = f"{job.dir}.7-2.env"
    Path(retry_env).write_text("TOKEN=s3cret\n")
    Path(job.env_file).write_text("TOKEN=s3cret\n")  # the array's, which its own tasks may still need
    job.env_file = retry_env
    job.run("1", PYSTRIBUTED_TASK="7", PYSTRIBUTED_ATTEMPT="2")
    assert not Path(retry_env).exists() and Path(f"{job.dir}.env").exists()


def test_the_last_array_task_to_end_removes_the_arrays_environment_file(job):
    """Each array task reads it as it starts: it goes once every one of them has ended."""
    Path(job.env_file).write_text("TOKEN=s3cret\n")
    for task in ("2", "0"):
        job.run("1", SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_COUNT="3")
        assert Path(job.env_file).exists()
    job.run("1", SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="3")
    assert not Path(job.env_file).exists()
    assert sorted(p.name for p in job.dir.iterdir() if p.name.startswith(".")) == [".pystributed-job.sh"]


def test_an_array_after_the_first_counts_its_tasks_from_its_offset(job):
    """A sweep over MaxArraySize is several arrays (slurm_engine.start): task 3 of the array from 1000."""
    job.run("1", SLURM_ARRAY_TASK_ID="3", PYSTRIBUTED_TASK_OFFSET="1000")
    run, = [call for call in job.calls("docker") if call[0] == "run"]
    assert env_of(run)["PYSTRIBUTED_TASK"] == "1003" and run[run.index("--name") + 1] == f"{NAME}-1003"
    assert job.state(job.dir / "1003")["State"]["ExitCode"] == 0 and not (job.dir / "3").exists()


def test_a_chunk_of_an_array_after_the_first_is_its_offsets(job):
    # Array task 1 of the array from job 5, 2 tasks a container, of 14 tasks: job 6, tasks 12 and 13.
    job.run("1", SLURM_ARRAY_TASK_ID="1", PYSTRIBUTED_TASK_OFFSET="5", PYSTRIBUTED_TASKS_PER_CONTAINER="2",
            PYSTRIBUTED_TASK_COUNT="14")
    run, = [call for call in job.calls("docker") if call[0] == "run"]
    assert env_of(run)["PYSTRIBUTED_TASK"] == "6"  # (task_runner's chunk: 12, 13)
    assert job.state(job.dir / "12")["State"]["ExitCode"] == 0
    assert job.state(job.dir / "13")["State"]["Error"] == "the container did not start"  # (the fake ran one)


def test_the_last_task_of_all_the_sweeps_arrays_removes_their_environment_file(job):
    """Arrays of 2, 2 and 1 (MaxArraySize 2) share one file: it goes when the last of the 5 ends."""
    Path(job.env_file).write_text("TOKEN=s3cret\n")
    for offset, task in [("0", "0"), ("2", "1"), ("0", "1"), ("4", "0")]:
        job.run("1", SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_COUNT="2" if offset != "4" else "1",
                PYSTRIBUTED_TASK_OFFSET=offset, PYSTRIBUTED_ARRAY_COUNT="5")
        assert Path(job.env_file).exists()  # (each array's own count, 2 or 1, would have removed it)
    job.run("1", SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_TASK_COUNT="2", PYSTRIBUTED_TASK_OFFSET="2",
            PYSTRIBUTED_ARRAY_COUNT="5")
    assert not Path(job.env_file).exists()


def test_a_run_over_two_nodes_removes_its_environment_file_once_every_rank_ended(job):
    Path(job.env_file).write_text("TOKEN=s3cret\n")
    job.run("ranks")
    assert job.state()["State"]["ExitCode"] == 0 and not Path(job.env_file).exists()
