"""The steps of a run, in order: every command it runs (faked strictly, tests/fakes.py), the states
it saves in the local record, and what it does when a step fails, when it is interrupted, and when
the connection drops."""
import io
import json
import os
import tarfile

import pytest
from fakes import tar_of

from pystributed import config, pipeline, progress, registry, results
from pystributed.errors import EXIT_HINTS, PystributedError, RemoteCellError, StepError
from pystributed.features import Feature
from pystributed.places import local, ssh

RUN_ID = "20261125-101502-3fa9c1"
NAME = f"pystributed-{RUN_ID}"
# the context's hash; the tag is the lower layers' (LOWER) and the cell's
DIGEST = "0123456789abcdef" + "5" * 48
LOWER, CELL = "0123456789abcdef" + "4" * 48, "fedcba9876543210" + "6" * 48
IMAGE = "reg:5000/proj:0123456789abcdef-fedcba9876543210"
RUN_DIR = "/home/me/runs with space/$(x)/" + RUN_ID
DEFAULTS = ["-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
PUSHED = b"abcdef012345: Pushed\nlatest: digest: sha256:" + b"a" * 64 + b" size: 5\n"


TAR = tar_of({"./out.txt": b"42"})


def start_args(image=IMAGE, user="1000:1000", run_dir=RUN_DIR, extra=("--gpus", "all")):
    return ["--detach", "--name", NAME, "--label", f"pystributed.run={RUN_ID}", "--user", user,
            "--volume", f"{run_dir}:/results", "--env-file", "/dev/stdin", "--env",
            "PYSTRIBUTED_RESULTS=/results",
            "--env", f"PYSTRIBUTED_RUN_ID={RUN_ID}", "--env", "HOME=/tmp", *extra, image]


@pytest.fixture(autouse=True)
def cell(monkeypatch, tmp_path):
    """A saved cell; the run's id; a build context whose hash is DIGEST; docker and ssh "installed"."""
    (tmp_path / "user_code.py").write_text("print('hi')\n")
    monkeypatch.setattr(pipeline.results, "new_run_id", lambda: RUN_ID)
    packed = []

    def write(file, **kwargs):
        packed.append(kwargs)
        file.write(b"the build context")
        return pipeline.context.Packed(DIGEST, LOWER, CELL)

    monkeypatch.setattr(pipeline.context, "write", write)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "ssh"):  # never run: the programs are faked
        (bin_dir / tool).write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return packed


@pytest.fixture
def socket_dir(monkeypatch, tmp_path):
    folder = tmp_path / "sock"
    folder.mkdir()
    monkeypatch.setattr(ssh.tempfile, "mkdtemp", lambda **kwargs: str(folder))
    return str(folder)


@pytest.fixture
def states(monkeypatch):
    """Each state saved in the local record, in order."""
    saved = []
    real = results.save_record

    def save(results_dir, result):
        saved.append(str(result.status))
        real(results_dir, result)

    monkeypatch.setattr(results, "save_record", save)
    return saved


@pytest.fixture
def remote_config():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"], DOCKER_RUN_ARGS=["--gpus", "all"])


def expect_connect(programs, socket_dir, *base, answer=""):
    programs.expect("ssh", "-G", "-F", "/cfg", "--", "gpu-box", out="host gpu-box\n")
    programs.expect("ssh", "-F", "/cfg", "-o", f"ControlPath={socket_dir}/%C", *DEFAULTS, "-o",
                    "ControlMaster=yes",
                    "-o", "ControlPersist=120", "-N", "-f", "--", "gpu-box")
    programs.expect("server", "rundir", "runs with space/$(x)", RUN_ID, *base,
                    out=f"{RUN_DIR}\n1000\n1000\n{answer}")


def expect_disconnect(programs, socket_dir):
    programs.expect("ssh", "-F", "/cfg", "-o", f"ControlPath={socket_dir}/%C", "-O", "exit", "--", "gpu-box")


