"""A job's tasks on one server (places/server_engine.py), every program faked strictly: start, success,
failure, retry, detach and attach, interrupt (stop or detach), cancel. MAX_CONCURRENT is 1 where
workers run, so the calls come in one order."""
import json
import types
from pathlib import Path

import pytest
from fakes import tar_of

from pystributed import config, jobs, progress
from pystributed.errors import StepError
from pystributed.places import ssh
from pystributed.places.server_engine import ServerEngine

SWEEP = "sweep-20261125-101502-3fa9c1"
FOLDER = f"/home/me/runs/{SWEEP}"
STATE = {"State": {"ExitCode": 0, "StartedAt": "2026-11-25T10:15:03.000000000Z",
                   "FinishedAt": "2026-11-25T10:15:05.500000000Z"}}


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs", MAX_CONCURRENT=1)


def job_of(n, *, retries=0, statuses=None):
    tasks = [jobs.Task(i, {"x": i}, status=(statuses or {}).get(i, jobs.QUEUED)) for i in range(n)]
    return jobs.Job(SWEEP, tasks, server="gpu-box", remote_dir=FOLDER, image="reg:5000/proj:s",
                    user="1000:1000", retries=retries)


def engine_of(cfg, job, *, detach=False):
    started = types.SimpleNamespace(steps=progress.steps_for(True), detach=detach, env={"TOKEN": "s3cret"})
    return ServerEngine(cfg, ssh.Ssh(cfg), job, sweep=started)


def expect_folder(programs, index):
    programs.expect("server", "rundir", "runs", f"{SWEEP}/{index}", out=f"{FOLDER}/{index}\n1000\n1000\n")


def expect_start(programs, index):
    programs.expect("server", "start", "--detach", "--name", f"pystributed-{SWEEP}-{index}", ...)


def expect_finish(programs, index, code, *, cancelled=False):
    programs.expect("server", "finish", f"{FOLDER}/{index}", f"{SWEEP}-{index}",
                    "true" if cancelled else "false", ..., out=f"{code}\n")


def expect_fetch(programs, index, code, log="done\n"):
    state = {**STATE, "State": {**STATE["State"], "ExitCode": code}}
    programs.expect("server", "fetch", f"{FOLDER}/{index}", "", out=tar_of({
        "output.log": log.encode(), ".pystributed-state.json": json.dumps(state).encode()}))


def saved(cfg):
    return json.loads((Path(cfg.LOCAL_RESULTS_DIR) / jobs.INDEX / f"{SWEEP}.json").read_text())


def expect_one_attempt(programs, index, code):
    """A task's folder made, its container started once and put away with `code`, its folder fetched."""
    expect_folder(programs, index)
    expect_start(programs, index)
    expect_finish(programs, index, code)
    expect_fetch(programs, index, code)


TRACEBACK = ("Traceback (most recent call last):\n  File \"user_code.py\", line 1, in <module>\n"
             "ValueError: bad\n")


def test_tasks_succeed_fail_and_are_retried_one_at_a_time(cfg, programs):
    job = job_of(2, retries=1)
    engine = engine_of(cfg, job)
    expect_one_attempt(programs, 0, 0)
    expect_folder(programs, 1)
    expect_start(programs, 1)
    expect_finish(programs, 1, 1)
    expect_start(programs, 1)  # the retry: the same container name, the same folder
    expect_finish(programs, 1, 1)
    expect_fetch(programs, 1, 1, log=TRACEBACK)
    assert engine.go(detach=False, on_interrupt="stop") is job
    assert job.statuses == ["succeeded", "failed"] and job.status == "failed"
    assert [t.attempts for t in job.tasks] == [1, 2] and job.tasks[1].exit_code == 1
    assert job.tasks[1].error.startswith("ValueError: bad\n")
    assert job.tasks[0].duration == pytest.approx(2.5)  # the container's own times
    start = programs.calls[1]
    assert b"TOKEN=s3cret" in start.stdin and "s3cret" not in " ".join(start.words)  # secrets only on stdin
    assert "PYSTRIBUTED_TASK=0" in start.words and "PYSTRIBUTED_ATTEMPT=1" in start.words
    assert "PYSTRIBUTED_ATTEMPT=2" in programs.calls[7].words
    record = saved(cfg)
    assert [t["status"] for t in record["tasks"]] == ["succeeded", "failed"] and record["status"] == "failed"
    assert (Path(job.local_path) / "1" / "output.log").read_text() == TRACEBACK


