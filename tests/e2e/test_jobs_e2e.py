"""A sweep is a job of N tasks, and its commands after the start are the same on every place: here on
one server (the sandbox), interrupted and attached again, from a shell and from a kernel. (The swarm's
are in test_swarm_e2e.py, with its rig.)"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import interrupted_attach, own_ids, pystributed
from kernel import Kernel, error_of, stream_text

pytestmark = pytest.mark.usefixtures("sandbox")

HOLD = ("import os, time\ntime.sleep(hold)\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'done.txt'), 'w').write(str(hold))\n")


def running_tasks(sandbox, sweep_id):
    return sandbox.docker("remote", "ps", "--quiet", "--filter",
                          f"name=pystributed-{sweep_id}-").stdout.split()


def test_an_interrupted_attach_leaves_the_sweep_going_and_a_later_attach_brings_every_task(sandbox, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_MAX_CONCURRENT", "3")  # all at once: the sweep goes on without us
    (tmp_path / "hold.py").write_text(HOLD)
    sweep_id = pystributed("sweep", "hold.py", "--param", "hold=8,9,10", "--detach", "-q").stdout.strip()
    code, out, err = interrupted_attach(sweep_id, after=3)
    assert code == 130, out + err
    assert "Traceback" not in err, err
    assert len(running_tasks(sandbox, sweep_id)) == 3  # it goes on
    record = json.loads((tmp_path / "results" / ".sweeps" / f"{sweep_id}.json").read_text())
    assert record["status"] == "detached"
    done = pystributed("attach", sweep_id, timeout=120)
    folder = tmp_path / "results" / sweep_id
    assert [(folder / str(i) / "done.txt").read_text() for i in range(3)] == ["8", "9", "10"], done.stdout
    assert json.loads((folder / "sweep.json").read_text())["status"] == "succeeded"
    assert running_tasks(sandbox, sweep_id) == []
    assert sandbox.docker("remote", "ps", "-aq", "--filter", f"name=pystributed-{sweep_id}-").stdout == ""


def test_a_kernel_interrupt_with_on_interrupt_detach_leaves_no_traceback_and_attach_brings_it_all(
        sandbox, tmp_path):
    detached_by_an_interrupt_then_attached(tmp_path, lambda: running(sandbox, tmp_path))


def detached_by_an_interrupt_then_attached(tmp_path, is_running):
    """`%%remote --sweep hold=6,7 --out hold` in a real kernel, with ON_INTERRUPT = "detach", interrupted once
    a task runs (`is_running()`): our message, not our stack, and the sweep goes on; runner.attach in the same
    kernel then brings both tasks' folders and values. (test_swarm_e2e.py runs it on the swarm.)"""
    (tmp_path / "config.py").write_text("ON_INTERRUPT = 'detach'\nMAX_CONCURRENT = 2\n")
    kernel = Kernel(tmp_path)  # (with the place's variables, set by its fixture)
    try:
        kernel.execute("import pystributed.main as runner")
        started = time.time()

        def interrupt_once_running(msg):
            if time.time() - started > 4 and not interrupt_once_running.done and is_running():
                interrupt_once_running.done = True
                kernel.interrupt()
        interrupt_once_running.done = False
        messages, reply = kernel.execute("%%remote --sweep hold=6,7 --out hold\n" + HOLD, timeout=180,
                                         on_message=interrupt_once_running)
        assert interrupt_once_running.done, stream_text(messages)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        shown = "\n".join(reply["traceback"])
        assert "pystributed/" not in shown and "File " not in shown, shown  # our message, not our stack
        said = stream_text(messages)
        assert " goes on on " in said and "runner.attach(" in said, said
        sweep_id = said.split("Sweep ", 1)[1].split()[0]
        messages, reply = kernel.execute(
            f"r = runner.attach({sweep_id!r}, quiet=True)\nprint(r.statuses, hold)", timeout=120)
        assert reply["status"] == "ok", error_of(messages)
        attached = stream_text(messages)
        assert attached.strip().endswith("['succeeded', 'succeeded'] [6, 7]"), attached
    finally:
        kernel.close()
    folder = tmp_path / "results" / sweep_id
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]


def running(sandbox, folder):
    """Whether a task of a sweep started from `folder` runs (not any sweep's: the engine is shared)."""
    sweeps = [sweep_id for sweep_id in own_ids(folder) if sweep_id.startswith("sweep-")]
    return any(running_tasks(sandbox, sweep_id) for sweep_id in sweeps)


def test_the_sweep_record_is_saved_as_tasks_change(sandbox, tmp_path, monkeypatch):
    """Another process sees what this one saw: the record follows each task's state."""
    monkeypatch.setenv("PYSTRIBUTED_MAX_CONCURRENT", "1")
    (tmp_path / "hold.py").write_text(HOLD)
    proc = subprocess.Popen([sys.executable, "-m", "pystributed", "sweep", "hold.py", "--param", "hold=3,3",
                             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        for path in Path(tmp_path, "results", ".sweeps").glob("sweep-*.json"):
            # (never half written: it is replaced whole)
            seen.add(tuple(t["status"] for t in json.loads(path.read_text())["tasks"]))
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert ("running", "queued") in seen and ("succeeded", "running") in seen, seen


def test_a_sweep_whose_process_was_killed_is_finished_by_attach_and_two_attaches_start_nothing_twice(
        sandbox, tmp_path, monkeypatch):
    """A sweep of 4 on one server, 1 at a time; the process running it is killed (a kernel that died)
    while tasks wait. Two attaches from new processes, at once: one drives (puts away the task that
    ran, starts the 2 that waited), the other shows it; every task ran once, all 4 folders land."""
    monkeypatch.setenv("PYSTRIBUTED_MAX_CONCURRENT", "1")
    (tmp_path / "hold.py").write_text(HOLD)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "pystributed", "sweep", "hold.py", "--param",
                             "hold=0,3,1,1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # killed once task 1 runs (task 0 ended, 2 and 3 wait)
        found = list((tmp_path / "results" / ".sweeps").glob("sweep-*.json"))
        record = json.loads(found[0].read_text()) if found else {"tasks": []}
        if [t["status"] for t in record["tasks"]][:2] == ["succeeded", "running"]:
            break
        time.sleep(0.2)
    proc.kill()
    proc.communicate()
    sweep_id = found[0].stem
    attaches = [subprocess.Popen([sys.executable, "-m", "pystributed", "attach", sweep_id],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [a.communicate(timeout=180) for a in attaches]
    assert [a.returncode for a in attaches] == [0, 0], outs
    folder = tmp_path / "results" / sweep_id
    assert [(folder / str(i) / "done.txt").read_text() for i in range(4)] == ["0", "3", "1", "1"]
    tasks = json.loads((folder / "sweep.json").read_text())["tasks"]
    assert [t["status"] for t in tasks] == ["succeeded"] * 4 and [t["attempts"] for t in tasks] == [1] * 4
    for index in range(4):
        events = sandbox.container_events("remote", f"{sweep_id}-{index}", started)
        assert events.count("start") == 1, (index, events)