def expect_ship(programs):
    """build here, push, pull: none of them there yet."""
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("docker", "build", "--quiet", "--tag", IMAGE, "-", out="sha256:1\n")
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", IMAGE)
    programs.expect("docker", "push", IMAGE, out=PUSHED)
    programs.expect("server", "docker_command", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("server", "docker_command", "pull", IMAGE, out=b"abcdef012345: Pull complete\n")


def expect_pull_refused(programs, socket_dir, stderr):
    """The image is built here and was pushed (the registry's digest: b…), the server has it not, and its
    pull fails, saying STDERR."""
    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, out="sha256:1\n")
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", IMAGE,
                    out=f"{IMAGE}\nreg:5000/proj@sha256:" + "b" * 64 + "\n")
    programs.expect("server", "docker_command", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("server", "docker_command", "pull", IMAGE, code=1, stderr=stderr)


def expect_end(programs, *, code=0, tar=TAR):
    programs.expect("server", "finish", RUN_DIR, RUN_ID, "false", ..., out=f"{code}\n")
    programs.expect("server", "fetch", RUN_DIR, "", out=tar)


def words(programs):
    return [call.words[:2] for call in programs.calls]


def test_an_image_a_feature_found_there_is_neither_built_pushed_nor_pulled(programs, remote_config,
                                                                           socket_dir,
                                                                            states):
    class Found(Feature):  # as features/cell_mount.py does: the earlier image, the cell's files mounted
        def instead_of_build(self, run):
            run.result.image = "reg:5000/proj:earlier"
            return True

        def mounts(self, run):
            return ["--mount", "type=bind,source=/f/app/c.py,target=/app/c.py,readonly"]

    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("server", "follow", RUN_ID, *start_args(
        "reg:5000/proj:earlier", extra=("--mount", "type=bind,source=/f/app/c.py,target=/app/c.py,readonly",
                                        "--gpus", "all")), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    assert pipeline.run(remote_config, quiet=True, features=[Found()]).image == "reg:5000/proj:earlier"


@pytest.mark.parametrize("banner", ["", "Welcome to the GPU box!\n"])
def test_every_step_of_a_remote_run_in_order(programs, remote_config, socket_dir, states, cell, capsys,
                                             tmp_path,
                                              banner):
    programs.noise = banner  # what the login shell's startup files print is never part of an answer
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    result = pipeline.run(remote_config, quiet=True)
    assert capsys.readouterr().out == "hi\n"  # the cell's output, nothing else
    assert states == ["starting", "running", "succeeded", "succeeded"]
    assert result.run_id == RUN_ID and result.status == "succeeded" and result.exit_code == 0
    assert result.image == IMAGE and result.image_digest == "sha256:" + "a" * 64
    assert result.remote_dir == RUN_DIR and result.server == "gpu-box"
    assert result.started <= result.ended  # the end stamped when it ended (results.set_state)
    assert result.files == ["out.txt", "run.json"] and (result.local_path / "out.txt").read_text() == "42"
    assert result.local_path == (tmp_path / "results" / RUN_ID).resolve()
    saved = json.loads((result.local_path / "run.json").read_text())
    assert saved["status"] == "succeeded" and saved["exit_code"] == 0 and saved["image"] == IMAGE
    assert results.load_record("results", RUN_ID) == result
    # The build context goes to docker build's stdin; the server's commands share one connection.
    build = next(call for call in programs.calls if call.words[:2] == ["docker", "build"])
    assert build.stdin == b"the build context"
    assert cell == [{"context_dir": ".", "code_path": "user_code.py", "source": "print('hi')\n",
                     "base_image": remote_config.BASE_IMAGE, "requirements": None, "excludes": ["results"],
                     "runner_files": {}}]
    socket = ["-o", f"ControlPath={socket_dir}/%C"]
    for call in programs.calls:
        if call.words[0] == "server":
            assert call.argv[:-1] == ["ssh", "-F", "/cfg", *socket, *DEFAULTS, "--", "gpu-box"]
    assert [call.step for call in programs.calls if call.words[0] == "server"] == [
        "connect", "build", "pull", "run", "run", "fetch"]


def test_nothing_is_rebuilt_pushed_or_pulled_that_is_there(programs, remote_config, socket_dir, states):
    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, out="sha256:1\n")
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", IMAGE,
                    out=f"{IMAGE}\nother:5000/proj@sha256:" + "c" * 64
                    + "\nreg:5000/proj@sha256:" + "b" * 64 + "\n")
    programs.expect("server", "docker_command", "image", "inspect", "--format", "{{.Id}}", IMAGE,
                    out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    result = pipeline.run(remote_config, quiet=True)
    assert result.image_digest == "sha256:" + "b" * 64


@pytest.mark.parametrize("in_registry", [None, "sha256:" + "b" * 64, StepError("clean", "HTTP 401")])
def test_an_image_known_there_under_another_tag_is_pushed_unless_the_registry_has_this_tag(
        programs, remote_config, socket_dir, states, monkeypatch, in_registry):
    # The same content built again under a new tag (an older pystributed's tag on it): the registry has a
    # digest of it, and maybe not this tag. It is asked; one that cannot say (a login) is pushed to.
    def digest(ref):
        assert ref == IMAGE
        if isinstance(in_registry, Exception):
            raise in_registry
        return in_registry

    monkeypatch.setattr(registry, "digest", digest)
    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, out="sha256:1\n")
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", IMAGE,
                    out=f"{IMAGE}\nreg:5000/proj:c96eb0af1e087b47\nreg:5000/proj@sha256:" + "b" * 64 + "\n")
    pushed = not isinstance(in_registry, str)
    if pushed:
        programs.expect("docker", "push", IMAGE, out=PUSHED)
    programs.expect("server", "docker_command", "image", "inspect", "--format", "{{.Id}}", IMAGE,
                    out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    assert pipeline.run(remote_config, quiet=True).image_digest == "sha256:" + ("a" if pushed else "b") * 64


def test_an_image_the_registry_lost_is_pushed_again(programs, remote_config, socket_dir):
    expect_pull_refused(programs, socket_dir, "manifest unknown")
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", IMAGE,
                    out="reg:5000/proj@sha256:" + "b" * 64 + "\n")
    programs.expect("docker", "push", IMAGE, out=PUSHED)
    programs.expect("server", "docker_command", "pull", IMAGE, out=b"")
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    assert pipeline.run(remote_config, quiet=True).image_digest == "sha256:" + "a" * 64


