"""server.sh itself, run for real by `sh` through the `Local` place (and through each login shell
the way ssh makes it run the fixed `sh -c '…'` line), against a fake `docker` on PATH that logs
its arguments and answers from files. HOME, where sh starts, is a folder of the test's own."""
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pystributed import config, context, docker, results
from pystributed.errors import EXIT_HINTS, StepError
from pystributed.places import local, server

RUN_ID = "20261125-101502-3fa9c1"
NAME = f"pystributed-{RUN_ID}"
STATE_FORMAT = ('{"Cancelled":false,"Name":{{json .Name}},"Image":{{json .Config.Image}},"State":{{json '
                '.State}},"Mounts":{{json .Mounts}}}')
# Words a shell would change if any shell on the way read them: each must reach docker as it is.
WORDS = ["a b", "it's", '"double"', "$HOME", "${HOME}", "$(touch pwned)", "`touch pwned`", "back\\slash",
         "trailing\\", "bang!", "!!", "two\nlines", "", " ", "-n", "--", "*", "~", "tab\there", "semi;colon",
         "a|b&c>d", "#hash", "%C", "{a,b}", "é ünïcode", "'", '"', "\\'"]

FAKE_DOCKER = r"""#!/bin/sh
# A fake engine: logs each call's words (their count, then each, all NUL-terminated), saves what
# `docker build` and `docker run --env-file /dev/stdin` read on stdin, and answers from the files
# KEY.out (stdout), KEY.err (stderr), KEY.code (exit code), KEY being the command (`container-ls`).
key=$1
case $1 in container | image) key=$1-$2 ;; esac
printf '%s\0' "$#" "$@" >>"$FAKE/calls"
case " $* " in *" --env-file /dev/stdin "* | " build "*) cat >"$FAKE/$key.stdin" ;; esac
if [ -f "$FAKE/$key.out" ]; then cat "$FAKE/$key.out"; fi
if [ -f "$FAKE/$key.err" ]; then cat "$FAKE/$key.err" >&2; fi
exit "$(cat "$FAKE/$key.code" 2>/dev/null || echo 0)"
"""


class Engine:
    def __init__(self, folder):
        self.folder = folder

    def answer(self, key, out="", *, err="", code=0):
        (self.folder / f"{key}.out").write_text(out)
        (self.folder / f"{key}.err").write_text(err)
        (self.folder / f"{key}.code").write_text(str(code))

    def calls(self):
        """The words of each docker command, in order."""
        path = self.folder / "calls"
        words = path.read_text().split("\0")[:-1] if path.exists() else []
        found = []
        while words:
            count = int(words.pop(0))
            found.append(words[:count])
            del words[:count]
        return found

    def stdin(self, key):
        return (self.folder / f"{key}.stdin").read_bytes()


@pytest.fixture(params=["dash", "bash"])
def sh(request):
    """Which shell `sh` is: server.sh is POSIX, so both run it alike (bash as `sh` is POSIX mode)."""
    return shutil.which(request.param)


@pytest.fixture
def engine(tmp_path, monkeypatch, home):
    """The fake docker first on PATH, and `sh` as dash (the `sh` fixture may make it bash)."""
    bin_dir, folder = tmp_path / "bin", tmp_path / "engine"
    bin_dir.mkdir()
    folder.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (bin_dir / "sh").symlink_to(shutil.which("dash"))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE", str(folder))
    return Engine(folder)


@pytest.fixture
def as_sh(engine, sh, tmp_path):
    (tmp_path / "bin" / "sh").unlink()
    (tmp_path / "bin" / "sh").symlink_to(sh)


def settings(workdir="pystributed-runs"):
    return config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=workdir)


def place_for(workdir="pystributed-runs"):
    return local.Local(settings(workdir))


class Through(local.Local):
    """A place reached the way ssh reaches a server: the login shell `shell` is given the fixed
    line `sh -c '…'` (after a `banner`, as startup files print one), the program on stdin."""

    def __init__(self, config, shell, banner=""):
        super().__init__(config)
        self.shell, self.banner = shell, banner

    def argv(self, size):
        return [self.shell, "-c", f"{self.banner}sh -c '{server.LOADER.format(size)}'"]


