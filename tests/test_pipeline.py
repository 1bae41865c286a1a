"""The exact argument lists given to docker, ssh and sh, faked at the one helper that runs them."""
import io
import json
import re
import tarfile

import pytest

from pystributed import config, pipeline, remote, util
from pystributed.errors import PystributedError, RemoteCellError, StepError

SSH = ["ssh", "-F", "/cfg", "-o", "ControlPath=SOCKET/%C", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
       "-o", "ServerAliveCountMax=4", "--", "gpu-box"]
RUN_ID = "20261125-101502-3fa9c1"
TAG = "[0-9a-f]{16}"
RUN_DIR = "/home/me/runs with space/$(x)/" + RUN_ID
STATE_FORMAT = ('{"Cancelled":false,"Name":{{json .Name}},"Image":{{json .Config.Image}},"State":{{json .State}},'
                '"Mounts":{{json .Mounts}}}')


def empty_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("./out.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"42"))
    buf.seek(0)
    return buf


def unsocket(cmd):
    """The ControlPath folder is a new temporary one each time: name it SOCKET."""
    return [re.sub(r"ControlPath=.*/%C", "ControlPath=SOCKET/%C", word) for word in cmd]


class Calls(list):
    """(step, argv) of each program run; `exit[0]` is the exit code the cell should report."""

    def __init__(self):
        super().__init__()
        self.exit = [0]


@pytest.fixture
def calls(monkeypatch, tmp_path):
    (tmp_path / "user_code.py").write_text("print('hi')\n")
    recorded = Calls()
    recorded_exit = recorded.exit

    def fake_run(cmd, *, step, hint="", write_stdin=None, read_stdout=None, cwd=None):
        recorded.append((step, unsocket(cmd)))
        if write_stdin:
            write_stdin(io.BytesIO())
        if read_stdout and step == "fetch":
            return read_stdout(empty_tar())
        if read_stdout:
            return read_stdout(io.BytesIO(b"abcdef012345: Pushed\nx: digest: sha256:" + b"a" * 64 + b" size: 5\n"))
        script = cmd[-1]
        if script.startswith("mkdir"):
            return f"{RUN_DIR}\n1000\n1000\n"
        if script.startswith("{ docker wait"):
            return f"{recorded_exit[0]}\n"
        return ""

    def fake_stream(cmd, *, step, on_stdout, on_stderr, cwd=None, write_stdin=None):
        recorded.append((step, unsocket(cmd)))
        if write_stdin:
            stdin = io.BytesIO()
            write_stdin(stdin)
            recorded.stdin = stdin.getvalue()
        on_stdout("hi\n")
        return 0

    monkeypatch.setattr(util, "run", fake_run)
    monkeypatch.setattr(util, "stream", fake_stream)
    monkeypatch.setattr(util, "succeeds", lambda cmd, cwd=None: recorded.append(("?", unsocket(cmd))) or False)
    monkeypatch.setattr(util, "output", lambda cmd: recorded.append(("?", unsocket(cmd))) or "")
    monkeypatch.setattr(pipeline.results, "new_run_id", lambda: RUN_ID)
    return recorded




def put_away_script(d, name, state_format):
    """finish()'s script for the run folder `d` (quoted, without its closing quote)."""
    log_part, state_part = f"{d}/.output.log.TOKEN'", f"{d}/.pystributed-state.json.TOKEN'"
    return (f"{{ docker wait {name} && {{ docker logs {name} >{log_part} 2>&1 && docker container inspect --format "
            f"'{state_format}' {name} >{state_part} && mv -f -- {log_part} {d}/output.log' && "
            f"mv -f -- {state_part} {d}/.pystributed-state.json' && docker rm --force {name} >/dev/null 2>&1 || "
            f"{{ rm -f -- {log_part} {state_part}; if docker container inspect --format '{{{{.State.Status}}}}' "
            f"{name} >/dev/null 2>&1; then echo log-not-saved; fi; }}; }}; }} || cat -- {d}/.pystributed-state.json'")


def untokened(calls):
    """finish() writes under names with a random part: name it TOKEN."""
    return [(step, [re.sub(r"(\.(?:output\.log|pystributed-state\.json))\.[0-9a-f]{8}'", r"\1.TOKEN'", word)
                    for word in cmd]) for step, cmd in calls]


@pytest.fixture
def remote_config():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"], DOCKER_RUN_ARGS=["--gpus", "all"])


def test_every_argv_of_a_remote_run(calls, remote_config):
    result = pipeline.run(remote_config, quiet=True)
    image = result.image
    assert re.fullmatch(f"reg:5000/proj:{TAG}", image)
    q_dir = "'/home/me/runs with space/$(x)/20261125-101502-3fa9c1'"
    assert untokened(calls) == [
        ("?", ["ssh", "-G", "-F", "/cfg", "--", "gpu-box"]),
        ("connect", ["ssh", "-F", "/cfg", "-o", "ControlPath=SOCKET/%C", "-o", "BatchMode=yes",
                     "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "ControlMaster=yes",
                     "-o", "ControlPersist=120", "-N", "-f", "--", "gpu-box"]),
        ("connect", SSH + [(f"mkdir -p -- 'runs with space/$(x)/{RUN_ID}' && cd -- 'runs with space/$(x)/{RUN_ID}'"
                           " && pwd && id -u && id -g")]),
        ("?", ["docker", "image", "inspect", "--format", "{{.Id}}", image]),
        ("build", ["docker", "build", "--quiet", "--tag", image, "-"]),
        ("?", ["docker", "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", image]),
        ("push", ["docker", "push", image]),
        ("?", SSH + [f"docker image inspect --format '{{{{.Id}}}}' {image}"]),
        ("pull", SSH + [f"docker pull {image}"]),
        ("run", SSH + [
            (f"docker run --detach --name pystributed-{RUN_ID} --label pystributed.run={RUN_ID} "
            f"--user 1000:1000 --volume {q_dir[:-1]}:/results' --env-file /dev/stdin --env PYSTRIBUTED_RESULTS=/results "
            f"--env PYSTRIBUTED_RUN_ID={RUN_ID} --env HOME=/tmp --gpus all {image} >/dev/null"
            f" && docker logs --follow pystributed-{RUN_ID}")]),
        ("run", SSH + [put_away_script(q_dir[:-1], f"pystributed-{RUN_ID}", STATE_FORMAT)]),
        ("fetch", SSH + [f"tar -C {q_dir} -cf - ."]),
        ("?", ["ssh", "-F", "/cfg", "-o", "ControlPath=SOCKET/%C", "-O", "exit", "--", "gpu-box"]),
    ]
    assert result.exit_code == 0 and result.files == ["out.txt"] and result.run_id == RUN_ID
    assert (result.local_path / "out.txt").read_text() == "42"
    assert result.image_digest == "sha256:" + "a" * 64 and result.status == "succeeded"
    saved = json.loads((result.local_path / "run.json").read_text())
    assert saved["status"] == "succeeded" and saved["exit_code"] == 0 and saved["image"] == image


def test_nothing_is_rebuilt_pushed_or_pulled_that_is_there(calls, remote_config, monkeypatch):
    monkeypatch.setattr(util, "succeeds", lambda cmd, cwd=None: True)
    monkeypatch.setattr(util, "output", lambda cmd: "reg:5000/proj@sha256:" + "b" * 64 + "\n")
    result = pipeline.run(remote_config, quiet=True)
    assert [step for step, _ in calls] == ["connect", "connect", "run", "run", "fetch"]
    assert result.image_digest == "sha256:" + "b" * 64


def test_remote_build_sends_the_context_over_ssh(calls, remote_config):
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", TRANSPORT="remote-build", SSH_OPTIONS=["-F", "/cfg"])
    result = pipeline.run(cfg, quiet=True)
    assert re.fullmatch(f"pystributed:{TAG}", result.image)
    steps = [(step, cmd[-1]) for step, cmd in calls if step != "?"]
    assert [step for step, _ in steps] == ["connect", "connect", "build", "run", "run", "fetch"]
    assert steps[2][1] == f"docker build --quiet --tag {result.image} -"


def test_env_and_secrets_travel_on_stdin_not_on_any_command_line(calls, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cr3t-value")
    cfg = config.load(environ={}, REMOTE_SERVER="local", ENV={"MODE": "fast"}, SECRETS=["API_TOKEN"])
    result = pipeline.run(cfg, quiet=True)
    assert calls.stdin == b"MODE=fast\nAPI_TOKEN=s3cr3t-value\n"
    assert not any("s3cr3t" in word for _, cmd in calls for word in cmd)
    assert "s3cr3t" not in result.to_json() and "API_TOKEN" in result.to_json()


def test_a_secret_missing_here_is_refused_before_anything_runs(calls, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    cfg = config.load(environ={}, REMOTE_SERVER="local", SECRETS=["API_TOKEN"])
    with pytest.raises(PystributedError, match="SECRETS names API_TOKEN, which is not set in this environment"):
        pipeline.run(cfg, quiet=True)
    assert calls == []


def test_a_missing_tool_is_named_before_anything_runs(calls, remote_config, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PystributedError, match="`docker` is not installed here"):
        pipeline.run(remote_config, quiet=True)
    assert calls == []


def test_local_runs_through_sh_without_push_or_pull(calls):
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    pipeline.run(cfg, quiet=True)
    assert [step for step, _ in calls if step != "?"] == ["connect", "build", "run", "run", "fetch"]
    assert [cmd[:2] for step, cmd in calls if step not in ("?", "build")] == [["sh", "-c"]] * 4


def test_a_failing_cell_raises_after_fetching(calls, remote_config):
    calls.exit[0] = 137
    with pytest.raises(RemoteCellError) as excinfo:
        pipeline.run(remote_config, quiet=True)
    msg = str(excinfo.value)
    assert msg.startswith(f"the cell failed with exit code 137\n(run {RUN_ID} on gpu-box, exit code 137)\n"
                          "The container was killed (SIGKILL), most likely for running out of memory.")
    assert calls[-2][0] == "fetch"


def test_a_cell_that_does_not_compile_is_refused_before_anything_runs(calls, remote_config, tmp_path):
    (tmp_path / "user_code.py").write_text("x = 1\ny = (\n")
    with pytest.raises(Exception, match=r"user_code.py does not compile: .* \(line 2\)"):
        pipeline.run(remote_config, quiet=True)
    assert calls == []


def test_redirect_quotes_the_words_and_the_path():
    assert remote.redirect(["echo", "a b"], "/x y") == "echo 'a b' >'/x y' 2>&1"


def test_workdir_tilde_becomes_relative_to_home():
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="~/my runs")
    assert remote.workdir(cfg) == "my runs"


def test_step_errors_name_the_step_and_show_the_tool_output(tmp_path):
    with pytest.raises(StepError) as excinfo:
        util.run(["sh", "-c", "echo oops >&2; exit 3"], step="push", hint="Log in.")
    assert str(excinfo.value) == "push failed: `sh -c 'echo oops >&2; exit 3'` exited with code 3\n    oops\nLog in."


def test_a_missing_binary_is_named():
    with pytest.raises(StepError, match="build failed: `no-such-docker` was not found on PATH"):
        util.run(["no-such-docker", "build"], step="build")


def test_remote_data_is_checked_and_mounted_read_only(calls):
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", SSH_OPTIONS=["-F", "/cfg"],
                      REMOTE_DATA={"/srv/image net;$(x)": "imagenet", "/srv/w.pt": "/opt/w.pt"})
    pipeline.run(cfg, quiet=True)
    check = [cmd for step, cmd in calls if step == "data"]
    assert check == [SSH + [("{ [ -e '/srv/image net;$(x)' ] || echo '/srv/image net;$(x)'; } && "
                             "{ [ -e /srv/w.pt ] || echo /srv/w.pt; }")]]
    start = next(cmd[-1] for step, cmd in calls if step == "run")
    assert "--volume '/srv/image net;$(x):/app/imagenet:ro' --volume /srv/w.pt:/opt/w.pt:ro" in start


def test_missing_remote_data_fails_the_data_step(calls, monkeypatch):
    real = util.run

    def run(cmd, *, step, **kwargs):
        return "/srv/gone\n" if step == "data" else real(cmd, step=step, **kwargs)

    monkeypatch.setattr(util, "run", run)
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", REMOTE_DATA={"/srv/gone": "x"})
    with pytest.raises(StepError, match="data failed: REMOTE_DATA names /srv/gone, which does not exist on gpu-box"):
        pipeline.run(cfg, quiet=True)


def test_a_fetch_that_fails_leaves_the_record_without_a_results_folder(tmp_path):
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    result = pipeline.results.RunResult(RUN_ID, status="succeeded", remote_dir=str(tmp_path / "gone"))
    with pytest.raises(StepError, match="fetch failed"):
        pipeline.fetch(cfg, result, pipeline.progress.steps_for(True))
    assert result.local_path is None and result.log is None
    assert not (tmp_path / "results" / RUN_ID).exists()
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "a.txt").write_text("a")
    pipeline.fetch(cfg, result, pipeline.progress.steps_for(True))
    assert result.local_path == (tmp_path / "results" / RUN_ID).resolve() and result.files == ["a.txt"]


