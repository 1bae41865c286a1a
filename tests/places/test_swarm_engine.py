"""A job's tasks on a swarm (places/swarm_engine.py), every program faked strictly: a job of N tasks,
success, failure and retry, cancel, attach after detach, and a node lost mid-job. The fetches run
inline here (in the engine they run on a pool), so the calls come in one order."""
import json
import types

import pytest
from fakes import Inline, job_engine, tar_of

from pystributed import config, jobs, progress
from pystributed.places import swarm, swarm_engine
from pystributed.places.swarm_engine import SwarmEngine

SWEEP = "sweep-20261125-101502-3fa9c1"
SERVICE = f"pystributed-{SWEEP}"
FOLDER = f"/home/me/runs/{SWEEP}"
MARK = "@@pystributed@@"


def node(ident, *, state="ready"):
    return {"ID": ident, "Description": {"Hostname": ident}, "Spec": {
        "Role": "manager" if ident == "n1" else "worker", "Availability": "active",
        "Labels": {"pystributed.ssh": f"gpu-{ident}"}}, "Status": {"State": state, "Addr": "10.0.0.1"}}


def task(ident, service, slot, node_id, state, *, created, exit_code=0):
    status = {"State": state, "ContainerStatus": {"ContainerID": f"c-{ident}", "ExitCode": exit_code}}
    return {"ID": ident, "ServiceID": service, "Slot": slot, "NodeID": node_id,
            "CreatedAt": f"2026-01-01T00:00:{created:02}Z", "Status": status}


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                       REMOTE_WORKDIR="runs", CLUSTER="swarm")


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(swarm_engine, "POLL", 0)
    monkeypatch.setattr(swarm_engine, "NODES_EVERY", 0)  # the nodes read at every look


def engine_of(cfg, n, *, retries=0):
    return job_engine(SwarmEngine, swarm.Swarm(cfg), tasks=n, cluster="swarm", folder=FOLDER, retries=retries)


ONE_NODE = (node("n1"),)


def expect_tasks(programs, services, tasks, *, nodes=ONE_NODE):
    programs.expect("server", "swarm_tasks", *services, out=f"{MARK} services\n{services[0]}\n{MARK} tasks\n"
                    + "".join(json.dumps(t) + "\n" for t in tasks))
    programs.expect("server", "swarm_nodes", out="".join(json.dumps(n) + "\n" for n in nodes))


def expect_fetch(programs, index, code, log="done\n"):
    programs.expect("server", "fetch", f"{FOLDER}/{index}", "", out=tar_of({
        "output.log": log.encode(),
        ".pystributed-state.json": json.dumps({"State": {"ExitCode": code}}).encode()}))


def expect_put_away(programs, *services, nodes=1):
    programs.expect("server", "docker_command", "service", "rm", *services)
    for service in services:
        for _ in range(nodes):
            programs.expect("server", "swarm_put_away", service, "")


def expect_the_retry_to_end(programs, index):
    """The job's two tasks and the retry of task `index` (a job of its own) ended; its folder fetched, both
    put away; the retry's name."""
    retry = f"{SERVICE}-{index}-2"
    expect_tasks(programs, [SERVICE, retry], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                              task("t1", "svc1", 1, "n1", "complete", created=2),
                                              task("t2", "svc2", 0, "n1", "complete", created=3)])
    expect_fetch(programs, index, 0)
    expect_put_away(programs, SERVICE, retry)
    return retry