# In CI (`scripts/sandbox.sh install --all` put them there) a missing shell fails its tests instead.
LOGIN_SHELLS = [pytest.param(name, marks=pytest.mark.skipif(
                    not shutil.which(name) and os.environ.get("CI") != "true", reason=f"{name} is not "
                                                                                      "installed"))
                for name in ("dash", "bash", "fish", "tcsh", "zsh")]


def run_dir(home, name=RUN_ID, workdir="pystributed-runs"):
    folder = home / workdir / name
    folder.mkdir(parents=True)
    return folder


# How the program reaches sh: through every login shell, with its arguments and its input unchanged.

@pytest.mark.parametrize("shell", LOGIN_SHELLS)
def test_arguments_reach_the_script_unchanged_through_every_login_shell(engine, as_sh, home, shell):
    place = Through(settings(), shell)
    assert place.docker(["docker", "echo", *WORDS], step="build") == ""
    assert engine.calls() == [["echo", *WORDS]]
    assert not place.noisy
    assert not list(home.rglob("pwned")) and not (home.parent / "pwned").exists()


@pytest.mark.parametrize("shell", LOGIN_SHELLS)
def test_the_actions_input_follows_the_program_unread_through_every_login_shell(engine, as_sh, shell):
    context = os.urandom(300_000)  # a build context: binary, larger than any pipe's buffer
    place = Through(settings(), shell)
    place.docker(["docker", "build", "--quiet", "--tag", "x:1", "-"], step="build",
                 stdin=lambda pipe: pipe.write(context))
    assert engine.stdin("build") == context
    place.start(["--detach", "--env-file", "/dev/stdin", "img"], {"A": "1 2", "B": "x=$y 'q'"})
    assert engine.stdin("run") == b"A=1 2\nB=x=$y 'q'\n"


@pytest.mark.parametrize("shell", LOGIN_SHELLS)
def test_what_a_startup_file_prints_before_the_answer_is_skipped(engine, as_sh, home, shell):
    place = Through(settings("runs dir/it's $HOME"), shell, banner="echo Welcome to the GPU box; ")
    path, user = place.prepare(RUN_ID)
    assert path == str(home / "runs dir" / "it's $HOME" / RUN_ID) and user == f"{os.getuid()}:{os.getgid()}"
    assert place.noisy
    engine.answer("logs", "the output\n")
    out = []
    assert place.follow(RUN_ID, out.append, out.append) == 0
    assert "".join(out) == "the output\n"
    (home / "runs dir" / "it's $HOME" / RUN_ID / "a.txt").write_text("A")
    files, _ = place.fetch(path, lambda stream: results.extract(stream, home / "back"))
    assert files == ["a.txt"] and (home / "back" / "a.txt").read_text() == "A"


def test_a_banner_without_a_newline_is_skipped_too(engine, home):
    place = Through(settings(), "dash", banner="printf 'no newline'; ")
    assert place.prepare(RUN_ID)[0] == str(home / "pystributed-runs" / RUN_ID)
    run_dir(home, "fetched")
    (home / "pystributed-runs" / "fetched" / "f").write_text("x")

    def names(stream):
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            return tar.getnames()

    assert place.fetch(str(home / "pystributed-runs" / "fetched"), names) == [".", "./f"]
    assert place.noisy


def test_a_shell_that_never_answers_is_named(engine):
    class NotSh(local.Local):
        def argv(self, size):
            return ["sh", "-c", "cat >/dev/null; echo 'Welcome'"]

    with pytest.raises(StepError) as error:
        NotSh(settings()).call("missing", "x", step="connect")
    assert error.value.message == "the server's answer was not understood (no answer line)"
    assert error.value.hint == "Is `sh` there a POSIX shell?" and error.value.output == "Welcome\n"
    with pytest.raises(StepError, match="fetch failed: the server's answer ended before it began"):
        NotSh(settings()).fetch("/x", lambda stream: stream.read())