def test_a_pull_that_fails_otherwise_fails_the_run_and_discards_its_folder(programs, remote_config,
                                                                           socket_dir,
                                                                          states):
    expect_pull_refused(programs, socket_dir, "unauthorized: authentication required")
    programs.expect("server", "rmdir_run", RUN_DIR)
    expect_disconnect(programs, socket_dir)
    with pytest.raises(StepError) as error:
        pipeline.run(remote_config, quiet=True)
    assert error.value.step == "pull" and error.value.hint == (
        "Can the server reach reg:5000, and is it logged in there (`docker login reg:5000` on gpu-box)?")
    assert states == ["starting", "failed"]


def test_remote_build_sends_the_context_over_ssh(programs, socket_dir, states):
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", TRANSPORT="remote-build",
                      SSH_OPTIONS=["-F", "/cfg"],
                      REMOTE_WORKDIR="runs with space/$(x)")
    image = "pystributed:0123456789abcdef-fedcba9876543210"
    expect_connect(programs, socket_dir, "python:3.11-slim")  # BASE_IMAGE's id there is asked at once
    programs.expect("server", "docker_command", "image", "inspect", "--format", "{{.Id}}", image, code=1)
    programs.expect("server", "docker_command", "build", "--quiet", "--tag", image, "-", out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, *start_args(image, extra=()), stdout="hi\n")
    expect_end(programs)
    expect_disconnect(programs, socket_dir)
    result = pipeline.run(cfg, quiet=True)
    assert result.image == image and result.image_digest == ""
    assert programs.calls[4].stdin == b"the build context" and programs.calls[4].step == "build"


