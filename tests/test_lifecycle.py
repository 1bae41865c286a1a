"""Runs after they started: what status, logs, wait, fetch, cancel, attach and list ask the server
(faked strictly, tests/fakes.py), and how its survey is read."""
import dataclasses
import datetime
import json

import pytest
from fakes import tar_of

from pystributed import config, lifecycle, listing, results
from pystributed.errors import PystributedError, StepError
from pystributed.places import server

WORKDIR = "/home/me/runs with space/$(x)"
GONE, RUNNING, ELSEWHERE = "20261125-101502-3fa9c1", "20261125-101503-aaaaaa", "20261125-101504-bbbbbb"
ENDED = "20261125-101505-cccccc"  # its container ended and is still there


def container(run_id, status, *, code=0, folder=WORKDIR, cancelled=False, **state):
    return json.dumps({"Cancelled": cancelled, "Name": f"/pystributed-{run_id}",
                       "Image": f"reg:5000/proj:{run_id[-6:]}",
                       "State": {"Status": status, "ExitCode": code,
                                 "StartedAt": "2026-11-25T10:15:03.123456789Z",
                                 "FinishedAt": "0001-01-01T00:00:00Z" if status == "running" else
                                 "2026-11-25T10:16:03.5Z", **state},
                       "Mounts": [{"Source": f"{folder}/{run_id}", "Destination": "/results"}]})


def survey_answer(*, containers=None):
    if containers is None:
        containers = (container(RUNNING, "running"), container(ENDED, "exited", code=2))
    mark = server.MARK
    return "\n".join([
        f"{mark} now", "1764076000",
        f"{mark} workdir", WORKDIR,
        f"{mark} folders", f"{GONE} 1764072000.5", f"{RUNNING} 1764075990.0", f"{ENDED} 1764075000.0",
        "not-a-run 1764070000",
        f"{mark} logs", f"./{GONE}",
        f"{mark} states", container(GONE, "exited", code=130, cancelled=True),
        f"{mark} containers", *containers,
        container(ELSEWHERE, "exited", folder="/elsewhere"),  # another REMOTE_WORKDIR's run
        "",
    ])


SURVEY = survey_answer()


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"])


def connect(programs):
    """The user's ssh config multiplexes already: no master of ours."""
    programs.expect("ssh", "-G", "-F", "/cfg", "--", "gpu-box",
                    out="controlmaster auto\ncontrolpath ~/.ssh/%C\n")


def surveyed(programs, *run_id, out=SURVEY):
    programs.expect("server", "survey", "runs with space/$(x)", *run_id, out=out)


def test_one_command_surveys_the_run_folders_and_the_containers(cfg, programs):
    surveyed(programs)
    runs = lifecycle.survey(cfg, lifecycle.place_for(cfg))
    assert programs.calls[0].step == "status"
    assert sorted(runs) == [GONE, RUNNING, ENDED]  # not the other folder's run, not a folder that is no run
    gone, running, ended = runs[GONE], runs[RUNNING], runs[ENDED]
    assert (gone.state, gone.exit_code, gone.container, gone.active) == ("cancelled", 130, False, False)
    assert gone.remote_dir == f"{WORKDIR}/{GONE}" and gone.age == pytest.approx(3999.5)
    assert gone.duration == pytest.approx(60.376543) and gone.image == f"reg:5000/proj:{GONE[-6:]}"
    assert (running.state, running.container, running.active, running.ended) == ("running", True, True, None)
    assert (ended.state, ended.exit_code, ended.container, ended.active) == ("exited 2", 2, True, False)


def test_one_run_is_surveyed_alone(cfg, programs):
    surveyed(programs, GONE)
    assert lifecycle.survey(cfg, lifecycle.place_for(cfg), GONE)[GONE].state == "cancelled"