# The actions.

def test_rundir_makes_the_run_folder_and_answers_its_path_and_the_user(engine, as_sh, home):
    place = place_for("runs dir/it's $HOME")
    assert place.prepare(RUN_ID) == (str(home / "runs dir" / "it's $HOME" / RUN_ID),
                                     f"{os.getuid()}:{os.getgid()}")
    assert place.platform == docker.platform_of(os.uname().machine)  # this machine's, from its `uname -m`
    assert (home / "runs dir" / "it's $HOME" / RUN_ID).is_dir()
    assert place_for("~/in home").prepare(RUN_ID)[0] == str(home / "in home" / RUN_ID)
    assert place_for("~").prepare(RUN_ID)[0] == str(home / RUN_ID)
    assert (place_for(str(home.parent / "elsewhere")).prepare(RUN_ID)[0]
            == str(home.parent / "elsewhere" / RUN_ID))
    assert engine.calls() == []


def test_rundir_asks_the_base_images_id_for_a_build_there(engine, home):
    cfg = config.load(environ={}, REMOTE_SERVER="local", TRANSPORT="remote-build", BASE_IMAGE="lab/base:1")
    engine.answer("image-inspect", "sha256:b1\n")
    place = local.Local(cfg)
    place.prepare(RUN_ID)
    assert place.base_id == "sha256:b1"
    assert engine.calls()[-1] == ["image", "inspect", "--format", "{{.Id}}", "--", "lab/base:1"]
    engine.answer("image-inspect", code=1)  # not there: the build step pulls it (features/base.py)
    place.prepare(RUN_ID)
    assert place.base_id == ""


def test_a_server_without_docker_is_named_as_such(tmp_path, monkeypatch, home):
    # Real sh and the few tools the actions need on PATH, no docker: sh's own "docker: not found".
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("sh", "dd", "mkdir", "id", "uname"):
        (bare / tool).symlink_to(shutil.which("dash" if tool == "sh" else tool))
    monkeypatch.setenv("PATH", str(bare))
    place = place_for()
    assert place.prepare(RUN_ID)[0].endswith(RUN_ID)  # `docker info` there is only asked
    with pytest.raises(StepError) as error:
        place.docker(docker.pull("img:1"), step="pull", hint="the caller's hint")
    assert error.value.code == 127 and "docker: not found" in error.value.output
    assert error.value.hint == ("`docker` is not installed on the local engine (not on PATH): install Docker "
                                "Engine (or Podman with its `docker` command).")


def test_rundir_that_cannot_be_made_fails_the_connect_step(engine, home):
    (home / "a file").write_text("")
    with pytest.raises(StepError) as error:
        place_for("a file/runs").prepare(RUN_ID)
    assert error.value.step == "connect" and "Not a directory" in error.value.output
    assert error.value.hint.endswith("REMOTE_WORKDIR (a file/runs) must be creatable there.")


def test_a_run_folder_docker_could_not_mount_is_refused(engine, tmp_path, monkeypatch):
    (tmp_path / "a:b").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "a:b"))
    with pytest.raises(StepError) as error:
        place_for().prepare(RUN_ID)
    assert error.value.step == "connect"
    assert (error.value.message == f"the run folder {tmp_path}/a:b/pystributed-runs/{RUN_ID} holds a ':', "
                                   "which docker cannot mount")


def test_rmdir_run_removes_only_an_empty_run_folder(engine, home):
    empty, kept = run_dir(home, "empty"), run_dir(home, "kept")
    (kept / "output.log").write_text("x")
    place = place_for()
    place.discard(str(empty))
    place.discard(str(kept))
    place.discard(str(home / "never made"))
    assert not empty.exists() and kept.is_dir()