def test_local_runs_through_sh_in_the_home_without_push_or_pull(programs, states, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    image = "pystributed:0123456789abcdef-fedcba9876543210"
    run_dir = f"{tmp_path}/home/pystributed-runs/{RUN_ID}"
    programs.expect("server", "rundir", "pystributed-runs", RUN_ID, out=f"{run_dir}\n1000\n1000\n")
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", image, code=1)
    programs.expect("docker", "build", "--quiet", "--tag", image, "-", out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, *start_args(image, run_dir=run_dir, extra=()), stdout="hi\n")
    programs.expect("server", "finish", run_dir, RUN_ID, "false", ..., out="0\n")
    programs.expect("server", "fetch", run_dir, "", out=TAR)
    result = pipeline.run(cfg, quiet=True)
    assert result.server == "the local engine" and states == ["starting", "running", "succeeded", "succeeded"]
    for call in programs.calls:
        if call.words[0] == "server":
            assert call.argv[:2] == ["sh", "-c"] and call.cwd == str(tmp_path / "home")


def test_env_and_secrets_travel_on_stdin_not_on_any_command_line(programs, monkeypatch, tmp_path):
    monkeypatch.setenv("API_TOKEN", "s3cr3t-value")
    cfg = config.load(environ={}, REMOTE_SERVER="local", ENV={"MODE": "fast"}, SECRETS=["API_TOKEN"])
    programs.expect("server", "rundir", ..., out="/w/r\n1\n1\n")
    programs.expect("docker", "image", "inspect", ..., out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, ...)
    programs.expect("server", "finish", ..., out="0\n")
    programs.expect("server", "fetch", ..., out=TAR)
    result = pipeline.run(cfg, quiet=True)
    assert programs.calls[2].stdin == b"MODE=fast\nAPI_TOKEN=s3cr3t-value\n"
    assert not any("s3cr3t" in word for call in programs.calls for word in call.argv + call.words)
    assert "s3cr3t" not in result.to_json() and "API_TOKEN" in result.to_json()
    assert "s3cr3t" not in (result.local_path / "run.json").read_text()


def test_a_value_docker_cannot_take_from_its_env_file_is_refused(programs, monkeypatch):
    cfg = config.load(environ={}, REMOTE_SERVER="local", ENV={"MODE": "a\nb"})
    with pytest.raises(PystributedError, match="the value of MODE holds a newline, which docker's "
                                               "--env-file cannot"):
        pipeline.run(cfg, quiet=True)


def test_a_secret_missing_here_is_refused_before_anything_runs(programs, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    cfg = config.load(environ={}, REMOTE_SERVER="local", SECRETS=["API_TOKEN"])
    with pytest.raises(PystributedError,
                       match="SECRETS names API_TOKEN, which is not set in this environment"):
        pipeline.run(cfg, quiet=True)
    assert programs.calls == []


@pytest.mark.parametrize(("path", "tool", "message"), [
    ("/nonexistent", "docker", ("`docker` is not installed here (not found on PATH): pystributed runs it. "
                                "Install Docker: https://docs.docker.com/engine/install/")),
    ("bin-docker-only", "ssh", ("`ssh` is not installed here (not found on PATH): pystributed runs it. "
                                "Install the OpenSSH client (e.g. `apt-get install openssh-client`).")),
])
def test_a_missing_tool_is_named_before_anything_runs(programs, remote_config, monkeypatch, tmp_path, path,
                                                      tool,
                                                      message):
    (tmp_path / "bin-docker-only").mkdir()
    os.symlink(tmp_path / "bin" / "docker", tmp_path / "bin-docker-only" / "docker")
    monkeypatch.setenv("PATH", str(tmp_path / path) if path != "/nonexistent" else path)
    with pytest.raises(PystributedError) as error:
        pipeline.run(remote_config, quiet=True)
    assert str(error.value) == message
    assert programs.calls == []


def test_a_cell_that_does_not_compile_is_refused_before_anything_runs(programs, remote_config, tmp_path):
    (tmp_path / "user_code.py").write_text("x = 1\ny = (\n")
    with pytest.raises(PystributedError, match=r"^user_code.py does not compile: .* \(line 2\)$"):
        pipeline.run(remote_config, quiet=True)
    assert programs.calls == []


def test_no_saved_cell_or_an_empty_one_is_named(programs, remote_config, tmp_path):
    (tmp_path / "user_code.py").write_text("\n  \n")
    with pytest.raises(PystributedError, match="^the cell saved at user_code.py is empty: nothing to run$"):
        pipeline.run(remote_config, quiet=True)
    (tmp_path / "user_code.py").unlink()
    with pytest.raises(PystributedError, match=r"^there is no saved cell at user_code.py: mark a cell with "
                                               r"%%save_for_remote first \(or set USER_CODE_PATH\)$"):
        pipeline.run(remote_config, quiet=True)


def test_a_failing_cell_raises_after_fetching(programs, remote_config, socket_dir, states):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="", stderr="Killed\n")
    expect_end(programs, code=137)
    expect_disconnect(programs, socket_dir)
    with pytest.raises(RemoteCellError) as excinfo:
        pipeline.run(remote_config, quiet=True)
    msg = str(excinfo.value)
    assert msg.startswith(f"the cell failed with exit code 137\n(run {RUN_ID} on gpu-box, exit code 137)\n"
                          "The container was killed (SIGKILL), most likely for running out of memory.")
    assert msg.endswith("Remote output (end):\n  Killed\nLog: "
                        f"{os.path.realpath('results')}/{RUN_ID}/output.log")
    assert states == ["starting", "running", "failed", "failed"]
    assert excinfo.value.result.files == ["out.txt", "run.json"] and excinfo.value.result.exit_code == 137


def test_a_remote_exception_is_raised_as_its_own_type_with_the_cells_line_numbers(programs, monkeypatch):
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    trace = ('Traceback (most recent call last):\n  File "/app/user_code.py", line 1, in <module>\n'
             "ValueError: bad value\n")
    programs.expect("server", "rundir", ..., out="/w/r\n1\n1\n")
    programs.expect("docker", "image", "inspect", ..., out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, ..., stderr=trace)
    programs.expect("server", "finish", ..., out="1\n")
    programs.expect("server", "fetch", ..., out=TAR)
    with pytest.raises(ValueError) as excinfo:
        pipeline.run(cfg, quiet=True)
    assert isinstance(excinfo.value, RemoteCellError) and str(excinfo.value).startswith("ValueError: bad "
                                                                                        "value\n")
    assert 'File "user_code.py", line 1, in <module>' in str(excinfo.value)


def test_a_failing_build_fails_the_run_and_discards_its_folder(programs, remote_config, socket_dir, states):
    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("docker", "build", "--quiet", "--tag", IMAGE, "-", code=1, stderr="pip: no such package")
    programs.expect("server", "rmdir_run", RUN_DIR)
    expect_disconnect(programs, socket_dir)
    with pytest.raises(StepError) as error:
        pipeline.run(remote_config, quiet=True)
    assert error.value.step == "build" and error.value.output == "pip: no such package"
    assert error.value.hint == ("Is the Docker engine running here (`docker info`)? Check BASE_IMAGE and "
                                "REQUIREMENTS.")
    assert states == ["starting", "failed"]
    assert results.load_record("results", RUN_ID).status == "failed"


def test_an_interrupt_before_the_container_discards_the_folder(programs, remote_config, socket_dir, states):
    expect_connect(programs, socket_dir)
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE, code=1)
    programs.expect("docker", "build", "--quiet", "--tag", IMAGE, "-", out=KeyboardInterrupt())
    programs.expect("server", "rmdir_run", RUN_DIR)
    expect_disconnect(programs, socket_dir)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(remote_config, quiet=True)
    assert states == ["starting", "interrupted"]


