"""The Place methods over server.sh (places/server.py): the action each sends and how its answer is read.
Programs are faked (tests/fakes.py); server.sh itself runs for real in tests/test_server_sh.py."""
import io
import re
import shlex

import pytest

from pystributed import config
from pystributed.errors import EXIT_HINTS, StepError
from pystributed.places import local, server

RUN_ID = "20261125-101502-3fa9c1"
RUN_DIR = "/home/me/runs/" + RUN_ID


@pytest.fixture
def place():
    return local.Local(config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="runs"))


def test_the_program_is_the_script_then_one_line_that_calls_the_action():
    words = ["a b", "it's", "$(x)", "two\nlines", "", "\\"]
    program = server.program("missing", *words)
    assert program == (server.SCRIPT + "\n" + shlex.join(["missing", *words]) + "\n").encode()
    assert shlex.split(program[len(server.SCRIPT.encode()) + 1:].decode()) == ["missing", *words]


def test_the_loader_reads_exactly_the_program():
    loader = server.LOADER.format(1234)
    # one line any login shell passes on
    assert "'" not in loader and "\\" not in loader and "!" not in loader
    assert "1234" in loader and "{" not in loader


@pytest.mark.parametrize(("workdir", "seen"), [
    ("~", "."), ("~/my runs", "my runs"), ("runs", "runs"), ("/abs/runs", "/abs/runs"), ("a/~/b", "a/~/b")])
def test_the_workdir_as_sh_there_sees_it(workdir, seen):
    assert local.Local(config.load(environ={}, REMOTE_SERVER="local",
                                   REMOTE_WORKDIR=workdir)).workdir() == seen


def test_an_answer_is_what_follows_the_marker_line(place):
    assert place.answer_of(f"{server.MARK}\nthe answer\n", "connect") == "the answer\n" and not place.noisy
    assert place.answer_of(f"Welcome!\nno newline{server.MARK}\nthe answer\n", "connect") == "the answer\n"
    assert place.noisy
    with pytest.raises(StepError) as error:
        place.answer_of("Welcome!\n", "connect")
    assert str(error.value) == ("connect failed: the server's answer was not understood (no answer line)\n"
                                "    Welcome!\nIs `sh` there a POSIX shell?")


def test_a_streamed_answer_starts_after_the_marker_line(place):
    stream = io.BufferedReader(io.BytesIO(f"banner\n{server.MARK}\n".encode() + b"\x00binary\nrest"))
    assert place.after_mark(stream, "fetch").read() == b"\x00binary\nrest" and place.noisy
    quiet = local.Local(place.config)
    assert quiet.after_mark(io.BytesIO(f"{server.MARK}\nx".encode()),
                            "fetch").read() == b"x" and not quiet.noisy
    with pytest.raises(StepError, match=r"^fetch failed: the server's answer ended before it began \(no "
                                        r"answer line\)$"):
        place.after_mark(io.BytesIO(b"banner\n"), "fetch")


def test_sections_of_an_answer():
    text = (f"ignored\n{server.MARK} now\n17\n\n{server.MARK} states\n{{}}\n{{\"a\": "
            f"1}}\n{server.MARK} empty\n")
    assert server.sections(text) == {"now": ["17"], "states": ["{}", '{"a": 1}'], "empty": []}


def test_streamed_output_is_handed_on_from_the_marker_line_on():
    seen = []
    unframe = server.Unframe(seen.append)
    for chunk in ["Welc", "ome\n@@pystri", "buted@@", "\nfirst", " line\n", "second\n"]:
        unframe(chunk)
    assert seen == ["first", " line\n", "second\n"]
    seen.clear()
    unframe = server.Unframe(seen.append)
    unframe(f"{server.MARK}\n")
    unframe("x")
    assert seen == ["x"]


def test_what_a_server_says_without_ever_answering_is_shown_as_its_error(place, monkeypatch):
    # A real program, not the fake: one that prints its complaint on stdout and never runs sh.
    monkeypatch.setattr(place, "argv", lambda size: ["sh", "-c", ("cat >/dev/null; echo 'sh: not "
                                                                 "here'; exit 127")])
    out, err = [], []
    assert place.stream("logs", "x", step="run", on_stdout=out.append, on_stderr=err.append) == 127
    assert out == [] and "".join(err) == "sh: not here\n"


# Each Place method: its action, its words, its step, and what it makes of the answer.

def test_prepare_makes_the_run_folder_and_answers_it_with_the_user(place, programs):
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"{RUN_DIR}\n1000\n1001\n")
    assert place.prepare(RUN_ID) == (RUN_DIR, "1000:1001")
    assert programs.calls[0].step == "connect"


