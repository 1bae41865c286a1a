"""The exact commands of status, logs, cancel and clean; how the server's answer is read; the CLI's
exit codes. Programs are faked at the one helper that runs them."""
import contextlib
import dataclasses
import datetime
import json

import pytest

from pystributed import clean as cleaning
from pystributed import cli, config, docker, lifecycle, record, registry, remote, results, util
from pystributed.errors import StepError
from tests.test_pipeline import put_away_script, untokened

SSH = ["ssh", "-F", "/cfg", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
       "--", "gpu-box"]
WORKDIR = "/home/me/runs with space/$(x)"
GONE, RUNNING, ELSEWHERE = "20261125-101502-3fa9c1", "20261125-101503-aaaaaa", "20261125-101504-bbbbbb"
STATE_FORMAT = ('{"Cancelled":false,"Name":{{json .Name}},"Image":{{json .Config.Image}},"State":{{json .State}},'
                '"Mounts":{{json .Mounts}}}')


def container(run_id, status, *, code=0, folder=WORKDIR, cancelled=False, **state):
    return json.dumps({"Cancelled": cancelled, "Name": f"/pystributed-{run_id}", "Image": f"reg:5000/proj:{run_id[-6:]}",
                       "State": {"Status": status, "ExitCode": code, "StartedAt": "2026-11-25T10:15:03.123456789Z",
                                 "FinishedAt": "0001-01-01T00:00:00Z" if status == "running" else
                                 "2026-11-25T10:16:03.5Z", **state},
                       "Mounts": [{"Source": f"{folder}/{run_id}", "Destination": "/results"}]})


SURVEY = "\n".join([
    "@@pystributed now", "1764076000",
    "@@pystributed workdir", WORKDIR,
    "@@pystributed folders", f"{GONE} 1764072000.5", f"{RUNNING} 1764075990.0", "not-a-run 1764070000",
    "@@pystributed logs", f"./{GONE}",
    "@@pystributed states", container(GONE, "exited", code=130, cancelled=True),
    "@@pystributed containers", container(RUNNING, "running"),
    container(ELSEWHERE, "exited", folder="/elsewhere"),  # another REMOTE_WORKDIR's run
    "",
])


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", DOCKER_IMAGE_NAME="proj",
                       REMOTE_WORKDIR="runs with space/$(x)", SSH_OPTIONS=["-F", "/cfg"])


@pytest.fixture
def calls(monkeypatch):
    """Each (step, argv); the server answers the survey with SURVEY, `docker wait` with 0."""
    recorded = []

    def fake_run(cmd, *, step, hint="", write_stdin=None, read_stdout=None, cwd=None):
        recorded.append((step, cmd))
        script = cmd[-1]
        if script.startswith("echo @@pystributed now"):
            return SURVEY
        if script.startswith("{ docker wait"):
            return "0\n"
        if script.startswith("docker container ls --all --format"):
            return f"reg:5000/proj:{RUNNING[-6:]}\nubuntu\n@@pystributed images\nreg:5000/proj:{RUNNING[-6:]}\n" \
                   "reg:5000/proj:unused\nreg:5000/proj:<none>\n"
        return ""

    def fake_stream(cmd, *, step, on_stdout, on_stderr, cwd=None, write_stdin=None):
        recorded.append((step, cmd))
        on_stdout("hi\n")
        return 0

    monkeypatch.setattr(util, "run", fake_run)
    monkeypatch.setattr(util, "stream", fake_stream)
    monkeypatch.setattr(remote, "shared_connection", contextlib.nullcontext)
    monkeypatch.setattr(registry, "digest", lambda ref: "sha256:" + "d" * 64 if ref.endswith(":unused") else None)
    monkeypatch.setattr(registry, "delete", lambda ref, digest: recorded.append(("registry", ["DELETE", ref, digest])))
    return recorded


def test_new_docker_argument_lists():
    assert docker.inspect_state("c1", "c2", cancelled=True) == [
        "docker", "container", "inspect", "--format", STATE_FORMAT.replace("false", "true"), "c1", "c2"]
    assert docker.list_containers("pystributed.run=X") == [
        "docker", "container", "ls", "--all", "--quiet", "--no-trunc", "--filter", "label=pystributed.run=X"]
    assert docker.container_images() == ["docker", "container", "ls", "--all", "--format", "{{.Image}}"]
    assert docker.list_images("reg:5000/proj") == [
        "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--", "reg:5000/proj"]
    assert docker.remove_images("a:1", "b:2") == ["docker", "image", "rm", "--", "a:1", "b:2"]