def test_a_failed_connect_leaves_nothing_to_discard(programs, remote_config, socket_dir, states):
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ...)
    programs.expect("server", "rundir", ..., code=255, stderr="Connection closed by remote host")
    expect_disconnect(programs, socket_dir)
    with pytest.raises(StepError) as error:
        pipeline.run(remote_config, quiet=True)
    assert (error.value.step == "connect"
            and "REMOTE_WORKDIR (runs with space/$(x)) must be creatable" in error.value.hint)
    assert states == ["failed"]


def test_detach_starts_the_container_and_returns(programs, remote_config, socket_dir, states, capsys):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "start", *start_args())
    expect_disconnect(programs, socket_dir)
    result = pipeline.run(remote_config, detach=True)
    assert result.status == "running" and result.exit_code is None and result.local_path is None
    assert states == ["starting", "running"]
    assert programs.calls[-2].stdin == b""  # no ENV, no SECRETS
    assert capsys.readouterr().out.endswith(
        f"Run {RUN_ID} is running on gpu-box. Follow it and fetch its results with runner.attach('{RUN_ID}') "
        f"(or, in a shell, `python -m pystributed logs -f {RUN_ID}`, then `fetch {RUN_ID}`).\n")


def test_an_interrupt_stops_the_container_and_fetches_what_there_is(programs, remote_config, socket_dir,
                                                                    states,
                                                                    capsys):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), out=KeyboardInterrupt())
    programs.expect("server", "stop", RUN_ID)
    expect_end(programs, code=130)
    expect_disconnect(programs, socket_dir)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(remote_config)
    assert (f"\nInterrupted: stopping container {NAME} and fetching what "
            "results exist ...\n" in capsys.readouterr().out)
    assert states == ["starting", "running", "interrupted", "interrupted", "interrupted"]
    saved = results.load_record("results", RUN_ID)
    assert saved.status == "interrupted" and saved.exit_code == 130 and saved.files == ["out.txt", "run.json"]
    assert json.loads((saved.local_path / "run.json").read_text())["status"] == "interrupted"