def test_a_job_of_two_tasks_one_failing_once_then_retried_as_a_job_of_its_own(cfg, programs):
    engine = engine_of(cfg, 2, retries=1)
    programs.expect("server", "docker_command", "service", "create", "--with-registry-auth", "--detach",
                    "--mode", "replicated-job", "--replicas", "2", ..., out="svc1\n")
    engine.start()
    assert programs.calls[-1].stdin == b"TOKEN=s3cret\n"  # ENV and SECRETS on its stdin, not in its spec
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                       task("t1", "svc1", 1, "n1", "complete", created=2)])
    expect_fetch(programs, 0, 0)
    expect_fetch(programs, 1, 1, log="Traceback (most recent call last):\nValueError: bad\n")
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")  # the retry of task 1
    retry = expect_the_retry_to_end(programs, 1)
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "succeeded"] and job.status == "succeeded"
    assert [t.attempts for t in job.tasks] == [1, 2] and job.tasks[1].node == "gpu-n1"
    retry_args = programs.calls[5].words
    assert "PYSTRIBUTED_TASK=1" in retry_args and "PYSTRIBUTED_ATTEMPT=2" in retry_args
    assert job.services == [[SERVICE, "svc1", None], [retry, "svc2", 1]]


def test_after_an_attach_a_retry_goes_only_to_the_nodes_that_have_the_sweeps_folder(cfg, programs):
    """The nodes whose folder was made are in the sweep's record: a process that attaches later (its
    place has made nothing) keeps a retry off the others, as the one that started the sweep did."""
    engine = engine_of(cfg, 1, retries=1)
    engine.place.prepared = {"n1": FOLDER}  # made at the start; n2 could not be reached then
    both = (node("n1"), node("n2"))
    programs.expect("server", "swarm_nodes", out="".join(json.dumps(n) + "\n" for n in both))
    programs.expect("server", "docker_command", "service", "create", ..., out="svc1\n")
    engine.start()
    first = programs.calls[-1].words
    assert first[first.index("--constraint") + 1] == "node.id!=n2" and engine.job.nodes == ["n1"]
    attached = SwarmEngine(cfg, swarm.Swarm(cfg), jobs.Job.from_json(engine.job.to_json()), sweep=None)
    attached.fetches = engine.fetches
    assert attached.place.prepared == {"n1": FOLDER}
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1)], nodes=both)
    expect_fetch(programs, 0, 1)
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")
    attached.look()
    retry = programs.calls[-1].words
    assert retry[retry.index("--constraint") + 1] == "node.id!=n2"


def test_a_task_on_a_node_that_goes_down_is_retried_on_another_and_the_job_ends(cfg, programs, capsys):
    engine = engine_of(cfg, 2, retries=1)
    engine.steps = progress.steps_for(False)
    engine.job.services = [[SERVICE, "svc1", None]]
    both = (node("n1"), node("n2"))
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "running", created=1),
                                       task("t1", "svc1", 1, "n2", "running", created=2)], nodes=both)
    # n2's daemon is killed: Swarm says the node is down, and still says its task runs.
    retry = f"{SERVICE}-1-2"
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "running", created=1),
                                       task("t1", "svc1", 1, "n2", "running", created=2)],
                 nodes=(node("n1"), node("n2", state="down")))
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")
    expect_tasks(programs, [SERVICE, retry], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                              task("t1", "svc1", 1, "n2", "running", created=2),
                                              task("t2", "svc2", 0, "n1", "complete", created=3)],
                 nodes=(node("n1"), node("n2", state="down")))
    expect_fetch(programs, 0, 0)
    expect_fetch(programs, 1, 0)
    expect_put_away(programs, SERVICE, retry)  # on n1 only: n2 is gone
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "succeeded"] and job.tasks[1].node == "gpu-n1"
    said = capsys.readouterr().out
    assert "node gpu-n2 was lost (down in Swarm's view (down)); its tasks fail, and are tried again" in said
    assert f"node gpu-n2 was lost during sweep {SWEEP}: it took task(s) 1" in said


def test_without_retries_a_task_of_a_lost_node_fails_with_that_reason(cfg, programs):
    engine = engine_of(cfg, 1)
    engine.job.services = [[SERVICE, "svc1", None]]
    engine.job.nodes, engine.place.prepared = ["n1", "n2"], {"n1": FOLDER, "n2": FOLDER}
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n2", "running", created=1)],
                 nodes=(node("n1"), node("n2", state="down")))
    expect_put_away(programs, SERVICE)
    programs.expect("server", "rmdir_run", FOLDER)  # on n1, where no task ran
    job = engine.watch("stop")
    assert job.statuses == ["failed"] and job.status == "failed"
    assert job.tasks[0].error == "its node gpu-n2 was lost: down in Swarm's view (down)"
    assert job.nodes == ["n1"]  # (the record: a retry after an attach goes to n1 only)