def test_detach_starts_every_task_now_and_attach_puts_them_away_later(cfg, programs):
    job = job_of(2)
    engine = engine_of(cfg, job, detach=True)
    for index in (0, 1):
        expect_folder(programs, index)
        expect_start(programs, index)
    engine.go(detach=True, on_interrupt="stop")
    assert engine.workers == [] and job.statuses == ["running", "running"] and job.status == "detached"
    assert saved(cfg)["status"] == "detached"
    # Task 0 was put away by another process meanwhile (its record says so); attach looks after task 1.
    again = jobs.load(cfg, SWEEP)
    again.tasks[0].set(jobs.SUCCEEDED)
    later = ServerEngine(cfg, ssh.Ssh(cfg), again, quiet=True)
    assert later.launched == {1} and later.goes_on_alone()
    expect_finish(programs, 1, 0)
    expect_fetch(programs, 1, 0)
    later.resume()
    assert again.statuses == ["succeeded", "succeeded"] and again.status == "succeeded"


def test_an_interrupt_with_detach_leaves_started_tasks_going(cfg, programs, monkeypatch):
    job = job_of(2, statuses={0: jobs.RUNNING, 1: jobs.RUNNING})
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.watch("detach")  # nothing stopped: no call expected
    assert job.status == "detached" and engine.stopping.is_set()  # its workers leave the tasks as they are


def test_an_interrupt_with_tasks_not_started_yet_stops_those_that_run(cfg, programs, monkeypatch):
    job = job_of(2, statuses={0: jobs.RUNNING})
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    # only this process would start it: "detach" cannot leave it to the server
    engine.queue.append(job.tasks[1])

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "wait", interrupted)
    programs.expect("server", "stop", f"{SWEEP}-0")
    expect_finish(programs, 0, 130, cancelled=True)
    expect_fetch(programs, 0, 130)
    with pytest.raises(KeyboardInterrupt):
        engine.watch("detach")
    assert job.statuses == ["cancelled", "cancelled"] and job.status == "cancelled"
    assert job.tasks[0].exit_code == 130 and job.tasks[0].fetched


def test_cancel_stops_every_running_task_then_puts_each_away(cfg, programs):
    job = job_of(3, statuses={0: jobs.SUCCEEDED, 1: jobs.RUNNING, 2: jobs.RUNNING})
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    for index in (1, 2):
        programs.expect("server", "stop", f"{SWEEP}-{index}")
    for index in (1, 2):
        expect_finish(programs, index, 130, cancelled=True)
        expect_fetch(programs, index, 130)
    assert engine.cancel() is job
    assert job.statuses == ["succeeded", "cancelled", "cancelled"] and job.status == "cancelled"
    assert saved(cfg)["status"] == "cancelled"


def test_cancel_leaves_a_task_that_had_failed_by_itself_failed(cfg, programs):
    """A detached sweep's task that failed before the cancel keeps its failure (and traceback)."""
    job = job_of(2, statuses={0: jobs.RUNNING, 1: jobs.RUNNING})
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    for index in (0, 1):
        programs.expect("server", "stop", f"{SWEEP}-{index}")
    expect_finish(programs, 0, 1, cancelled=True)  # it had ended: the stop found nothing to stop
    expect_fetch(programs, 0, 1, log="Traceback (most recent call last):\nValueError: bad\n")
    expect_finish(programs, 1, 137, cancelled=True)  # docker stop killed it
    expect_fetch(programs, 1, 137)
    engine.cancel()
    assert job.statuses == ["failed", "cancelled"] and job.tasks[0].error.startswith("ValueError: bad")


def test_the_record_is_saved_once_per_flush_whatever_the_tasks_that_changed(cfg, monkeypatch):
    job = job_of(3).bind(cfg)
    job.save()
    writes = []
    monkeypatch.setattr(jobs.record, "write_atomically", lambda path, text: writes.append(text))
    for task in job.tasks:
        task.set(jobs.RUNNING, node="gpu-box")
    assert writes == []
    job.flush()
    job.flush()  # nothing changed since
    assert len(writes) == 1 and [t["status"] for t in json.loads(writes[0])["tasks"]] == ["running"] * 3


def test_an_interrupt_while_attached_leaves_the_tasks_going_without_a_thread_traceback(cfg, programs):
    """Ctrl-C in a terminal reaches our ssh commands too: the thread waiting for a task sees its command
    fail, and must leave the task as it is (it goes on), not report that as the task's failure."""
    job = job_of(1, statuses={0: jobs.RUNNING})
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    programs.expect("server", "finish", f"{FOLDER}/0", f"{SWEEP}-0", "false", ..., code=130)
    engine.stopping.set()  # as detached() does when the interrupt leaves the sweep going
    engine.put_away(job.tasks[0])
    assert job.statuses == ["running"]


