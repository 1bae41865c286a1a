"""listing.py: `list` shows runs and sweeps together, newest first in the order they started, from one
survey of the server (faked strictly, tests/fakes.py), or from the local records, marked offline, when
the server cannot be reached."""
import datetime

import pytest
from test_lifecycle import WORKDIR, connect, container, surveyed
from test_sweep_lifecycle import task_state

from pystributed import config, jobs, listing, results, sweep_survey
from pystributed.places import server

MARK = server.MARK
# Three starts within one second, in this order; the ids' random parts sort the other way.
EARLY, SWEEP, LATE = "20261125-101502-ffffff", "sweep-20261125-101502-888888", "20261125-101502-000000"
STARTED = {EARLY: "2026-11-25T10:15:02.100", SWEEP: "2026-11-25T10:15:02.500",
           LATE: "2026-11-25T10:15:02.900"}
BUILDING = "20261125-101502-777777"  # no container yet: its record's start (10:15:02.700) places it
# A run folder alone (no state, no record): its id's clock places it. That clock is local time, so the id
# is made from 10:15:01 UTC as this machine's clock shows it.
ALONE = datetime.datetime(2026, 11, 25, 10, 15, 1, tzinfo=datetime.timezone.utc).astimezone().strftime(
    "%Y%m%d-%H%M%S-") + "aaaaaa"


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"])


def answer():
    def state(run_id):
        return container(run_id, "exited", StartedAt=STARTED[run_id] + "Z", FinishedAt="2026-11-25T10:16:00Z")

    sweep_task = task_state(SWEEP, 0, "exited").replace("2026-11-25T10:15:03.123456789Z",
                                                        STARTED[SWEEP] + "Z")
    return "\n".join([
        f"{MARK} now", "1764076000",
        f"{MARK} workdir", WORKDIR,
        f"{MARK} folders", f"{EARLY} 1764075000.0", f"{LATE} 1764075000.0", f"{BUILDING} 1764075990.0",
        f"{ALONE} 1764060000.0",
        f"{MARK} states", state(EARLY), state(LATE),
        f"{MARK} sweeps", f"{SWEEP} 1764075000.0", f"{SWEEP}/0 1764075000.0",
        f"{MARK} sweep_states", sweep_task,
        "",
    ])


def utc(text):
    return datetime.datetime.fromisoformat(text + "+00:00")


def test_runs_and_sweeps_of_one_second_are_listed_in_the_order_they_started(cfg, programs):
    results.save_record("results", results.RunResult(BUILDING, status="starting", server="gpu-box",
                                             started="2026-11-25T10:15:02.700+00:00"))
    connect(programs)
    surveyed(programs, out=answer())
    table = listing.list_runs(cfg)
    assert [run.run_id for run in table] == [LATE, BUILDING, SWEEP, EARLY, ALONE] and not table.offline
    assert [run.started for run in table] == [utc(STARTED[LATE]), utc("2026-11-25T10:15:02.700"),
                                              utc(STARTED[SWEEP]), utc(STARTED[EARLY]), None]
    assert table[1].state == "no container (starting?)" and table[2].state == "1 tasks: 1 succeeded"
    assert [line.split()[0] for line in str(table).splitlines()[1:]] == [LATE, BUILDING, SWEEP, EARLY, ALONE]


def test_one_survey_command_answers_for_the_runs_and_the_sweeps(cfg, programs):
    surveyed(programs, out=answer())
    found = listing.survey_all(cfg, listing.place_for(cfg))
    assert sorted(found) == sorted([EARLY, LATE, BUILDING, ALONE, SWEEP]) and len(programs.calls) == 1
    assert isinstance(found[SWEEP], sweep_survey.SweepState) and found[SWEEP].tasks == {0: "succeeded"}


def test_offline_the_records_of_this_server_are_listed_in_the_order_they_started(cfg, programs, tmp_path):
    fetched = tmp_path / "results" / EARLY
    fetched.mkdir(parents=True)
    for run_id, where in ((EARLY, "gpu-box"), (LATE, "gpu-box"), (BUILDING, "other-box")):
        results.save_record("results", results.RunResult(
            run_id, status="succeeded", exit_code=0, server=where,
            started=STARTED.get(run_id, "") + "+00:00",
            ended="2026-11-25T10:16:00.000+00:00", image="reg:5000/proj:1",
            local_path=fetched if run_id == EARLY else tmp_path / "gone"))
    jobs.save(cfg, jobs.Job(SWEEP, [jobs.Task(0, {"x": 0}, status="failed")], server="gpu-box",
                            status="failed", started=STARTED[SWEEP] + "+00:00"))
    connect(programs)
    programs.expect("server", "survey", "runs with space/$(x)", code=255,
                    stderr="ssh: connect: No route to host")
    table = listing.list_runs(cfg)
    assert table.offline.startswith("gpu-box: status failed: ")
    assert [(run.run_id, run.state) for run in table] == [
        (LATE, "succeeded (last seen)"), (SWEEP, "1 tasks: 1 failed (last seen)"),
        (EARLY, "succeeded (last seen)")]
    assert [run.local_path for run in table] == ["", "", str(fetched)]  # only results that are still here
    assert table[0].started == utc(STARTED[LATE]) and table[0].duration == pytest.approx(57.1)
    assert table[0].image == "reg:5000/proj:1" and table[0].exit_code == 0
