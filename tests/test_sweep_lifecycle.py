"""Sweeps in `list` and `clean` (sweep_survey.survey, through listing.survey_all): one row
per sweep, and what of an ended sweep is put away, on one server (faked strictly) and on a swarm."""
import dataclasses
import json
import types

import pytest
from test_clean import IMAGES, MARK
from test_lifecycle import ENDED, GONE, RUNNING, WORKDIR, connect, container, survey_answer, surveyed

from pystributed import clean as cleaning
from pystributed import config, jobs, lifecycle, listing, progress, sweep_survey
from pystributed.places import server_engine, swarm, swarm_service

PLAIN = types.SimpleNamespace(queues=False)  # a place that is no swarm
DONE, GOING = "sweep-20261125-101506-dddddd", "sweep-20261125-101500-eeeeee"  # ended; still running


def task_state(sweep_id, index, status, *, code=0, cancelled=False):
    """A task's saved state or container, as `container` has a run's (its folder is WORKDIR/SWEEP/INDEX)."""
    info = json.loads(container(f"{sweep_id}-{index}", status, code=code, cancelled=cancelled))
    info["Mounts"][0]["Source"] = f"{WORKDIR}/{sweep_id}/{index}"
    return json.dumps(info)


# DONE: 4 tasks in its record here; 0 succeeded, 1 failed (both put away), 2's container ended and is
# still there, 3 never ran. GOING: task 0 runs, task 1's folder is made; no record here.
SWEEPS = "\n".join([
    f"{MARK} sweeps", f"{DONE} 1764070000.0", f"{DONE}/0 1764071000.0", f"{DONE}/1 1764071000.0",
    f"{DONE}/2 1764072000.0", f"{GOING} 1764075000.0", f"{GOING}/0 1764075900.0", f"{GOING}/1 1764075990.0",
    f"{MARK} sweep_states", task_state(DONE, 0, "exited"), task_state(DONE, 1, "exited", code=1),
    f"{MARK} containers", task_state(DONE, 2, "exited"), task_state(GOING, 0, "running"), ""])
ANSWER = survey_answer() + SWEEPS


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"])


def recorded(cfg, statuses=("succeeded", "failed", "succeeded", "cancelled")):
    result = jobs.Job(DONE, [jobs.Task(i, {"x": i}, status=s) for i, s in enumerate(statuses)],
                               server="gpu-box", status="cancelled", image="reg:5000/proj:sweep",
                               started="2026-11-25T10:15:06.000+00:00", ended="2026-11-25T10:20:00.000+00:00")
    jobs.save(cfg, result)


def test_list_shows_one_row_per_sweep_with_its_tasks_states(cfg, programs):
    recorded(cfg)
    connect(programs)
    surveyed(programs, out=ANSWER)
    table = listing.list_runs(cfg)
    assert [r.run_id for r in table] == [DONE, ENDED, RUNNING, GONE, GOING]  # newest first, sweeps among runs
    done, going = table[0], table[4]
    assert done.state == "4 tasks: 2 succeeded, 1 failed, 1 not run" and not done.active
    assert (done.image, done.remote_dir, done.age) == ("reg:5000/proj:sweep", f"{WORKDIR}/{DONE}", 4000.0)
    assert done.duration == pytest.approx(60.376543)  # its tasks' first start to their last end
    assert going.state == "2 tasks: 1 running, 1 queued" and going.active and not going.container
    assert str(table).splitlines()[1].split()[:8] == [DONE, "4", "tasks:", "2", "succeeded,", "1", "failed,",
                                                      "1"]
    assert json.loads(table.to_json())["runs"][0]["tasks"] == {"0": "succeeded", "1": "failed",
                                                               "2": "succeeded"}


def test_list_offline_shows_the_sweeps_records(cfg, programs):
    recorded(cfg)
    connect(programs)
    programs.expect("server", "survey", "runs with space/$(x)", code=255)
    table = listing.list_runs(cfg)
    assert [(r.run_id, r.state) for r in table] == [
        (DONE, "4 tasks: 2 succeeded, 1 failed, 1 cancelled (last seen)")]


def test_a_young_sweep_whose_tasks_have_not_all_ended_goes_on(cfg, programs):
    sections = {"now": ["1764076000"], "workdir": [WORKDIR], "sweeps": [f"{DONE} 1764075000.0"]}
    recorded(cfg)
    assert sweep_survey.survey(cfg, PLAIN, sections)[DONE].active is False  # its record says it ended
    jobs.save(cfg, jobs.Job(DONE, [jobs.Task(0, {})], server="gpu-box", status="running"))
    found = sweep_survey.survey(cfg, PLAIN, sections)[DONE]
    assert (found.active, found.state) == (True, "1 tasks: 1 queued")  # (being built, or its driver is alive)
    found = sweep_survey.survey(cfg, PLAIN, {**sections, "sweeps": [f"{DONE} 1764060000.0"]})[DONE]
    assert (found.active, found.state) == (False, "1 tasks: 1 not run")  # an hour without a change: it ended


