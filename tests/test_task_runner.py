"""task_runner.py, as it runs in the image: the task's index, folder, GPUs and parameters, and the
process that looks after the cell on a cluster."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pystributed import cell_runner, task_runner


def test_the_index_is_given_or_swarms_slot_whose_0_is_a_node_id():
    assert task_runner.task_index({"PYSTRIBUTED_TASK": "4", "PYSTRIBUTED_SLOT": "7"}) == 4
    assert task_runner.task_index({"PYSTRIBUTED_SLOT": "7"}) == 7
    assert task_runner.task_index({"PYSTRIBUTED_SLOT": "w1qrl9b1qgovoucxvn73td0jb"}) == 0
    assert task_runner.task_index({}) == 0


def test_a_task_gets_its_folder_its_gpus_and_its_index(tmp_path):
    (tmp_path / task_runner.SWEEP).write_bytes(pickle.dumps([{}, {}, {}]))
    env = {"PYSTRIBUTED_SLOT": "2", "PYSTRIBUTED_TASK_FOLDERS": "1",
           "PYSTRIBUTED_RESULTS": str(tmp_path / "r"), "DOCKER_RESOURCE_GPU": "GPU-a,GPU-b"}
    assert task_runner.prepare(env, here=tmp_path) == 2
    assert env["PYSTRIBUTED_RESULTS"] == str(tmp_path / "r" / "2") and (tmp_path / "r" / "2").is_dir()
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    assert env["PYSTRIBUTED_TASK"] == "2" and "PYSTRIBUTED_TASK_FOLDERS" not in env  # (once)


def image(tmp_path, cell, params):
    """The image's /pystributed (task_runner.py, cell_runner.py, task.json, sweep.pkl) and /app."""
    runner = tmp_path / "pystributed"
    runner.mkdir()
    for module in (task_runner, cell_runner):
        shutil.copy(module.__file__, runner)
    (runner / task_runner.TASK).write_text(json.dumps({"entry": "cell.py"}))
    pickled = [{k: pickle.dumps(v) for k, v in p.items()} for p in params]
    (runner / task_runner.SWEEP).write_bytes(pickle.dumps(pickled))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cell.py").write_text(cell)
    (tmp_path / "results").mkdir()
    return runner / "task_runner.py"