@pytest.mark.parametrize(("state", "extra", "expected"), [
    ({"Status": "exited", "ExitCode": 0}, {}, ("exited 0", False)),
    ({"Status": "exited", "ExitCode": 2}, {}, ("exited 2", False)),
    ({"Status": "exited", "ExitCode": 130}, {}, ("interrupted", False)),
    ({"Status": "exited", "ExitCode": 130}, {"Cancelled": True}, ("cancelled", False)),
    ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, {}, ("killed (out of memory)", False)),
    ({"Status": "created", "ExitCode": 128, "Error": "could not select device driver"}, {},
     ("failed to start", False)),
    ({"Status": "exited", "ExitCode": 128, "Error": "could not select device driver",
      "StartedAt": "0001-01-01T00:00:00Z"}, {}, ("failed to start", False)),
    ({"Status": "created", "ExitCode": 0}, {}, ("starting", True)),
    ({"Status": "paused", "ExitCode": 0}, {}, ("paused", True)),
])
def test_what_a_container_state_is_called(state, extra, expected):
    run = lifecycle.RunState(GONE)
    lifecycle.describe(run, {"State": state, **extra}, container=True)
    assert (run.state, run.active) == expected


def test_a_folder_without_container_or_state(cfg):
    young = lifecycle.RunState(GONE, age=60)
    lifecycle._from_index(cfg, young, logged=False)
    assert (young.state, young.active) == ("no container (starting?)", True)  # clean keeps it
    old = lifecycle.RunState(GONE, age=lifecycle.STARTING_GRACE + 1)
    lifecycle._from_index(cfg, old, logged=False)
    assert (old.state, old.active) == ("no container", False)
    logged = lifecycle.RunState(GONE, age=60)
    lifecycle._from_index(cfg, logged, logged=True)
    assert (logged.state, logged.active) == ("ended", False)


def test_a_run_that_failed_before_its_container_lasts_as_its_record_says(cfg, tmp_path):
    cfg = dataclasses.replace(cfg, LOCAL_RESULTS_DIR=str(tmp_path))
    results.save_record(tmp_path, results.RunResult(GONE, status="failed",
                                                    started="2026-11-25T10:15:02.000+00:00",
                                                    ended="2026-11-25T10:15:11.000+00:00"))
    run = lifecycle.RunState(GONE, age=60)
    lifecycle._from_index(cfg, run, logged=False)
    assert (run.state, run.active, run.duration) == ("failed", False, 9.0)


def test_status_describes_the_run_and_updates_the_local_record(cfg, programs):
    results.save_record("results", results.RunResult(ENDED, status="running", server="gpu-box"))
    connect(programs)
    surveyed(programs, ENDED)
    run = lifecycle.status(cfg, ENDED)
    assert str(run).splitlines()[0] == f"{ENDED} exited 2"
    assert str(run).splitlines()[4:] == [f"  folder    {WORKDIR}/{ENDED}", "  results   not fetched"]
    saved = results.load_record("results", ENDED)
    assert (saved.status, saved.exit_code, saved.remote_dir) == ("failed", 2, f"{WORKDIR}/{ENDED}")


def test_an_unknown_run(cfg, programs):
    connect(programs)
    surveyed(programs, "20200101-000000-abcdef")
    with pytest.raises(lifecycle.UnknownRun) as error:
        lifecycle.status(cfg, "20200101-000000-abcdef")
    assert str(error.value) == "there is no run 20200101-000000-abcdef in runs with space/$(x) on gpu-box"
    results.save_record("results", results.RunResult("20200101-000000-abcdef", status="failed"))
    connect(programs)
    surveyed(programs, "20200101-000000-abcdef")
    with pytest.raises(lifecycle.UnknownRun, match="; the local index last saw it failed$"):
        lifecycle.status(cfg, "20200101-000000-abcdef")


def test_a_run_id_is_checked_before_anything_runs(cfg, programs):
    connect(programs)
    with pytest.raises(PystributedError, match="'../x' is not a run id"):
        lifecycle.status(cfg, "../x")


def test_logs_read_the_container_or_else_output_log(cfg, programs, capsys):
    connect(programs)
    surveyed(programs, GONE)
    programs.expect("server", "logs", f"{WORKDIR}/{GONE}", GONE, "follow", stdout="hi\n", stderr="warn\n")
    lifecycle.logs(cfg, GONE, follow=True)
    assert capsys.readouterr() == ("hi\n", "warn\n")
    assert programs.calls[-1].step == "logs"
    connect(programs)
    surveyed(programs, GONE)
    programs.expect("server", "logs", f"{WORKDIR}/{GONE}", GONE, "", code=1)
    with pytest.raises(StepError, match=f"^logs failed: the output of run {GONE} could not be read "
                                        r"\(exit code 1\)\nCheck that `ssh gpu-box` works"):
        lifecycle.logs(cfg, GONE)