def test_one_command_surveys_the_run_folder_and_the_containers(cfg, calls):
    runs = lifecycle.survey(cfg)
    assert calls == [("status", SSH + [
        ("echo @@pystributed now; date +%s; if cd -- 'runs with space/$(x)' 2>/dev/null; then "
        "echo @@pystributed workdir; pwd; echo @@pystributed folders; "
        "find . -mindepth 1 -maxdepth 1 -type d -name '*' -printf '%f %T@\\n'; "
        "echo @@pystributed logs; find . -mindepth 2 -maxdepth 2 -path './*/output.log' -printf '%h\\n'; "
        "echo @@pystributed states; find . -mindepth 2 -maxdepth 2 -path './*/.pystributed-state.json' -exec cat -- '{}' +; fi; "
        "echo @@pystributed containers; "
        "ids=$(docker container ls --all --quiet --no-trunc --filter label=pystributed.run) && "
        f"{{ [ -z \"$ids\" ] || docker container inspect --format '{STATE_FORMAT}' $ids 2>/dev/null; true; }}")])]
    assert sorted(runs) == [GONE, RUNNING]  # not the other folder's run, not a folder that is no run
    gone, running = runs[GONE], runs[RUNNING]
    assert (gone.state, gone.exit_code, gone.container, gone.active) == ("cancelled", 130, False, False)
    assert gone.remote_dir == f"{WORKDIR}/{GONE}" and gone.age == pytest.approx(3999.5)
    assert gone.duration == pytest.approx(60.376543)
    assert (running.state, running.container, running.active, running.ended) == ("running", True, True, None)


def test_one_run_is_surveyed_alone(cfg, calls):
    lifecycle.survey(cfg, GONE)
    script = calls[0][1][-1]
    assert f"-name {GONE} " in script and f"-path ./{GONE}/.pystributed-state.json " in script
    assert f"--filter label=pystributed.run={GONE})" in script


@pytest.mark.parametrize(("state", "extra", "expected"), [
    ({"Status": "exited", "ExitCode": 0}, {}, ("exited 0", False)),
    ({"Status": "exited", "ExitCode": 2}, {}, ("exited 2", False)),
    ({"Status": "exited", "ExitCode": 130}, {}, ("interrupted", False)),
    ({"Status": "exited", "ExitCode": 130}, {"Cancelled": True}, ("cancelled", False)),
    ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, {}, ("killed (out of memory)", False)),
    ({"Status": "created", "ExitCode": 128, "Error": "could not select device driver"}, {}, ("failed to start", False)),
    ({"Status": "exited", "ExitCode": 128, "Error": "could not select device driver",
      "StartedAt": "0001-01-01T00:00:00Z"}, {}, ("failed to start", False)),
    ({"Status": "created", "ExitCode": 0}, {}, ("starting", True)),
    ({"Status": "paused", "ExitCode": 0}, {}, ("paused", True)),
])
def test_what_a_container_state_is_called(state, extra, expected):
    run = lifecycle.RunState(GONE)
    lifecycle._describe(run, {"State": state, **extra}, container=True)
    assert (run.state, run.active) == expected


def test_a_folder_without_container_or_state(cfg, tmp_path):
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
    record.save(tmp_path, results.RunResult(GONE, status="failed", started="2026-11-25T10:15:02.000+00:00",
                                    ended="2026-11-25T10:15:11.000+00:00"))
    run = lifecycle.RunState(GONE, age=60)
    lifecycle._from_index(cfg, run, logged=False)
    assert (run.state, run.active, run.duration) == ("failed", False, 9.0)


def test_logs_reads_the_container_or_else_output_log(cfg, calls, capsys):
    lifecycle.logs(cfg, GONE, follow=True)
    q_log = f"'{WORKDIR}/{GONE}/output.log'"
    assert calls[-1] == ("logs", SSH + [
        (f"if docker container inspect --format '{{{{.State.Status}}}}' pystributed-{GONE} >/dev/null 2>&1; "
        f"then docker logs --follow pystributed-{GONE}; elif [ -f {q_log} ]; then cat -- {q_log}; fi")])
    assert capsys.readouterr().out == "hi\n"


def test_cancel_interrupts_stops_and_puts_the_container_away(cfg, calls):
    lifecycle.cancel(cfg, RUNNING)
    commands = [(step, cmd[-1]) for step, cmd in untokened(calls) if not cmd[-1].startswith("echo @@")]
    q_dir = f"'{WORKDIR}/{RUNNING}"
    name = f"pystributed-{RUNNING}"
    assert commands == [
        ("cancel", f"docker kill --signal INT {name} >/dev/null 2>&1; docker stop --time 10 {name}"),
        ("run", put_away_script(q_dir, name, STATE_FORMAT.replace("false", "true"))),
    ]


