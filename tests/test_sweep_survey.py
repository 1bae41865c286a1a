"""sweep_survey.py: a sweep as `list` and `clean` see it on the server, from the survey's sections (and, on
a swarm, its services' tasks): its tasks' states, its times, and what of an ended sweep is left to put
away. (test_sweep_lifecycle.py goes through `list` and `clean`; these read the survey alone.)"""
import json
import types

import pytest
from test_lifecycle import WORKDIR, container

from pystributed import config, jobs, sweep_survey
from pystributed.places import place_for, swarm_service

SWEEP = "sweep-20261125-101502-3fa9c1"
NOW = 1764076000.0
OLD = NOW - 7200  # older than STARTING_GRACE: a sweep without news this long has ended
PLAIN = types.SimpleNamespace(queues=False)  # one server: no services to ask for


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"])


def task(index, status, *, sweep_id=SWEEP, folder=None, started="2026-11-25T10:15:03Z",
         finished="2026-11-25T10:16:00Z", **state):
    """A task's saved state or container, as the survey answers it (its folder WORKDIR/SWEEP/INDEX)."""
    finished = "0001-01-01T00:00:00Z" if status == "running" else finished  # (docker's zero time)
    info = json.loads(container(f"{sweep_id}-{index}", status, StartedAt=started, FinishedAt=finished,
                                **state))
    info["Mounts"][0]["Source"] = folder or f"{WORKDIR}/{sweep_id}/{index}"
    return json.dumps(info)


def sections(*indexes, age=OLD, states=(), containers=()):
    """The survey's sections of SWEEP: its folder and its tasks' (`indexes`), saved states, containers."""
    return {"now": [str(NOW)], "workdir": [WORKDIR],
            "sweeps": [f"{SWEEP} {age}", *(f"{SWEEP}/{i} {age}" for i in indexes)],
            "sweep_states": list(states), "containers": list(containers)}


def test_an_ended_sweeps_tasks_times_and_containers_left_in_index_order(cfg, programs):
    found = sweep_survey.survey(cfg, PLAIN, sections(
        0, 1, 2, 9, 10, 11,
        states=[task(0, "exited", started="2026-11-25T10:15:01Z"), task(1, "exited", ExitCode=1),
                task(11, "exited", ExitCode=130, cancelled=True)],
        containers=[task(10, "exited", finished="2026-11-25T10:17:30Z"), task(2, "exited"),
                    task(9, "exited")]))
    sweep = found[SWEEP]
    assert sweep.tasks == {0: "succeeded", 1: "failed", 2: "succeeded", 9: "succeeded", 10: "succeeded",
                           11: "cancelled"}
    assert sweep.state == "12 tasks: 4 succeeded, 1 failed, 1 cancelled, 6 not run" and not sweep.active
    assert sweep.duration == pytest.approx(149.0)  # the first task's start to the last one's end
    assert [t.run_id for t in sweep.leftovers] == [f"{SWEEP}-{i}" for i in (2, 9, 10)]  # 10 after 9
    assert sweep.container and sweep.remote_dir == f"{WORKDIR}/{SWEEP}" and sweep.age == 7200.0
    names = ", ".join(f"pystributed-{SWEEP}-{i}" for i in (2, 9, 10))
    assert sweep.put_away_line == (f"  containers {names}  (sweep {SWEEP}: {sweep.state}; their logs and "
                                   "states are saved first)")
    # Put away: each one's log and state saved in its folder as it is removed, in that order.
    for i in (2, 9, 10):
        programs.expect("server", "finish", f"{WORKDIR}/{SWEEP}/{i}", f"{SWEEP}-{i}", "false", ..., out="0\n")
    sweep.put_away(cfg, place_for(cfg))


def test_a_sweep_going_on_leaves_nothing_to_put_away_and_has_not_ended(cfg):
    sweep = sweep_survey.survey(cfg, PLAIN, sections(
        0, 1, containers=[task(0, "exited"), task(1, "running")]))[SWEEP]
    assert sweep.active and sweep.tasks == {0: "succeeded", 1: "running"}
    assert sweep.leftovers == [] and not sweep.container and sweep.ended is None
    assert sweep.state == "2 tasks: 1 running, 1 succeeded"


def test_a_retried_tasks_container_says_more_than_its_saved_state(cfg):
    sweep = sweep_survey.survey(cfg, PLAIN, sections(
        0, states=[task(0, "exited", ExitCode=1)], containers=[task(0, "running")]))[SWEEP]
    assert sweep.tasks == {0: "running"} and sweep.active


def test_what_is_not_this_folders_sweep_is_left_out(cfg):
    other = "sweep-20261125-101502-aaaaaa"
    found = sweep_survey.survey(cfg, PLAIN, {
        **sections(0, states=[task(0, "exited"), task("x", "exited")],
                   containers=[task(1, "running", folder=f"/elsewhere/{SWEEP}/1"),  # another REMOTE_WORKDIR's
                               task(0, "running", sweep_id=other)]),  # a sweep with no folder here
        "sweeps": [f"{SWEEP} {OLD}", f"{SWEEP}/0 {OLD}", f"20261125-101502-3fa9c1 {OLD}",
                   f"not-a-sweep/0 {OLD}"]})
    assert list(found) == [SWEEP]
    assert found[SWEEP].tasks == {0: "succeeded"} and not found[SWEEP].active