def test_cancel_interrupts_the_job_and_fetches_what_ran(cfg, programs, monkeypatch):
    engine = engine_of(cfg, 2)
    engine.job.services = [[SERVICE, "svc1", None]]
    monkeypatch.setattr(swarm, "POLL", 0)
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "running", created=1)])  # task 1 queued
    programs.expect("server", "docker_command", "service", "update", "--detach", "--constraint-add",
                    "node.labels.pystributed.cancelled==true", SERVICE)
    programs.expect("server", "docker_command", "ps", "--quiet", "--filter",
                    f"label=com.docker.swarm.service.name={SERVICE}", out="")  # none left running
    programs.expect("server", "docker_command", "service", "rm", SERVICE)
    programs.expect("server", "swarm_put_away", SERVICE, "interrupt")
    expect_fetch(programs, 0, 130)
    job = engine.cancel()
    assert job.statuses == ["cancelled", "cancelled"] and job.status == "cancelled"
    assert job.tasks[0].fetched and not job.tasks[1].fetched


def test_cancel_leaves_a_task_that_had_ended_as_it_went_and_fetches_it(cfg, programs, monkeypatch):
    """A task that ended while no one fetched it (a detached sweep) is not cancelled by a cancel."""
    engine = engine_of(cfg, 2, retries=1)
    engine.job.tasks[0].set(error="ValueError: its first attempt's", attempts=2)
    engine.job.services = [[SERVICE, "svc1", None]]
    monkeypatch.setattr(swarm, "POLL", 0)
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                       task("t1", "svc1", 1, "n1", "running", created=2)])
    programs.expect("server", "docker_command", "service", "update", "--detach", "--constraint-add",
                    "node.labels.pystributed.cancelled==true", SERVICE)
    programs.expect("server", "docker_command", "ps", "--quiet", "--filter",
                    f"label=com.docker.swarm.service.name={SERVICE}", out="")
    programs.expect("server", "docker_command", "service", "rm", SERVICE)
    programs.expect("server", "swarm_put_away", SERVICE, "interrupt")
    expect_fetch(programs, 0, 0)
    expect_fetch(programs, 1, 130)
    job = engine.cancel()
    assert job.statuses == ["succeeded", "cancelled"] and job.status == "cancelled"
    assert all(t.fetched for t in job.tasks) and job.tasks[0].exit_code == 0 and job.tasks[0].error == ""


def test_attach_after_a_detach_fetches_what_ended_and_follows_the_rest(cfg, programs):
    engine = engine_of(cfg, 2)
    engine.job.services = [[SERVICE, "svc1", None]]
    engine.job.tasks[0].set(jobs.SUCCEEDED, node_id="n1")  # ended before the attach, not fetched yet
    programs.expect("server", "swarm_tasks", SERVICE, out=f"{MARK} services\n{SERVICE}\n{MARK} tasks\n")
    programs.expect("server", "swarm_nodes", out=json.dumps(node("n1")) + "\n")  # where task 0 ran
    expect_fetch(programs, 0, 0)
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                       task("t1", "svc1", 1, "n1", "complete", created=2)])
    expect_fetch(programs, 1, 0)
    expect_put_away(programs, SERVICE)
    job = engine.resume()
    assert job.statuses == ["succeeded", "succeeded"] and all(t.fetched for t in job.tasks)