def test_an_interrupt_whose_stop_fails_says_why_and_is_interrupted(programs, remote_config, socket_dir,
                                                                   states,
                                                                   capsys):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), out=KeyboardInterrupt())
    programs.expect("server", "stop", RUN_ID, code=1, stderr="Error: No such container")
    expect_disconnect(programs, socket_dir)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(remote_config)
    assert capsys.readouterr().out.endswith(
        f"\nInterrupted: stopping container {NAME} and fetching what results exist ...\n"
        f"run failed: `server.sh stop {RUN_ID}` on gpu-box exited with code 1\n    Error: No "
        "such container\n")
    assert states == ["starting", "running", "interrupted", "interrupted"]


def test_an_interrupt_with_on_interrupt_detach_leaves_the_run_going(programs, remote_config, socket_dir,
                                                                    states,
                                                                    capsys):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), out=KeyboardInterrupt())
    expect_disconnect(programs, socket_dir)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(remote_config, on_interrupt="detach")
    assert capsys.readouterr().out.endswith(f"\nInterrupted: run {RUN_ID} goes on on gpu-box (container "
                                       f"{NAME}). Reattach with runner.attach('{RUN_ID}').\n")
    assert states == ["starting", "running", "detached"]


def test_a_dropped_connection_leaves_the_run_going_there(programs, remote_config, socket_dir, states):
    expect_connect(programs, socket_dir)
    expect_ship(programs)
    programs.expect("server", "follow", RUN_ID, *start_args(), stdout="epoch 1\n", code=255,
                    stderr="client_loop: send disconnect: Broken pipe\n")
    expect_disconnect(programs, socket_dir)
    with pytest.raises(StepError) as error:
        pipeline.run(remote_config, quiet=True)
    assert str(error.value) == (
        "run failed: the connection to gpu-box dropped (ssh exit code 255)\n"
        "    client_loop: send disconnect: Broken pipe\n"
        f"The run goes on there. Follow it again and fetch its results with runner.attach('{RUN_ID}') once "
        "the server is reachable.")
    assert states == ["starting", "running", "detached"]