def test_a_young_sweep_with_tasks_to_come_goes_on(cfg):
    young = sweep_survey.survey(cfg, PLAIN, sections(0, 1, age=NOW - 60, states=[task(0, "exited")]))[SWEEP]
    assert young.active and young.state == "2 tasks: 1 queued, 1 succeeded"
    assert young.started is not None and young.ended is None  # it has not ended: no end yet


def test_its_record_here_gives_the_tasks_never_started_the_image_and_the_results(cfg, tmp_path):
    fetched = tmp_path / "results" / SWEEP
    fetched.mkdir(parents=True)
    jobs.save(cfg, jobs.Job(SWEEP, [jobs.Task(i, {"x": i}) for i in range(4)], server="gpu-box",
                            status="failed", image="reg:5000/proj:s", started="2026-11-25T10:15:00.000+00:00",
                            ended="2026-11-25T10:20:00.000+00:00", local_path=str(fetched)))
    sweep = sweep_survey.survey(cfg, PLAIN, sections(0, states=[task(0, "exited")]))[SWEEP]
    assert sweep.total == 4 and sweep.state == "4 tasks: 1 succeeded, 3 not run"
    assert sweep.image == "reg:5000/proj:s" and sweep.local_path == str(fetched)
    assert sweep.started.isoformat() == "2026-11-25T10:15:03+00:00"  # its tasks' start, when they say it
    alone = sweep_survey.survey(cfg, PLAIN, sections())[SWEEP]  # no task's state: its record's times
    assert (alone.started.isoformat(), alone.ended.isoformat()) == ("2026-11-25T10:15:00+00:00",
                                                                   "2026-11-25T10:20:00+00:00")


def swarm_task(ident, run, state, *, slot=0, created):
    return swarm_service.Task(ident, slot=slot, state=state, created=created, run=run)


def test_on_a_swarm_the_latest_attempt_of_each_task_says_how_it_goes(cfg):
    retry = f"{SWEEP}-1-2"  # task 1's second attempt, a service of its own
    tasks = [swarm_task("c", retry, "running", created="2026-11-25T10:16:00Z"),  # (listed in any order)
             swarm_task("a", SWEEP, "complete", created="2026-11-25T10:15:00Z"),
             swarm_task("b", SWEEP, "failed", slot=1, created="2026-11-25T10:15:00Z"),
             swarm_task("d", SWEEP, "pending", slot=2, created="2026-11-25T10:15:00Z"),
             swarm_task("e", SWEEP, "rejected", slot=3, created="2026-11-25T10:15:00Z"),
             swarm_task("f", "sweep-20261125-101502-ffffff", "running", created="2026-11-25T10:15:00Z")]
    services = [f"pystributed-{SWEEP}", f"pystributed-{retry}", "pystributed-sweep-20261125-101502-ffffff"]
    place = types.SimpleNamespace(queues=True, ours=lambda: (services, tasks))
    found = sweep_survey.survey(cfg, place, sections(0, states=[task(0, "exited")]))
    sweep = found[SWEEP]
    assert list(found) == [SWEEP]  # another sweep's services and tasks: not in this folder
    # 1: its retry runs; 2: waits for a GPU; 3: Swarm could not run it, and no state was saved.
    assert sweep.tasks == {0: "succeeded", 1: "running", 2: "queued", 3: "failed"} and sweep.total == 4
    assert sweep.active and sweep.services == [] and not sweep.container  # nothing removed while it goes


def test_offline_the_records_of_this_servers_sweeps(cfg, tmp_path):
    fetched = tmp_path / "results" / SWEEP
    fetched.mkdir(parents=True)
    statuses = ["succeeded", "failed", "queued"]
    jobs.save(cfg, jobs.Job(SWEEP, [jobs.Task(i, {}, status=s) for i, s in enumerate(statuses)],
                            server="gpu-box", image="reg:5000/proj:s", remote_dir=f"{WORKDIR}/{SWEEP}",
                            started="2026-11-25T10:15:00.000+00:00", local_path=str(fetched)))
    jobs.save(cfg, jobs.Job("sweep-20261125-101502-bbbbbb", [jobs.Task(0, {})], server="other-box"))
    [sweep] = sweep_survey.from_records(cfg, "gpu-box")
    assert (sweep.run_id, sweep.state) == (SWEEP, "3 tasks: 1 queued, 1 succeeded, 1 failed (last seen)")
    assert (sweep.total, sweep.image, sweep.remote_dir) == (3, "reg:5000/proj:s", f"{WORKDIR}/{SWEEP}")
    assert sweep.local_path == str(fetched) and sweep.ended is None
    fetched.rmdir()  # results removed here since: not shown
    assert sweep_survey.from_records(cfg, "gpu-box")[0].local_path == ""