def test_with_tasks_per_container_a_container_runs_several_each_fetched_and_retried_alone(cfg, programs):
    cfg = config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                      REMOTE_WORKDIR="runs", CLUSTER="swarm", TASKS_PER_CONTAINER=2)
    engine = engine_of(cfg, 3, retries=1)
    programs.expect("server", "docker_command", "service", "create", "--with-registry-auth", "--detach",
                    "--mode", "replicated-job", "--replicas", "2", "--max-concurrent", "2", ..., out="svc1\n")
    engine.start()
    assert "PYSTRIBUTED_TASKS_PER_CONTAINER=2" in programs.calls[-1].words and engine.job.per_container == 2
    # Slot 0 runs tasks 0 and 1, slot 1 task 2; while slot 0 runs, both of its tasks run.
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "running", created=1),
                                       task("t1", "svc1", 1, "n1", "complete", created=2)])
    expect_fetch(programs, 2, 0)
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                       task("t1", "svc1", 1, "n1", "complete", created=2)])
    # the container's tasks in one stream
    programs.expect("server", "fetch_tasks", FOLDER, "0", "1", out=tar_of({
        "0/output.log": b"Traceback (most recent call last):\nValueError: bad\n",
        "0/.pystributed-state.json": json.dumps({"State": {"ExitCode": 1}}).encode(),
        "1/output.log": b"done\n",
        "1/.pystributed-state.json": json.dumps({"State": {"ExitCode": 0}}).encode()}))
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")  # task 0 again, alone
    expect_the_retry_to_end(programs, 0)
    job = engine.watch("stop")
    assert job.statuses == ["succeeded"] * 3 and [t.attempts for t in job.tasks] == [2, 1, 1]
    retry_args = programs.calls[7].words
    assert "PYSTRIBUTED_TASK=0" in retry_args and not any("TASKS_PER_CONTAINER" in w for w in retry_args)
    local = engine.local
    assert (local / "1" / "output.log").read_text() == (local / "0" / "output.log").read_text() == "done\n"
    # (the stream's folder went)
    assert sorted(p.name for p in local.iterdir() if p.name.startswith(".")) == []


def test_the_logs_of_a_task_that_shares_a_running_container_are_its_own_log_file(cfg, programs):
    cfg = config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                      REMOTE_WORKDIR="runs", CLUSTER="swarm", TASKS_PER_CONTAINER=2)
    engine = engine_of(cfg, 2)
    engine.job.services, engine.job.per_container = [[SERVICE, "svc1", None]], 2
    programs.expect("server", "swarm_tasks", SERVICE, out=f"{MARK} services\n{SERVICE}\n{MARK} tasks\n"
                    + json.dumps(task("t0", "svc1", 0, "n1", "running", created=1)) + "\n")
    programs.expect("server", "swarm_nodes", out=json.dumps(node("n1")) + "\n")
    programs.expect("server", "logs", f"{FOLDER}/1", "-", "", stdout="task 1 so far\n")  # not the container's
    out = []
    engine.logs(engine.job.tasks[1], out.append, out.append)
    assert "".join(out) == "task 1 so far\n"


def test_a_containers_tasks_that_a_stop_kept_from_starting_run_again_without_using_a_retry(programs):
    """A container of two tasks stopped (`docker stop`, a drained node) while its first ran: that one
    failed; the second never started, and runs again as a job of its own, though --retries is 0."""
    cfg = config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                      REMOTE_WORKDIR="runs", CLUSTER="swarm", TASKS_PER_CONTAINER=2)
    engine = engine_of(cfg, 2)
    engine.job.services, engine.job.per_container = [[SERVICE, "svc1", None]], 2
    expect_tasks(programs, [SERVICE], [task("t0", "svc1", 0, "n1", "complete", created=1)])
    unstarted = {"State": {"ExitCode": 143, "Error": "stopped before it started"}, "Unstarted": True}
    programs.expect("server", "fetch_tasks", FOLDER, "0", "1", out=tar_of({
        "0/output.log": b"Terminated\n",
        "0/.pystributed-state.json": json.dumps({"State": {"ExitCode": 143}}).encode(),
        "1/.pystributed-state.json": json.dumps(unstarted).encode()}))
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")  # task 1 again, alone
    retry = f"{SERVICE}-1-2"
    expect_tasks(programs, [SERVICE, retry], [task("t0", "svc1", 0, "n1", "complete", created=1),
                                              task("t2", "svc2", 0, "n1", "complete", created=3)])
    expect_fetch(programs, 1, 0)
    expect_put_away(programs, SERVICE, retry)
    job = engine.watch("stop")
    assert job.statuses == ["failed", "succeeded"] and job.tasks[1].requeued == 1
    assert "PYSTRIBUTED_TASK=1" in programs.calls[3].words