@pytest.mark.parametrize(("code", "hint"), [(255, ""), (125, EXIT_HINTS[125]), (127, EXIT_HINTS[127])])
def test_a_container_that_could_not_be_started_here_fails_the_run(programs, states, code, hint):
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    programs.expect("server", "rundir", ..., out="/w/r\n1\n1\n")
    programs.expect("docker", "image", "inspect", ..., out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, ..., code=code, stderr="docker: Error response from daemon\n")
    with pytest.raises(StepError) as error:
        pipeline.run(cfg, quiet=True)
    assert error.value.message == f"the container could not be started or followed (exit code {code})"
    assert error.value.hint == hint and error.value.output == "docker: Error response from daemon\n"
    assert states == ["starting", "running", "failed"]  # here, 255 is no dropped connection


def test_an_engine_the_user_may_not_use_is_named(programs, states):
    cfg = config.load(environ={}, REMOTE_SERVER="local")
    programs.expect("server", "rundir", ..., out="/w/r\n1\n1\n")
    programs.expect("docker", "image", "inspect", ..., out="sha256:1\n")
    programs.expect("server", "follow", RUN_ID, ..., code=126,
                    stderr="permission denied while trying to connect to the Docker daemon socket\n")
    with pytest.raises(StepError) as error:
        pipeline.run(cfg, quiet=True)
    assert error.value.hint.startswith("The user may not use Docker on the local engine: add it to the "
                                       "`docker` group")


# finish and fetch, for a run started earlier too (lifecycle uses them).

def run_of(cfg, place, **fields):
    return pipeline.Run(cfg, place, progress.steps_for(True),
                        result=results.RunResult(RUN_ID, server=place.name,
                                                                                         **fields))


@pytest.fixture
def local_cfg():
    return config.load(environ={}, REMOTE_SERVER="local")


def test_finish_reads_the_exit_code_or_the_state_another_process_saved(programs, local_cfg, capsys):
    run = run_of(local_cfg, local.Local(local_cfg), remote_dir="/w/r")
    programs.expect("server", "finish", "/w/r", RUN_ID, "false", ..., out="3\n")
    programs.expect("server", "finish", "/w/r", RUN_ID, "true", ...,
                    out='{"Cancelled":true,"State":{"Status":"exited","ExitCode":130}}\n')
    assert run.place.finish("/w/r", RUN_ID) == 3
    assert run.place.finish("/w/r", RUN_ID, cancelled=True) == 130
    assert capsys.readouterr().err == ""


def test_finish_warns_when_the_log_could_not_be_saved(programs, local_cfg, capsys):
    run = run_of(local_cfg, local.Local(local_cfg), remote_dir="/w/r")
    programs.expect("server", "finish", "/w/r", RUN_ID, "false", ..., out="0\nlog-not-saved\n")
    assert run.place.finish("/w/r", RUN_ID) == 0
    assert capsys.readouterr().err == (
        "warning: the output could not be saved as output.log in /w/r on the local engine (is its disk "
        f"full?); the container is kept, its output is in `docker logs {NAME}` there.\n")


def test_a_fetch_that_fails_leaves_the_record_without_a_results_folder(programs, local_cfg, tmp_path):
    run = run_of(local_cfg, local.Local(local_cfg), status="succeeded", remote_dir="/w/r")
    programs.expect("server", "fetch", "/w/r", "", code=2, stderr="tar: /w/r: Cannot open: No such "
                                                                  "file or directory")
    with pytest.raises(StepError) as error:
        pipeline.fetch(run)
    assert error.value.step == "fetch" and error.value.hint == (
        f"The results are still on the server in /w/r; fetch them again with runner.attach('{RUN_ID}').")
    assert run.result.local_path is None and run.result.log is None
    assert not (tmp_path / "results" / RUN_ID).exists()
    programs.expect("server", "fetch", "/w/r", "", out=tar_of({"./a.txt": b"a"}))
    pipeline.fetch(run)
    assert (run.result.local_path == (tmp_path / "results" / RUN_ID).resolve()
            and run.result.files == ["a.txt", "run.json"])
    assert results.load_record("results", RUN_ID).files == ["a.txt", "run.json"]