def test_logs_follow_waits_for_a_container_that_is_coming(cfg, programs, monkeypatch, capsys):
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    starting = survey_answer(containers=())
    connect(programs)
    surveyed(programs, RUNNING, out=starting)  # a young folder, no container yet
    surveyed(programs, RUNNING)
    programs.expect("server", "logs", f"{WORKDIR}/{RUNNING}", RUNNING, "follow", stdout="hi\n")
    lifecycle.logs(cfg, RUNNING, follow=True)
    out = capsys.readouterr()
    assert out.out == "hi\n"
    assert out.err == f"Run {RUNNING} has no container yet (is it being built or pushed?): waiting for it.\n"


def test_cancel_interrupts_stops_and_puts_the_container_away(cfg, programs):
    connect(programs)
    surveyed(programs, RUNNING)
    programs.expect("server", "stop", RUNNING)
    programs.expect("server", "finish", f"{WORKDIR}/{RUNNING}", RUNNING, "true", ..., out="130\n")
    surveyed(programs, RUNNING, out=survey_answer(containers=()).replace(
        container(GONE, "exited", code=130, cancelled=True),
        container(RUNNING, "exited", code=130, cancelled=True)))
    run = lifecycle.cancel(cfg, RUNNING)
    assert (run.state, run.container) == ("cancelled", False)
    steps = [call.step for call in programs.calls if call.words[0] == "server"]
    assert steps == ["status", "cancel", "run", "status"]


def test_cancel_of_a_run_that_ended_only_puts_it_away(cfg, programs):
    connect(programs)
    surveyed(programs, ENDED)
    programs.expect("server", "finish", f"{WORKDIR}/{ENDED}", ENDED, "false", ..., out="2\n")
    surveyed(programs, ENDED)
    lifecycle.cancel(cfg, ENDED)
    connect(programs)
    surveyed(programs, GONE)  # put away already: nothing to do
    assert lifecycle.cancel(cfg, GONE).state == "cancelled"


def test_cancel_of_a_run_that_has_no_container_yet_is_refused(cfg, programs):
    connect(programs)
    surveyed(programs, RUNNING, out=survey_answer(containers=()))
    with pytest.raises(PystributedError) as error:
        lifecycle.cancel(cfg, RUNNING)
    assert str(error.value) == (f"run {RUNNING} has no container yet (it is being built or pushed): "
                                "interrupt the process that started it, or cancel it once it runs")


def test_wait_puts_the_ended_container_away(cfg, programs):
    connect(programs)
    surveyed(programs, ENDED)
    programs.expect("server", "finish", f"{WORKDIR}/{ENDED}", ENDED, "false", ..., out="2\n")
    surveyed(programs, ENDED, out=survey_answer(containers=()).replace(
        f"{server.MARK} states\n", f"{server.MARK} states\n{container(ENDED, 'exited', code=2)}\n"))
    run = lifecycle.wait(cfg, ENDED)
    assert (run.run_id, run.exit_code, run.container) == (ENDED, 2, False)


def test_fetch_of_an_ended_container_puts_it_away_first(cfg, programs, tmp_path):
    connect(programs)
    surveyed(programs, ENDED)
    programs.expect("server", "finish", f"{WORKDIR}/{ENDED}", ENDED, "false", ..., out="2\n")
    surveyed(programs, ENDED)
    programs.expect("server", "fetch", f"{WORKDIR}/{ENDED}", "", out=tar_of({"./output.log": b"log\n"}))
    result = lifecycle.fetch(cfg, ENDED, quiet=True)
    assert result.local_path == (tmp_path / "results" / ENDED).resolve()
    assert result.files == ["output.log", "run.json"]
    assert (result.status, result.exit_code, result.server) == ("failed", 2, "gpu-box")
    assert results.load_record("results", ENDED) == result


def test_fetch_of_a_run_that_goes_on_takes_what_it_wrote_so_far(cfg, programs, capsys):
    connect(programs)
    surveyed(programs, RUNNING)
    programs.expect("server", "fetch", f"{WORKDIR}/{RUNNING}", "going", out=tar_of({"./log.txt": b"1\n"}))
    result = lifecycle.fetch(cfg, RUNNING)
    assert result.files == ["log.txt", "run.json"] and result.status == "running"
    out = capsys.readouterr().out
    assert f"Run {RUNNING} is still running: fetching what it has written so far.\n" in out