RUN = "20261125-101502-3fa9c1"
RUN_FOLDER = f"/home/me/runs/{RUN}"


def run_engine(cfg):
    """A run: a job of one task, its id and folders the run's (sweep.run_one makes it so)."""
    job = jobs.Job(RUN, [jobs.Task(0, {})], single=True, remote_dir=RUN_FOLDER, image="reg:5000/proj:s",
                   user="1000:1000")
    engine = SwarmEngine(cfg, swarm.Swarm(cfg), job,
                         sweep=types.SimpleNamespace(steps=progress.steps_for(True), env={"A": "1"}))
    engine.fetches = Inline()
    return engine


def test_a_run_is_a_job_of_one_task_whose_folder_is_the_runs_and_its_exit_code_the_cells(cfg, programs):
    engine = run_engine(cfg)
    programs.expect("server", "docker_command", "service", "create", "--with-registry-auth", "--detach",
                    "--mode", "replicated-job", "--replicas", "1", ..., out="svc1\n")
    engine.start()
    words = programs.calls[-1].words
    assert "PYSTRIBUTED_TASK_FOLDERS=1" not in words and f"PYSTRIBUTED_RUN_ID={RUN}" in words
    assert not any("PYSTRIBUTED_SWEEP_ID" in word for word in words)
    service = f"pystributed-{RUN}"
    programs.expect("server", "swarm_tasks", service, out=f"{MARK} services\n{service}\n{MARK} tasks\n"
                    + json.dumps(task("t0", "svc1", 0, "n1", "complete", created=1)) + "\n")
    programs.expect("server", "swarm_nodes", out=json.dumps(node("n1")) + "\n")
    programs.expect("server", "fetch", RUN_FOLDER, "", out=tar_of({  # the run's folder, no 0/ below it
        "output.log": b"hi\n", ".pystributed-state.json": json.dumps({"State": {"ExitCode": 3}}).encode()}))
    expect_put_away(programs, service)
    job = engine.watch("stop")
    assert (job.tasks[0].status, job.tasks[0].exit_code) == ("failed", 3)
    assert (engine.local / "output.log").read_text() == "hi\n" and engine.local.name == RUN


def test_a_run_whose_node_goes_down_fails_saying_so_instead_of_waiting_for_ever(cfg, programs):
    """Swarm goes on saying the task of a down node runs: the run's job looks at the nodes too."""
    engine = run_engine(cfg)
    service = f"pystributed-{RUN}"
    engine.job.services = [[service, "svc1", None]]
    engine.job.nodes, engine.place.prepared = ["n1", "n2"], {"n1": RUN_FOLDER, "n2": RUN_FOLDER}
    programs.expect("server", "swarm_tasks", service, out=f"{MARK} services\n{service}\n{MARK} tasks\n"
                    + json.dumps(task("t0", "svc1", 0, "n2", "running", created=1)) + "\n")
    programs.expect("server", "swarm_nodes", out="".join(json.dumps(n) + "\n"
                                                         for n in (node("n1"), node("n2", state="down"))))
    expect_put_away(programs, service)
    programs.expect("server", "rmdir_run", RUN_FOLDER)  # on n1, where it did not run
    job = engine.watch("stop")
    assert job.statuses == ["failed"]
    assert job.tasks[0].error == "its node gpu-n2 was lost: down in Swarm's view (down)"