def test_cell_keeps_the_cells_files_by_their_hash_when_the_image_is_there(engine, as_sh, home):
    files = {"app/cell.py": b"print(2)\n", "pystributed/in.pickle": b"\x80data"}
    archive = context.cell_archive(files)
    place = place_for("runs dir/it's $HOME")
    engine.answer("image-inspect", code=1)
    assert place.cell_image("reg:5000/p:lower-cell", "s" * 64, archive) is None  # no such image: nothing kept
    assert not (home / "runs dir" / "it's $HOME" / ".cells").exists()
    engine.answer("image-inspect",
                  "sha256:id reg:5000/p@sha256:" + "d" * 64 + " other/p@sha256:" + "e" * 64 + "\n")
    digest, folder = place.cell_image("reg:5000/p:lower-cell", "s" * 64, archive)
    assert (digest == "sha256:" + "d" * 64
            and folder == str(home / "runs dir" / "it's $HOME" / ".cells" / ("s" * 64)))
    assert {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()} == {
        name: data for name, data in files.items()}
    assert engine.calls()[-1] == ["image", "inspect", "--format",
                                  "{{.Id}}{{range .RepoDigests}} {{.}}{{end}}", "--",
                                  "reg:5000/p:lower-cell"]
    # Kept once: a second run of the same cell finds the folder (and reads its input all the same).
    (Path(folder) / "app" / "cell.py").write_bytes(b"as kept\n")
    assert place.cell_image("reg:5000/p:lower-cell", "s" * 64, archive)[1] == folder
    assert (Path(folder) / "app" / "cell.py").read_bytes() == b"as kept\n"
    assert [p.name for p in Path(folder).parent.iterdir()] == ["s" * 64]  # no folder of an extraction left


def test_a_run_that_keeps_the_same_cell_just_after_another_leaves_no_folder_of_its_own(engine, home,
                                                                                       tmp_path):
    # The other run's rename lands between this one's `[ -d SHA ]` and its `mv`: mv then moves
    # this run's folder into the other's.
    (tmp_path / "bin" / "mv").write_text('#!/bin/sh\nfor last; do :; done\nmkdir -p -- "$last"\nexec '
                                         f'{shutil.which("mv")} "$@"\n')
    (tmp_path / "bin" / "mv").chmod(0o755)
    engine.answer("image-inspect", "sha256:id\n")
    folder = place_for().cell_image("p:lower-cell", "s" * 64,
                                    context.cell_archive({"app/cell.py": b"1\n"}))[1]
    assert list(Path(folder).parent.rglob(".new-*")) == []


def test_next_attempt_marks_the_task_folder_and_removes_the_state_of_the_one_before(engine, home):
    folder = home / "runs" / "sweep" / "2"
    folder.mkdir(parents=True)
    (folder / ".pystributed-state.json").write_text("{}")
    place_for().call("next_attempt", str(folder), "2", step="start")
    assert sorted(p.name for p in folder.iterdir()) == [".pystributed-attempt"]
    assert (folder / ".pystributed-attempt").read_text() == "2\n"


def test_follow_starts_the_container_with_its_environment_then_follows_its_output(engine, as_sh):
    engine.answer("run", "container-id\n")
    engine.answer("logs", "out 1\nout 2\n", err="warn\n")
    start = docker.run_detached("img:1", run_id=RUN_ID, results_dir="/w/r", user="1:2",
                                env={"PYSTRIBUTED_RESULTS": "/results"})[2:]
    out, err = [], []
    assert place_for().follow(RUN_ID, out.append, err.append, start=start, env={"SECRET": "s3 cr$t"}) == 0
    assert engine.calls() == [["run", *start], ["logs", "--follow", NAME]]
    assert engine.stdin("run") == b"SECRET=s3 cr$t\n"
    assert "".join(out) == "out 1\nout 2\n" and "".join(err) == "warn\n"  # not the container id


def test_follow_of_a_container_that_could_not_start_answers_dockers_code(engine):
    engine.answer("run", err="docker: Error response from daemon: bad --gpus.\n", code=125)
    err = []
    assert place_for().follow(RUN_ID, print, err.append, start=["img"], env={}) == 125
    assert engine.calls() == [["run", "img"]]  # no logs of a container that is not there
    assert "bad --gpus" in "".join(err)