def test_prepare_learns_the_servers_platform_and_a_rootless_engine(place, programs):
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"{RUN_DIR}\n1000\n1001\nmachine aarch64\n")
    assert place.prepare(RUN_ID) == (RUN_DIR, "1000:1001") and place.platform == "linux/arm64"
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"{RUN_DIR}\n1000\n1001\nmachine "
                                                            "x86_64\nrootless\n")
    assert place.prepare(RUN_ID) == (RUN_DIR, "0:0") and place.platform == "linux/amd64"


def test_prepare_refuses_a_folder_docker_cannot_mount(place, programs):
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"/home/a:b/runs/{RUN_ID}\n1000\n1000\n")
    with pytest.raises(StepError) as error:
        place.prepare(RUN_ID)
    assert str(error.value) == (f"connect failed: the run folder /home/a:b/runs/{RUN_ID} holds a ':', which "
                                "docker cannot mount\nChoose a REMOTE_WORKDIR without ':'.")


def test_a_failed_action_is_named_as_its_command(place, programs):
    programs.expect("server", "rundir", "runs", RUN_ID, code=1, stderr="mkdir: Permission denied\n")
    with pytest.raises(StepError) as error:
        place.prepare(RUN_ID)
    assert str(error.value) == (f"connect failed: `server.sh rundir runs {RUN_ID}` on the local engine "
                                "exited with code 1\n    mkdir: Permission denied\nREMOTE_WORKDIR (runs) "
                                "must be creatable there.")
    programs.expect("server", "start", "--detach", "img", code=125, stderr="bad flag\n")
    with pytest.raises(StepError, match=r"^start failed: `docker run --detach img` on the local engine "
                                        r"exited with code 125\n"):
        place.start(["--detach", "img"], {})
    programs.expect("server", "docker_command", "pull", "a b", code=1)
    with pytest.raises(StepError, match=r"^pull failed: `docker pull 'a b'` on the local engine "
                                        r"exited with code 1$"):
        place.docker(["docker", "pull", "a b"], step="pull")


def test_discard_leaves_no_empty_run_folder_and_never_fails(place, programs):
    programs.expect("server", "rmdir_run", RUN_DIR)
    programs.expect("server", "rmdir_run", RUN_DIR, code=255)
    place.discard(RUN_DIR)
    place.discard(RUN_DIR)  # a failed run's error is the one to show, not this one's


def test_docker_runs_a_docker_argument_list_there(place, programs):
    programs.expect("server", "docker_command", "build", "--quiet", "--tag", "x:1", "-", out="sha256:1\n")
    out = place.docker(["docker", "build", "--quiet", "--tag", "x:1", "-"], step="build",
                       stdin=lambda pipe: pipe.write(b"context"))
    assert out == "sha256:1\n" and programs.calls[0].stdin == b"context" and programs.calls[0].step == "build"
    programs.expect("server", "docker_command", "push", "x:1", out=b"pushed")
    assert place.docker(["docker", "push", "x:1"], step="push",
                        read=lambda stream: stream.read()) == b"pushed"


@pytest.mark.parametrize(("stderr", "hint"), [
    ("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
     ("The user may not use Docker on the local engine: add it to the `docker` group (`sudo usermod -aG "
      "docker USER`); the next run's new connection picks that up.")),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
     "Docker is not running on the local engine: start it there (`sudo systemctl start docker`)."),
    ("Error: No such image: x:1", "the caller's hint"),
])
def test_an_engine_that_cannot_be_reached_is_named(place, programs, stderr, hint):
    programs.expect("server", "docker_command", "pull", "x:1", code=1, stderr=stderr)
    with pytest.raises(StepError) as error:
        place.docker(["docker", "pull", "x:1"], step="pull", hint="the caller's hint")
    assert error.value.hint == hint and error.value.code == 1 and error.value.step == "pull"
    assert error.value.output == stderr


def test_follow_starts_with_the_environment_on_stdin_and_hands_on_the_output(place, programs):
    programs.noise = "Welcome to the GPU box\n"
    programs.expect("server", "follow", RUN_ID, "--detach", "img", stdout="out\n", stderr="err\n", code=3)
    out, err = [], []
    assert place.follow(RUN_ID, out.append, err.append, start=["--detach", "img"],
                        env={"A": "1", "B": "x y"}) == 3
    assert "".join(out) == "out\n" and err == ["err\n"]  # no banner
    assert programs.calls[0].stdin == b"A=1\nB=x y\n" and programs.calls[0].step == "run"
    programs.expect("server", "follow", RUN_ID)
    assert place.follow(RUN_ID, out.append, err.append) == 0
    assert programs.calls[1].stdin == b""