def test_attach_to_a_run_that_goes_on_follows_it_to_the_end(cfg, programs, capsys):
    connect(programs)
    surveyed(programs, RUNNING)
    programs.expect("server", "follow", RUNNING, stdout="epoch 1\n")
    programs.expect("server", "finish", f"{WORKDIR}/{RUNNING}", RUNNING, "false", ..., out="0\n")
    programs.expect("server", "fetch", f"{WORKDIR}/{RUNNING}", "", out=tar_of({"./r.txt": b"ok"}))
    result = lifecycle.attach(cfg, RUNNING, quiet=True)
    assert (result.status, result.exit_code, result.files) == ("succeeded", 0, ["r.txt", "run.json"])
    assert capsys.readouterr().out == "epoch 1\n"
    assert programs.calls[2].stdin == b""  # not started again: no environment to give


def test_attach_to_a_run_that_ended_fetches_it_and_shows_its_log(cfg, programs, capsys):
    connect(programs)
    surveyed(programs, GONE)
    programs.expect("server", "fetch", f"{WORKDIR}/{GONE}", "", out=tar_of({"./output.log": b"the output\n"}))
    result = lifecycle.attach(cfg, GONE)
    assert result.files == ["output.log", "run.json"]
    assert result.status == "cancelled" and result.exit_code == 130
    out = capsys.readouterr().out
    assert f"Run {GONE} has ended (cancelled); fetching its results and log.\n" in out
    assert out.endswith("\nthe output\n")


def test_an_interrupted_attach_leaves_the_run_going(cfg, programs):
    connect(programs)
    surveyed(programs, RUNNING)
    programs.expect("server", "follow", RUNNING, out=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        lifecycle.attach(cfg, RUNNING, quiet=True)
    assert results.load_record("results", RUNNING).status == "detached"


def test_list_shows_the_servers_runs_newest_first_and_remembers_them(cfg, programs):
    results.save_record("results", results.RunResult(GONE, status="running", server="gpu-box"))
    connect(programs)
    surveyed(programs)
    table = listing.list_runs(cfg)
    assert [run.run_id for run in table] == [ENDED, RUNNING, GONE] and not table.offline
    lines = str(table).splitlines()
    assert lines[0].split() == ["RUN", "STATE", "STARTED", "DURATION", "IMAGE", "RESULTS", "HERE"]
    assert lines[3].split()[:2] == [GONE, "cancelled"]
    assert results.load_record("results", GONE).status == "cancelled"  # the index learns what the server says
    assert results.load_record("results", RUNNING) is None  # and only of the runs it knows
    assert json.loads(table.to_json())["runs"][2]["run_id"] == GONE


def test_list_offline_shows_the_local_index(cfg, programs):
    results.save_record("results", results.RunResult(GONE, status="succeeded", exit_code=0, server="gpu-box"))
    results.save_record("results", results.RunResult(RUNNING, status="running", server="other-box"))
    connect(programs)
    programs.expect("server", "survey", "runs with space/$(x)", code=255,
                    stderr="ssh: Could not resolve hostname")
    table = listing.list_runs(cfg)
    assert [run.run_id for run in table] == [GONE]  # this server's runs only
    assert table.offline == ("gpu-box: status failed: ssh could not run "
                             "`server.sh survey 'runs with space/$(x)'` on gpu-box (exit code 255)")
    assert str(table).splitlines()[0] == f"OFFLINE, from the local index (may be stale): {table.offline}"
    assert table[0].state == "succeeded (last seen)"


def test_ages_durations_and_docker_times():
    assert lifecycle.parse_age("90s") == 90 and lifecycle.parse_age("7d") == 7 * 86400
    assert lifecycle.parse_age("1.5h") == 5400 and lifecycle.parse_age("0") == 0
    assert lifecycle.parse_age(5) == 5.0
    with pytest.raises(PystributedError, match="is not an age"):
        lifecycle.parse_age("7 days")
    assert [lifecycle.human_duration(s) for s in (5, 125, 7260, 90000, None)] == [
        "5s", "2m05s", "2h01m", "1d01h", "-"]
    assert results.docker_time("2026-11-25T10:15:03.123456789Z") == datetime.datetime(
        2026, 11, 25, 10, 15, 3, 123457, tzinfo=datetime.timezone.utc)
    assert results.docker_time("0001-01-01T00:00:00Z") is None and results.docker_time("") is None