def test_an_unknown_run(cfg, calls):
    with pytest.raises(lifecycle.UnknownRun, match="there is no run 20200101-000000-abcdef in runs with space"):
        lifecycle.status(cfg, "20200101-000000-abcdef")


def test_clean_lists_then_removes_only_what_it_listed(cfg, calls):
    plan = cleaning.clean(cfg, older_than=3600)
    assert [r.run_id for r in plan.folders] == [GONE] and plan.containers == [] and not plan.done
    assert [r.run_id for r in plan.running] == [RUNNING]
    assert plan.images == ["reg:5000/proj:unused"]  # not the running run's, not another repository's
    assert plan.tags == [("reg:5000/proj:unused", "sha256:" + "d" * 64)]
    assert [step for step, _ in calls] == ["status", "clean"]  # nothing removed yet
    assert calls[1][1][-1] == ("docker container ls --all --format '{{.Image}}' && echo @@pystributed images && "
                               "docker image ls --format '{{.Repository}}:{{.Tag}}' -- reg:5000/proj")
    calls.clear()
    plan = cleaning.clean(cfg, older_than=3600, apply=True)
    assert plan.done
    assert calls[1:] == [
        ("clean", SSH + [("docker container ls --all --format '{{.Image}}' && echo @@pystributed images && "
                         "docker image ls --format '{{.Repository}}:{{.Tag}}' -- reg:5000/proj")]),
        ("clean", SSH + [f"rm -rf -- '{WORKDIR}/{GONE}'"]),
        ("clean", SSH + ["docker image rm -- reg:5000/proj:unused"]),
        ("registry", ["DELETE", "reg:5000/proj:unused", "sha256:" + "d" * 64]),
    ]
    # Younger folders stay; without an age no folder goes.
    assert cleaning.clean(cfg, older_than=4000).folders == []
    assert cleaning.clean(cfg).folders == []


def test_ages_durations_and_docker_times():
    assert lifecycle.parse_age("90s") == 90 and lifecycle.parse_age("7d") == 7 * 86400
    assert lifecycle.parse_age("1.5h") == 5400 and lifecycle.parse_age("0") == 0
    with pytest.raises(Exception, match="is not an age"):
        lifecycle.parse_age("7 days")
    assert [lifecycle.human_duration(s) for s in (5, 125, 7260, 90000, None)] == ["5s", "2m05s", "2h01m", "1d01h", "-"]
    assert lifecycle.docker_time("2026-11-25T10:15:03.123456789Z") == datetime.datetime(
        2026, 11, 25, 10, 15, 3, 123457, tzinfo=datetime.timezone.utc)
    assert lifecycle.docker_time("0001-01-01T00:00:00Z") is None


def test_registry_urls():
    assert registry.split("127.0.0.1:5000/team/proj:abc") == ("127.0.0.1:5000", "team/proj", "abc")
    assert registry._url("127.0.0.1:5000", "x") == "http://127.0.0.1:5000/v2/x"
    assert registry._url("localhost:5000", "x") == "http://localhost:5000/v2/x"
    assert registry._url("[::1]:5000", "x") == "http://[::1]:5000/v2/x"
    assert registry._url("registry.example.com", "x") == "https://registry.example.com/v2/x"


def test_cli_exit_codes(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "gpu-box")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "reg:5000")

    def unknown(config, run_id):
        raise lifecycle.UnknownRun("there is no run")

    def unreachable(config, run_id):
        raise StepError("connect", "ssh failed", code=255)

    monkeypatch.setattr(lifecycle, "status", unknown)
    assert cli.main(["status", GONE]) == cli.EXIT_UNKNOWN_RUN == 66
    monkeypatch.setattr(lifecycle, "status", unreachable)
    assert cli.main(["status", GONE]) == cli.EXIT_UNREACHABLE == 69
    monkeypatch.setattr(lifecycle, "wait", lambda config, run_id: lifecycle.RunState(run_id, "exited 3", exit_code=3))
    assert cli.main(["wait", GONE]) == 3
    monkeypatch.setattr(lifecycle, "list_runs", lambda config: lifecycle.RunTable([], offline="gpu-box: down"))
    assert cli.main(["list"]) == 69
    assert "OFFLINE, from the local index (may be stale): gpu-box: down" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["cancel", "not-a-run"])
    assert exit_.value.code == 2
    monkeypatch.setattr(lifecycle.pipeline, "run", lambda config, **kw: print("step lines") or results.RunResult(GONE))
    assert cli.main(["submit"]) == 0
    out = capsys.readouterr()
    assert out.out == f"{GONE}\n" and "step lines" in out.err  # RUN=$(python -m pystributed submit)