def test_follow_without_start_only_follows(engine):
    engine.answer("logs", "again\n")
    out = []
    assert place_for().follow(RUN_ID, out.append, print) == 0
    assert engine.calls() == [["logs", "--follow", NAME]] and out == ["again\n"]


def test_start_starts_the_container_and_returns(engine, as_sh):
    engine.answer("run", "container-id\n")
    assert place_for().start(["--detach", "--env-file", "/dev/stdin", "img"], {"A": "1"}) is None
    assert engine.calls() == [["run", "--detach", "--env-file", "/dev/stdin", "img"]]
    assert engine.stdin("run") == b"A=1\n"


def test_a_container_that_does_not_start_fails_the_start_step_with_dockers_message(engine):
    engine.answer("run", err="docker: Error response from daemon: could not select device driver.\n",
                  code=125)
    with pytest.raises(StepError) as error:
        place_for().start(["img"], {})
    assert error.value.step == "start" and error.value.code == 125
    assert "could not select device driver" in error.value.output and error.value.hint == EXIT_HINTS[125]


def test_stop_interrupts_the_cell_then_stops_the_container(engine):
    engine.answer("kill", err="Error: container is not running\n", code=1)  # it ended meanwhile: no matter
    place_for().stop(RUN_ID)
    assert engine.calls() == [["kill", "--signal", "INT", NAME], ["stop", "--time", "10", NAME]]
    engine.answer("stop", err="Error: No such container\n", code=1)
    with pytest.raises(StepError, match="cancel failed"):
        place_for().stop(RUN_ID, step="cancel")


@pytest.mark.parametrize("cancelled", [False, True])
def test_finish_saves_the_log_and_state_then_removes_the_container(engine, as_sh, home, cancelled):
    folder = run_dir(home, "it's a run")
    engine.answer("wait", "3\n")
    engine.answer("logs", "the whole output\n", err="and its stderr\n")
    engine.answer("container-inspect", '{"Cancelled":false,"State":{"ExitCode":3}}\n')
    assert place_for().finish(str(folder), RUN_ID, cancelled=cancelled) == 3
    state_format = STATE_FORMAT.replace("false", "true") if cancelled else STATE_FORMAT
    calls = engine.calls()  # the log and the state are read at the same time: in either order
    assert calls[0] == ["wait", NAME] and calls[-1] == ["rm", "--force", NAME]
    assert sorted(calls[1:-1]) == [["container", "inspect", "--format", state_format, NAME], ["logs", NAME]]
    # no partial ones
    assert sorted(p.name for p in folder.iterdir()) == [".pystributed-state.json", "output.log"]
    assert (folder / "output.log").read_text() == "the whole output\nand its stderr\n"
    assert (folder / ".pystributed-state.json").read_text() == '{"Cancelled":false,"State":{"ExitCode":3}}\n'


def test_finish_of_a_container_put_away_already_answers_its_saved_state(engine, home):
    folder = run_dir(home)
    (folder / ".pystributed-state.json").write_text('{"State":{"ExitCode":4}}\n')
    engine.answer("wait", err=f"Error response from daemon: No such container: {NAME}\n", code=1)
    assert place_for().finish(str(folder), RUN_ID) == 4  # from the state the other saved
    assert engine.calls() == [["wait", NAME]]
    (folder / ".pystributed-state.json").unlink()  # and no state either: the step fails
    with pytest.raises(StepError, match="run failed"):
        place_for().finish(str(folder), RUN_ID)


def test_finish_keeps_the_container_whose_log_could_not_be_saved(engine, home):
    folder = run_dir(home)
    engine.answer("wait", "0\n")
    engine.answer("logs", err="write error: no space left on device\n", code=1)
    assert place_for().finish(str(folder), RUN_ID) == 0
    calls = engine.calls()  # the log and the state are read at the same time: in either order
    assert calls[0] == ["wait", NAME] and calls[-1] == ["container", "inspect", NAME]  # no rm
    assert sorted(calls[1:-1]) == [["container", "inspect", "--format", STATE_FORMAT, NAME], ["logs", NAME]]
    assert list(folder.iterdir()) == []  # nor a partial log