def test_a_run_that_goes_on_is_fetched_although_tar_saw_a_file_change(tmp_path, monkeypatch):
    # GNU tar, reading a file that the run is writing: a whole archive, a warning, exit code 1.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tar").write_text(
        "#!/bin/sh\n/bin/tar \"$@\"\necho 'tar: ./log.txt: file changed as we read it' >&2\nexit 1\n")
    (tmp_path / "bin" / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.txt").write_text("step 1\n")
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    result = pipeline.results.RunResult(RUN_ID, status="running", remote_dir=str(tmp_path / "run"))
    pipeline.fetch(cfg, result, pipeline.progress.steps_for(True), going=True)
    assert (tmp_path / "results" / RUN_ID / "log.txt").read_text() == "step 1\n"
    with pytest.raises(StepError, match="file changed as we read it"):  # an ended run's folder must not change
        pipeline.fetch(cfg, result, pipeline.progress.steps_for(True))


FAKE_DOCKER = """#!/bin/sh
# The engine of one container that exited 3; FAKE_WAITED: `docker wait` returned before it was removed.
gone() { [ -e "$FAKE/removed" ]; }
case "$1" in
  wait) if gone && [ -z "$FAKE_WAITED" ]; then echo "Error: No such container: $2" >&2; exit 1; fi; echo 3 ;;
  logs) if gone; then echo "Error: No such container: $2" >&2; exit 1; fi; echo "the whole output" ;;
  container) if gone; then echo "Error: No such container" >&2; exit 1; fi
             echo '{"Cancelled":false,"State":{"Status":"exited","ExitCode":3}}' ;;
  rm) touch "$FAKE/removed" ;;
esac
"""


@pytest.mark.parametrize("other", ["done before", "between our wait and our save"])
def test_a_container_put_away_by_two_processes_keeps_its_log_and_exit_code(tmp_path, monkeypatch, capsys, other):
    # A notebook following the run and `wait` (or `cancel`) in a shell both put the container away.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE", str(tmp_path))
    (tmp_path / "run").mkdir()
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    result = pipeline.results.RunResult(RUN_ID, remote_dir=str(tmp_path / "run"))
    assert pipeline.finish(cfg, result) == 3  # the first
    if other == "between our wait and our save":
        monkeypatch.setenv("FAKE_WAITED", "1")
    assert pipeline.finish(cfg, result) == 3  # the second
    assert (tmp_path / "run" / "output.log").read_text() == "the whole output\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".pystributed-state.json", "output.log"]
    assert "warning" not in capsys.readouterr().err


def test_results_that_cannot_be_written_here_fail_the_fetch_step_with_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "a.txt").write_text("a")

    def full_disk(stream, folder, on_bytes):
        stream.read()  # the copy itself goes through
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline.results, "_extract_into", full_disk)
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    result = pipeline.results.RunResult(RUN_ID, status="succeeded", remote_dir=str(tmp_path / "run"))
    with pytest.raises(StepError, match=r"fetch failed: the results could not be written to results/"
                                        r"20261125-101502-3fa9c1: \[Errno 28\] No space left on device") as error:
        pipeline.fetch(cfg, result, pipeline.progress.steps_for(True))
    assert "Make room there" in error.value.hint and "runner.attach(" in error.value.hint
    assert result.local_path is None and not list((tmp_path / "results").iterdir())