def test_clean_puts_an_ended_sweeps_containers_away_removes_its_folder_and_never_touches_one_going(
        cfg, programs, monkeypatch):
    monkeypatch.setattr(cleaning.registry, "digest", lambda ref: None)
    recorded(cfg)

    def planned():
        connect(programs)
        surveyed(programs, out=ANSWER)
        programs.expect("server", "images", "reg:5000/proj", "runs with space/$(x)", out=IMAGES)

    planned()
    plan = cleaning.clean(cfg, older_than=3600)
    assert [r.run_id for r in plan.running] == [RUNNING, GOING]
    assert [r.run_id for r in plan.containers] == [ENDED, DONE]
    assert [r.run_id for r in plan.folders] == [GONE, DONE]
    assert (f"  containers pystributed-{DONE}-2  (sweep {DONE}: 4 tasks: 2 succeeded, 1 failed, 1 not run; "
            "their logs and states are saved first)") in str(plan).splitlines()
    assert (f"  run folder {WORKDIR}/{DONE}  (4 tasks: 2 succeeded, 1 failed, 1 not run, "
            "last changed 1h06m ago)") in str(plan).splitlines()
    assert str(plan).splitlines()[-1] == f"Kept, still running or starting: {RUNNING}, {GOING}"
    planned()
    programs.expect("server", "finish", f"{WORKDIR}/{ENDED}", ENDED, "false", ..., out="2\n")
    surveyed(programs, ENDED)
    programs.expect("server", "finish", f"{WORKDIR}/{DONE}/2", f"{DONE}-2", "false", ..., out="0\n")
    programs.expect("server", "remove", f"{WORKDIR}/{GONE}", f"{WORKDIR}/{DONE}")
    programs.expect("server", "remove_cells", "runs with space/$(x)", f"/w/runs/.cells/{'c' * 64}")
    programs.expect("server", "docker_command", "image", "rm", "--", ...)
    assert cleaning.clean(cfg, older_than=3600, apply=True).done
    assert "reg:5000/proj:sweep" not in programs.calls[-1].words  # (not an image of the server's anyway)


SWARM = {"now": ["1764076000"], "workdir": ["/home/me/runs"],
         "sweeps": [f"{DONE} 1764070000.0", f"{DONE}/0 1764070000.0", f"{DONE}/1 1764070000.0",
                    f"{GOING} 1764075000.0", f"{GOING}/0 1764075990.0"],
         "sweep_states": [json.dumps({"Name": f"/pystributed-{DONE}-0",
                                      "State": {"Status": "exited", "ExitCode": 0}}),
                          json.dumps({"Name": f"/pystributed-{DONE}-1",
                                      "State": {"Status": "exited", "ExitCode": 1}})]}


def swarm_task(ident, run, state, *, slot=0, created="2026-11-25T10:15:00Z"):
    return json.dumps({"ID": ident, "Slot": slot, "NodeID": "n1", "CreatedAt": created,
                       "Status": {"State": state},
                       "Spec": {"ContainerSpec": {"Labels": {"pystributed.run": run}}}})


def test_on_a_swarm_a_sweeps_services_and_their_tasks_say_how_it_goes_and_clean_removes_them(programs):
    cfg = config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                      REMOTE_WORKDIR="runs", CLUSTER="swarm")
    place = swarm.Swarm(cfg)
    node = json.dumps({"ID": "n1", "Spec": {"Availability": "active"},
                       "Status": {"State": "ready", "Addr": "10.0.0.1"}})
    place._nodes = swarm_service.parse_nodes([node], user="me")
    retry = f"{DONE}-1-2"
    tasks = [swarm_task("a", DONE, "complete"), swarm_task("b", DONE, "complete", slot=1),
             swarm_task("c", retry, "complete", created="2026-11-25T10:16:00Z"),
             swarm_task("d", GOING, "running"), swarm_task("e", GOING, "pending", slot=1),
             swarm_task("f", "20261125-101502-3fa9c1", "running")]  # a single run's
    services = [f"pystributed-{DONE}", f"pystributed-{retry}", f"pystributed-{GOING}",
                "pystributed-20261125-101502-3fa9c1"]
    programs.expect("server", "swarm_tasks", out=f"{MARK} services\n" + "\n".join(services)
                    + f"\n{MARK} tasks\n" + "\n".join(tasks) + "\n")
    found = sweep_survey.survey(cfg, place, SWARM)
    done, going = found[DONE], found[GOING]
    assert (done.state, done.active, done.container) == ("2 tasks: 1 succeeded, 1 failed", False, True)
    assert done.services == [f"pystributed-{DONE}", f"pystributed-{retry}"]
    assert (going.state, going.active, going.services) == ("2 tasks: 1 running, 1 queued", True, [])
    programs.expect("server", "docker_command", "service", "rm", *done.services)
    for service in done.services:
        programs.expect("server", "swarm_put_away", service, "")
    done.put_away(cfg, place)
    assert done.put_away_line == f"  services   {', '.join(done.services)}  (sweep {DONE}: {done.state})"


def test_a_detached_sweep_on_one_server_starts_every_task_before_this_process_goes(cfg, programs):
    cfg = dataclasses.replace(cfg, MAX_CONCURRENT=2)
    result = jobs.Job(DONE, [jobs.Task(i, {"x": i}) for i in range(2)], server="gpu-box",
                      remote_dir=f"{WORKDIR}/{DONE}", image="reg:5000/proj:s", user="1000:1000")
    started = types.SimpleNamespace(steps=progress.steps_for(True), detach=True, env={})
    engine = server_engine.ServerEngine(cfg, lifecycle.place_for(cfg), result, sweep=started)
    for i in range(2):
        programs.expect("server", "rundir", "runs with space/$(x)", f"{DONE}/{i}",
                        out=f"{WORKDIR}/{DONE}/{i}\n1\n1\n")
        programs.expect("server", "start", "--detach", "--name", f"pystributed-{DONE}-{i}", ...)
    engine.start()  # no thread: none would outlive this process
    assert engine.workers == [] and result.statuses == ["running", "running"] and engine.launched == {0, 1}