def test_start_gives_the_environment_on_stdin(place, programs):
    programs.expect("server", "start", "--detach", "img")
    place.start(["--detach", "img"], {"SECRET": "s"})
    assert programs.calls[0].stdin == b"SECRET=s\n" and programs.calls[0].step == "start"
    programs.expect("server", "start", "img", code=125, stderr="permission denied ... docker.sock")
    with pytest.raises(StepError) as error:
        place.start(["img"], {})
    assert error.value.hint.startswith("The user may not use Docker on the local engine")
    programs.expect("server", "start", "img", code=125, stderr="unknown flag: --gpu")
    with pytest.raises(StepError) as error:
        place.start(["img"], {})
    assert error.value.hint == EXIT_HINTS[125]


def test_finish_names_its_files_with_a_token_of_its_own(place, programs):
    programs.expect("server", "finish", RUN_DIR, RUN_ID, "false", ..., out="3\n")
    programs.expect("server", "finish", RUN_DIR, RUN_ID, "true", ..., out="0\nlog-not-saved\n")
    assert place.finish(RUN_DIR, RUN_ID) == 3
    # (the log not saved: a warning, the container kept)
    assert place.finish(RUN_DIR, RUN_ID, cancelled=True) == 0
    tokens = [call.words[-1] for call in programs.calls]
    assert all(re.fullmatch("[0-9a-f]{8}", token) for token in tokens) and tokens[0] != tokens[1]
    assert [len(call.words) for call in programs.calls] == [6, 6]


def test_stop_fetch_logs_images_and_remove(place, programs):
    programs.expect("server", "stop", RUN_ID)
    programs.expect("server", "stop", RUN_ID)
    programs.expect("server", "fetch", RUN_DIR, "", out=b"tar")
    programs.expect("server", "fetch", RUN_DIR, "going", out=b"tar")
    programs.expect("server", "logs", RUN_DIR, RUN_ID, "", stdout="log\n")
    programs.expect("server", "logs", RUN_DIR, RUN_ID, "follow", code=1)
    programs.expect("server", "images", "reg/proj", "runs", out=f"{server.MARK} used\nubuntu\n{server.MARK} "
                                                                "images\nreg/proj:1\n")
    programs.expect("server", "remove", "/w/a b", "/w/c")
    place.stop(RUN_ID)
    place.stop(RUN_ID, step="cancel")
    assert place.fetch(RUN_DIR, lambda stream: stream.read()) == b"tar"
    assert place.fetch(RUN_DIR, lambda stream: stream.read(), going=True) == b"tar"
    out = []
    assert place.logs(RUN_DIR, RUN_ID, out.append, out.append) == 0 and "".join(out) == "log\n"
    assert place.logs(RUN_DIR, RUN_ID, out.append, out.append, follow=True) == 1
    assert place.images("reg/proj") == {"used": ["ubuntu"], "images": ["reg/proj:1"]}
    place.remove(["/w/a b", "/w/c"])
    assert [call.step for call in programs.calls] == ["run", "cancel", "fetch", "fetch", "logs", "logs",
                                                      "clean", "clean"]


def test_remove_says_who_may_remove_what_another_user_wrote(place, programs):
    programs.expect("server", "remove", "/w/r", code=1, stderr="rm: Permission denied")
    with pytest.raises(StepError) as error:
        place.remove(["/w/r"])
    assert error.value.hint == ("Files the container wrote as another user (DOCKER_RUN_ARGS --user) need "
                                "that user to remove.")


def test_survey_answers_its_sections(place, programs):
    programs.expect("server", "survey", "runs",
                    out=f"{server.MARK} now\n17\n{server.MARK} containers\n{{}}\n")
    programs.expect("server", "survey", "runs", RUN_ID, out=f"{server.MARK} now\n18\n")
    programs.expect("server", "survey", "runs", code=1, stderr="Cannot connect to the Docker "
                                                               "daemon at unix://x")
    assert place.survey() == {"now": ["17"], "containers": ["{}"]}
    assert place.survey(RUN_ID) == {"now": ["18"]}
    with pytest.raises(StepError) as error:
        place.survey()
    assert error.value.step == "status" and error.value.hint.startswith("Docker is not running on "
                                                                        "the local engine")


def test_an_answer_after_a_banner_reads_the_same(place, programs):
    programs.noise = "Last login: today\nconda activated\n"
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"{RUN_DIR}\n1\n2\n")
    programs.expect("server", "fetch", RUN_DIR, "", out=b"\x00tar")
    assert place.prepare(RUN_ID) == (RUN_DIR, "1:2")
    assert place.fetch(RUN_DIR, lambda stream: stream.read()) == b"\x00tar"
    assert place.noisy