def run(script, tmp_path, slot):
    env = {**os.environ, "PYSTRIBUTED_RESULTS": str(tmp_path / "results"), "PYSTRIBUTED_TASK_FOLDERS": "1",
           "PYSTRIBUTED_SLOT": slot, "PYSTRIBUTED_RUN_ID": "sweep-1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path / "app", env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_on_a_cluster_the_cell_fails_but_the_task_does_not(tmp_path):
    # One write for the line: output.log takes stdout and stderr as they come, and a print of
    # several words is several writes, between which the traceback could land.
    script = image(tmp_path, "import os\nprint(f\"lr is {lr} {os.environ['PYSTRIBUTED_TASK']}\")\n"
                             "if lr > 1:\n    raise ValueError('too big')\n", [{"lr": 0.5}, {"lr": 2}])
    ok, failed = run(script, tmp_path, "nodeid"), run(script, tmp_path, "1")
    # Swarm would fill the slot of a failed task again and again
    assert ok.returncode == failed.returncode == 0
    assert ok.stdout == "lr is 0.5 0\n" and "ValueError: too big" in failed.stderr
    for index, code in ((0, 0), (1, 1)):
        folder = Path(tmp_path / "results" / str(index))
        state = json.loads((folder / task_runner.STATE).read_text())
        assert state["State"]["ExitCode"] == code and state["Name"] == f"/pystributed-sweep-1-{index}"
        assert state["State"]["StartedAt"] <= state["State"]["FinishedAt"]
    log = (tmp_path / "results" / "1" / "output.log").read_text()
    assert "lr is 2 1" in log and 'File "' in log and "ValueError: too big" in log


def test_a_container_runs_its_tasks_one_after_another_each_with_its_folder_and_state(tmp_path):
    script = image(tmp_path, "import os\nprint(f\"x is {x} {os.environ['PYSTRIBUTED_TASK']}\")\n"
                             "if x == 4:\n    raise ValueError('four')\n", [{"x": n} for n in range(5)])
    env = {**os.environ, "PYSTRIBUTED_RESULTS": str(tmp_path / "results"), "PYSTRIBUTED_TASK_FOLDERS": "1",
           "PYSTRIBUTED_SLOT": "1", "PYSTRIBUTED_RUN_ID": "sweep-1", "PYTHONUNBUFFERED": "1",
           "PYSTRIBUTED_TASKS_PER_CONTAINER": "3"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path / "app", env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    # the container 1 of 3 tasks each: 3 and 4
    assert done.returncode == 0 and done.stdout == "x is 3 3\nx is 4 4\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["3", "4"]
    for index, code in ((3, 0), (4, 1)):
        folder = tmp_path / "results" / str(index)
        state = json.loads((folder / task_runner.STATE).read_text())
        assert state["State"]["ExitCode"] == code and state["Name"] == f"/pystributed-sweep-1-{index}"
    assert "ValueError: four" in (tmp_path / "results" / "4" / "output.log").read_text()
    assert "x is 3 3" not in (tmp_path / "results" / "4" / "output.log").read_text()


def test_a_retry_runs_its_one_task_and_the_chunk_is_cut_at_the_end(tmp_path):
    (tmp_path / task_runner.SWEEP).write_bytes(pickle.dumps([{}] * 5))
    assert task_runner.chunk({"PYSTRIBUTED_TASKS_PER_CONTAINER": "2"}, 2, here=tmp_path) == [4]
    assert task_runner.chunk({"PYSTRIBUTED_TASKS_PER_CONTAINER": "2"}, 0, here=tmp_path) == [0, 1]
    assert task_runner.chunk({}, 3, here=tmp_path) == [3]
    assert task_runner.chunk({"PYSTRIBUTED_TASKS_PER_CONTAINER": "4"}, None, here=tmp_path) == [None]


def signalled_once_the_first_task_runs(tmp_path, signum):
    """A container of 3 tasks whose first holds: `signum` once it began; task_runner.py's exit code."""
    script = image(tmp_path, "import os, time\n"
                             "open(os.environ['PYSTRIBUTED_RESULTS'] + '/began', 'w').close()\n"
                             "time.sleep(30)\n", [{}] * 3)
    env = {**os.environ, "PYSTRIBUTED_RESULTS": str(tmp_path / "results"), "PYSTRIBUTED_TASK_FOLDERS": "1",
           "PYSTRIBUTED_SLOT": "nodeid", "PYSTRIBUTED_RUN_ID": "sweep-1",
           "PYSTRIBUTED_TASKS_PER_CONTAINER": "3"}
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path / "app", env=env)
    began = tmp_path / "results" / "0" / "began"
    deadline = time.monotonic() + 30
    while not began.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    return process.wait(timeout=30)


def test_an_interrupt_stops_the_running_task_and_the_containers_others_never_start(tmp_path):
    # (SIGINT: what a cancel does, Swarm's stop signal, scancel --signal=INT)
    assert signalled_once_the_first_task_runs(tmp_path, signal.SIGINT) == 0
    states = [json.loads((tmp_path / "results" / str(i) / task_runner.STATE).read_text()) for i in range(3)]
    assert ([s["Cancelled"] for s in states] == [True] * 3
            and [s["State"]["ExitCode"] for s in states] == [130] * 3)
    assert [s["State"]["Error"] for s in states] == ["", "cancelled before it started",
                                                     "cancelled before it started"]


def test_a_stop_saves_the_containers_unstarted_tasks_as_such_not_as_cancelled(tmp_path):
    """SIGTERM is a stop the user did not ask for (Slurm's --time limit, a preemption, `docker stop`):
    the tasks that never started are saved as unstarted, for the engine to queue again; the one that
    ran is stopped and fails, as any cell that a signal ends."""
    assert signalled_once_the_first_task_runs(tmp_path, signal.SIGTERM) == 0
    folders = [tmp_path / "results" / str(i) for i in range(3)]
    ran, *rest = [json.loads((folder / task_runner.STATE).read_text()) for folder in folders]
    assert ran["State"]["ExitCode"] == 143 and not ran["Cancelled"] and not ran.get("Unstarted")
    assert [s["Unstarted"] for s in rest] == [True, True] and [s["Cancelled"] for s in rest] == [False, False]
    assert [s["State"]["Error"] for s in rest] == ["stopped before it started"] * 2
    assert not (tmp_path / "results" / "1" / "output.log").exists()  # (it never ran)