def test_fetch_answers_the_run_folder_as_a_tar_stream(engine, as_sh, home):
    folder = run_dir(home, "run 'dir'")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    (folder / "a.txt").write_text("A")
    files, skipped = place_for().fetch(str(folder), lambda stream: results.extract(stream, home / "back"))
    assert files == ["a.txt", "sub/b.bin"] and skipped == []
    assert (home / "back" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    with pytest.raises(StepError) as error:
        place_for().fetch(str(home / "gone"), lambda stream: stream.read(), hint="Fetch again.")
    assert error.value.step == "fetch" and error.value.hint == "Fetch again."


def test_fetch_of_a_run_that_goes_on_takes_a_file_changed_as_tar_read_it(engine, tmp_path, home):
    # GNU tar, reading a file that the run is writing: a whole archive, a warning, exit code 1.
    (tmp_path / "bin" / "tar").write_text(
        f"#!/bin/sh\n{shutil.which('tar')} \"$@\"\necho 'tar: ./log.txt: file changed as we read "
        "it' >&2\nexit 1\n")
    (tmp_path / "bin" / "tar").chmod(0o755)
    folder = run_dir(home)
    (folder / "log.txt").write_text("step 1\n")

    def read(stream):
        return results.extract(stream, home / "back")

    assert place_for().fetch(str(folder), read, going=True) == (["log.txt"], [])
    # an ended run's folder must not change
    with pytest.raises(StepError, match="file changed as we read it"):
        place_for().fetch(str(folder), read)


def test_survey_answers_the_run_folders_their_logs_states_and_containers(engine, as_sh, home):
    workdir = home / "runs dir"
    logged, stated = run_dir(home, RUN_ID, "runs dir"), run_dir(home, "20261125-101503-aaaaaa", "runs dir")
    (workdir / "not a run").mkdir()
    (workdir / "a file").write_text("")
    (logged / "output.log").write_text("x")
    (stated / ".pystributed-state.json").write_text('{"State":{"ExitCode":0}}\n')
    os.utime(logged, (1764072000.5, 1764072000.5))
    sweep = workdir / "sweep-20261125-101504-bbbbbb"
    (sweep / "0").mkdir(parents=True)
    (sweep / "1").mkdir()
    (sweep / "1" / ".pystributed-state.json").write_text(
        '{"Name":"/pystributed-sweep-20261125-101504-bbbbbb-1"}\n')
    engine.answer("container-ls", "id1\nid2\n")
    engine.answer("container-inspect", '{"Name":"/c1"}\n{"Name":"/c2"}\n')
    sections = place_for("runs dir").survey()
    # (slurm_jobs: whatever a squeue on this machine answers; test_slurm_sh.py fakes it)
    assert sorted(set(sections) - {"slurm_jobs"}) == ["containers", "envs", "folders", "image_files", "logs",
                                                      "now", "states", "sweep_states", "sweeps", "workdir"]
    assert sorted(line.rsplit(" ", 1)[0] for line in sections["sweeps"]) == [sweep.name, f"{sweep.name}/0",
                                                                             f"{sweep.name}/1"]
    assert sections["sweep_states"] == ['{"Name":"/pystributed-sweep-20261125-101504-bbbbbb-1"}']
    assert abs(float(sections["now"][0]) - time.time()) < 60
    assert sections["workdir"] == [str(workdir)]
    assert sorted(line.rsplit(" ", 1)[0] for line in sections["folders"]) == [
        RUN_ID, "20261125-101503-aaaaaa", "not a run", sweep.name]
    assert f"{RUN_ID} 1764072000.5" in [line[:len(RUN_ID) + 13] for line in sections["folders"]]
    assert sections["logs"] == [f"./{RUN_ID}"]
    assert sections["states"] == ['{"State":{"ExitCode":0}}']
    assert sections["containers"] == ['{"Name":"/c1"}', '{"Name":"/c2"}']
    assert engine.calls() == [["container", "ls", "--all", "--quiet", "--no-trunc", "--filter",
                               "label=pystributed.run"],
                              ["container", "inspect", "--format", STATE_FORMAT, "id1", "id2"]]


def test_survey_of_one_run_looks_at_it_alone(engine, home):
    other = run_dir(home, "20261125-101503-aaaaaa")
    (other / "output.log").write_text("x")
    (run_dir(home) / "output.log").write_text("x")
    engine.answer("container-ls", "")  # no container: nothing to inspect
    sections = place_for().survey(RUN_ID)
    assert [line.split()[0]
            for line in sections["folders"]] == [RUN_ID] and sections["logs"] == [f"./{RUN_ID}"]
    assert sections["containers"] == []
    assert engine.calls() == [["container", "ls", "--all", "--quiet", "--no-trunc", "--filter",
                               f"label=pystributed.run={RUN_ID}"]]


def test_survey_without_a_workdir_still_lists_the_containers(engine):
    engine.answer("container-ls", "id1\n")
    engine.answer("container-inspect", "{}\n")
    sections = place_for("never made").survey()
    assert sorted(sections) == ["containers", "now"] and sections["containers"] == ["{}"]


def test_survey_names_an_engine_it_may_not_use(engine):
    engine.answer("container-ls", err="permission denied while trying to connect to the Docker "
                                      "daemon socket\n",
                  code=1)
    with pytest.raises(StepError) as error:
        place_for().survey()
    assert error.value.step == "status"
    assert error.value.hint.startswith("The user may not use Docker on the local engine: add it to the "
                                       "`docker` group")


@pytest.mark.parametrize("follow", [False, True])
def test_logs_come_from_the_container_while_it_is_there(engine, home, follow):
    engine.answer("logs", "out\n", err="err\n")
    out, err = [], []
    assert place_for().logs(str(run_dir(home)), RUN_ID, out.append, err.append, follow=follow) == 0
    assert engine.calls() == [["container", "inspect", NAME],
                              ["logs", *(["--follow"] if follow else []), NAME]]
    assert "".join(out) == "out\n" and "".join(err) == "err\n"


def test_logs_come_from_the_saved_log_once_the_container_is_gone(engine, home):
    folder = run_dir(home, "it's")
    (folder / "output.log").write_text("saved output\n")
    engine.answer("container-inspect", err="Error: No such container\n", code=1)
    out = []
    assert place_for().logs(str(folder), RUN_ID, out.append, out.append, follow=True) == 0
    assert "".join(out) == "saved output\n" and engine.calls() == [["container", "inspect", NAME]]
    out.clear()
    assert place_for().logs(str(home / "none"), RUN_ID, out.append, out.append) == 0 and "".join(out) == ""


def test_images_with_the_workdir_answers_the_cells_no_run_used_for_an_hour_and_no_container_mounts(engine,
                                                                                                   home):
    cells = home / "runs" / ".cells"
    for name in ("old", "mounted", "new", ".new-leftover"):
        (cells / name / "app").mkdir(parents=True)
    for name in ("old", "mounted", ".new-leftover"):
        os.utime(cells / name, (time.time() - 3700, time.time() - 3700))
    engine.answer("container-ls", "c1\n")  # (the images of `ls --format`, and the ids of `ls --quiet`)
    engine.answer("container-inspect", f"{cells}/mounted/app/cell.py\n\n")
    found = place_for("runs").images("reg:5000/proj")
    assert sorted(found["cells"]) == [f"{cells}/.new-leftover", f"{cells}/old"]
    assert engine.calls()[-1] == ["container", "inspect", "--format", ("{{range .Mounts}}{{println "
                                                                      ".Source}}{{end}}"), "c1"]
    # A folder a run uses again is touched: it stays another hour.
    engine.answer("image-inspect", "sha256:id\n")
    place_for("runs").cell_image("p:lower-cell", "old", context.cell_archive({"app/cell.py": b"1\n"}))
    assert sorted(place_for("runs").images("reg:5000/proj")["cells"]) == [f"{cells}/.new-leftover"]
    (home / "elsewhere").mkdir()
    assert place_for("elsewhere").images("reg:5000/proj")["cells"] == []  # no .cells there
    # The mounts cannot be read (a container removed between ls and inspect): no folder is taken for stale.
    engine.answer("container-inspect", err="Error: No such container: c1\n", code=1)
    assert "cells" not in place_for("runs").images("reg:5000/proj")
    # remove_cells removes only those still stale: `new` was used within the hour.
    engine.answer("container-inspect", "\n")
    place_for("runs").remove_cells([f"{cells}/.new-leftover", f"{cells}/new"])
    assert sorted(p.name for p in cells.iterdir()) == ["mounted", "new", "old"]


def test_images_answers_the_images_in_use_then_the_repositorys(engine):
    engine.answer("container-ls", "reg:5000/proj:1\nubuntu\n")
    engine.answer("image-ls", "reg:5000/proj:1\nreg:5000/proj:2\n")
    assert place_for().images("reg:5000/proj") == {"used": ["reg:5000/proj:1", "ubuntu"],
                                                   "images": ["reg:5000/proj:1", "reg:5000/proj:2"],
                                                   "cells": []}
    assert engine.calls() == [["container", "ls", "--all", "--format", "{{.Image}}"],
                              ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--", "reg:5000/proj"]]
    # (no .cells in REMOTE_WORKDIR: no more questions)


def test_remove_removes_the_folders_given(engine, home):
    one, two, kept = run_dir(home, "one $x"), run_dir(home, "two 'y'"), run_dir(home, "kept")
    (one / "f").write_text("x")
    place_for().remove([str(one), str(two)])
    assert not one.exists() and not two.exists() and kept.exists()


def test_missing_answers_the_paths_that_do_not_exist(engine, home):
    (home / "there $x").write_text("")
    answer = place_for().call("missing", str(home / "there $x"), "/no such/path", "relative gone", "there $x",
                              step="data")
    assert answer.splitlines() == ["/no such/path", "relative gone"]  # relative to the home, where sh starts


def test_docker_command_runs_dockers_words_and_answers_its_output(engine):
    engine.answer("image-inspect", "sha256:1\n")
    assert place_for().docker(docker.inspect_image("img:1"), step="pull") == "sha256:1\n"
    assert engine.calls() == [docker.inspect_image("img:1")[1:]]
    engine.answer("pull", err="Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n", code=1)
    with pytest.raises(StepError) as error:
        place_for().docker(docker.pull("img:1"), step="pull")
    assert error.value.step == "pull" and error.value.code == 1
    assert (error.value.hint == "Docker is not running on the local engine: start it there (`sudo systemctl "
                                "start docker`).")


def test_the_program_is_read_by_sh_alone(engine, tmp_path):
    """What the login shell runs is only the loader; the rest would be a syntax error to fish or tcsh."""
    program = server.program("missing", "/nowhere")
    proc = subprocess.run(["sh", "-c", server.LOADER.format(len(program))], input=program + b"trailing "
                                                                                            b"input\n",
                          capture_output=True, check=True, cwd=tmp_path)
    assert proc.stdout == f"{server.MARK}\n/nowhere\n".encode()
    assert program.endswith(b"\nmissing /nowhere\n")


def test_fetch_tasks_sends_the_tasks_folders_that_are_there_in_one_stream(engine, as_sh, home):
    place = place_for()
    sweep = run_dir(home, "sweep-1")
    for index in (0, 1, 3):
        (sweep / str(index)).mkdir()
        (sweep / str(index) / "output.log").write_text(f"task {index}\n")

    def names(stream):
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            return sorted(tar.getnames())

    assert place.fetch_tasks(str(sweep), [0, 1, 2], names) == ["0", "0/output.log", "1", "1/output.log"]
    assert place.fetch_tasks(str(sweep), [5], names) == []