def test_a_run_that_goes_on_is_fetched_as_it_is_now(programs, local_cfg, tmp_path):
    run = run_of(local_cfg, local.Local(local_cfg), status="running", remote_dir="/w/r")
    programs.expect("server", "fetch", "/w/r", "going", out=tar_of({"./log.txt": b"step 1\n"}))
    pipeline.fetch(run, going=True)
    assert (tmp_path / "results" / RUN_ID / "log.txt").read_text() == "step 1\n"


def test_what_is_left_out_of_a_fetch_is_named(programs, local_cfg, capsys):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("./link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    run = pipeline.Run(local_cfg, local.Local(local_cfg), progress.steps_for(False),
                       result=results.RunResult(RUN_ID, remote_dir="/w/r"))
    programs.expect("server", "fetch", "/w/r", "", out=buf.getvalue())
    pipeline.fetch(run)
    assert capsys.readouterr().out.endswith("fetch: left out (not plain files inside the run "
                                            "folder): ./link\n")


def test_results_that_cannot_be_written_here_fail_the_fetch_step_with_what_to_do(programs, local_cfg,
                                                                                 tmp_path,
                                                                                  monkeypatch):
    def full_disk(stream, folder, on_bytes):
        stream.read()  # the copy itself goes through
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline.results, "_extract_into", full_disk)
    run = run_of(local_cfg, local.Local(local_cfg), status="succeeded", remote_dir="/w/r")
    programs.expect("server", "fetch", "/w/r", "", out=TAR)
    with pytest.raises(StepError, match=r"fetch failed: the results could not be written to results/"
                                        r"20261125-101502-3fa9c1: \[Errno 28\] No space "
                                        r"left on device") as error:
        pipeline.fetch(run)
    assert "Make room there" in error.value.hint and "runner.attach(" in error.value.hint
    assert run.result.local_path is None and not list((tmp_path / "results").iterdir())


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
def test_a_container_put_away_by_two_processes_keeps_its_log_and_exit_code(tmp_path, monkeypatch, capsys,
                                                                           other,
                                                                           local_cfg):
    # A notebook following the run and `wait` (or `cancel`) in a shell both put the container away:
    # server.sh run for real by sh, with a fake docker.
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    monkeypatch.setenv("FAKE", str(tmp_path))
    (tmp_path / "run").mkdir()
    run = run_of(local_cfg, local.Local(local_cfg), remote_dir=str(tmp_path / "run"))
    assert run.place.finish(run.result.remote_dir, RUN_ID) == 3  # the first
    if other == "between our wait and our save":
        monkeypatch.setenv("FAKE_WAITED", "1")
    assert run.place.finish(run.result.remote_dir, RUN_ID) == 3  # the second
    assert (tmp_path / "run" / "output.log").read_text() == "the whole output\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".pystributed-state.json", "output.log"]
    assert "warning" not in capsys.readouterr().err


def test_layer_progress_counts_the_layers_through():
    steps = progress.Steps(quiet=True)
    with steps.step("push"):
        out = pipeline.layer_progress(steps, "Pushed", "exists")(io.BytesIO(
            b"The push refers to repository [reg:5000/proj]\naaaaaaaaaaaa: Preparing\nbbbbbbbbbbbb: "
            b"Preparing\naaaaaaaaaaaa: Layer already exists\nbbbbbbbbbbbb: Pushed\nlatest: digest: "
            b"sha256:1 size: 2\n"))
    assert steps.rows[-1][5] == "2/2 layers" and out.endswith("latest: digest: sha256:1 size: 2\n")