def test_a_cancel_from_another_process_stops_retries_and_what_waits(cfg, programs):
    """`cancel SWEEP` in a shell interrupts the running cell (exit code 130): the process following the
    sweep neither tries it again nor starts the tasks still waiting."""
    job = job_of(2, retries=2)
    engine = engine_of(cfg, job)
    expect_one_attempt(programs, 0, 130)
    engine.go(detach=False, on_interrupt="stop")
    assert job.statuses == ["cancelled", "cancelled"] and job.tasks[0].attempts == 1


def test_attach_tries_a_failed_task_again_while_retries_allow(cfg, programs):
    job = job_of(1, retries=1, statuses={0: jobs.RUNNING})
    job.tasks[0].attempts = 1
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    expect_finish(programs, 0, 1)
    expect_start(programs, 0)
    expect_finish(programs, 0, 0)
    expect_fetch(programs, 0, 0)
    engine.put_away(job.tasks[0])
    assert job.statuses == ["succeeded"] and job.tasks[0].attempts == 2


def expect_fetch_fails(programs, index):
    programs.expect("server", "fetch", f"{FOLDER}/{index}", "", code=255, stderr="Connection reset by peer\n")


def test_a_task_whose_results_did_not_come_back_fails_and_is_fetched_again_later(cfg, programs):
    job = job_of(1)
    engine = engine_of(cfg, job)
    expect_folder(programs, 0)
    expect_start(programs, 0)
    expect_finish(programs, 0, 0)
    expect_fetch_fails(programs, 0)
    engine.go(detach=False, on_interrupt="stop")
    assert job.statuses == ["failed"] and not job.ok and job.status == "failed"
    error = job.tasks[0].error
    assert "its results could not be fetched" in error and "Connection reset by peer" in error
    assert f"{FOLDER}/0 on gpu-box" in error and f"fetch {SWEEP}" in error
    # Later, `fetch` copies it: the task is as its state says.
    again = jobs.load(cfg, SWEEP)
    expect_fetch(programs, 0, 0)
    ServerEngine(cfg, ssh.Ssh(cfg), again, quiet=True).fetch_now()
    assert again.statuses == ["succeeded"] and again.ok and again.tasks[0].fetched


def test_fetch_copies_what_ended_and_waits_for_nothing(cfg, programs):
    job = job_of(2, statuses={0: jobs.FAILED, 1: jobs.RUNNING})
    job.tasks[0].node = job.tasks[1].node = "gpu-box"
    job.bind(cfg).save()
    expect_fetch(programs, 0, 1, log=TRACEBACK)  # no finish (a wait) for task 1, which goes on
    ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True).fetch_now()
    assert job.statuses == ["failed", "running"] and job.tasks[0].fetched
    assert job.tasks[0].error.startswith("ValueError: bad")


def test_attach_after_the_driving_process_died_starts_the_tasks_that_waited(cfg, programs):
    """The process running a sweep of 4, one at a time, was killed: task 0 had ended, task 1 ran, 2 and 3
    waited. An attach from a new process puts task 1 away, then runs 2 and 3 (it used to fail them)."""
    job = job_of(4, statuses={0: jobs.SUCCEEDED, 1: jobs.RUNNING})
    job.tasks[0].fetched = True
    job.tasks[1].attempts = 1
    job.bind(cfg).save()
    again = jobs.load(cfg, SWEEP)
    assert again.claim()
    expect_finish(programs, 1, 0)
    expect_fetch(programs, 1, 0)
    for index in (2, 3):
        expect_one_attempt(programs, index, 0)
    ServerEngine(cfg, ssh.Ssh(cfg), again, quiet=True).resume()
    assert again.statuses == ["succeeded"] * 4 and again.status == "succeeded"
    assert [t.attempts for t in again.tasks[1:]] == [1, 1, 1]


def test_a_task_whose_container_never_started_is_started_on_attach(cfg, programs):
    """Its process ended between marking it starting and `docker run`: no container, no state."""
    job = job_of(1, statuses={0: jobs.STARTING})
    job.tasks[0].attempts = 1
    engine = ServerEngine(cfg, ssh.Ssh(cfg), job, quiet=True)
    programs.expect("server", "finish", f"{FOLDER}/0", f"{SWEEP}-0", "false", ..., out="absent\n")
    expect_one_attempt(programs, 0, 0)
    engine.resume()
    assert job.statuses == ["succeeded"] and job.tasks[0].attempts == 1


def test_a_run_whose_container_never_started_says_so(cfg, programs):
    programs.expect("server", "finish", f"{FOLDER}/0", f"{SWEEP}-0", "false", ..., out="absent\n")
    with pytest.raises(StepError,
                       match="no container pystributed-.* on gpu-box, and no state .* never started"):
        ssh.Ssh(cfg).finish(f"{FOLDER}/0", f"{SWEEP}-0")
