"""The one way the package runs a program (real programs here, nothing faked)."""
import io
import sys

import pytest

from pystributed import util
from pystributed.errors import StepError


def test_step_errors_name_the_step_and_show_the_tool_output():
    with pytest.raises(StepError) as excinfo:
        util.run(["sh", "-c", "echo oops >&2; exit 3"], step="push", hint="Log in.")
    assert (str(excinfo.value) == "push failed: `sh -c 'echo oops >&2; exit 3'` exited with code "
                                  "3\n    oops\nLog in.")
    assert excinfo.value.code == 3 and excinfo.value.output == "oops\n"


def test_without_stderr_the_output_is_stdout():
    with pytest.raises(StepError) as excinfo:
        util.run(["sh", "-c", "echo said; exit 1"], step="x")
    assert excinfo.value.output == "said\n"


def test_a_long_command_is_shortened_in_the_message():
    with pytest.raises(StepError) as excinfo:
        util.run(["sh", "-c", "exit 1", "x" * 400], step="x")
    assert excinfo.value.message.endswith(" …` exited with code 1") and len(excinfo.value.message) < 350


def test_a_missing_binary_is_named():
    with pytest.raises(StepError) as excinfo:
        util.run(["no-such-docker", "build"], step="build")
    assert str(excinfo.value) == ("build failed: `no-such-docker` was not found on PATH\n"
                                  "Install no-such-docker (see the README's prerequisites) and try again.")
    assert excinfo.value.code is None
    with pytest.raises(StepError, match="`no-such-ssh` was not found on PATH"):
        util.stream(["no-such-ssh"], step="run", on_stdout=print, on_stderr=print)


def test_input_is_written_and_output_read_as_it_comes():
    data = bytes(range(256)) * 4000  # more than a pipe holds
    assert util.run(["sh", "-c", "wc -c"], step="x", write_stdin=lambda pipe: pipe.write(data)) == "1024000\n"
    assert util.run(["head", "-c", "1000000", "/dev/zero"], step="x",
                    read_stdout=lambda out: len(out.read())) \
        == 1000000
    assert util.run(["sh", "-c", "cat; echo done"], step="x",
                    write_stdin=lambda pipe: pipe.write(b"in ")) == "in done\n"


def test_what_a_reader_leaves_is_read_so_that_the_program_ends_well():
    # A tar stream's reader stops at its end marker; tar writes padding after it. The program must
    # not die of SIGPIPE writing that into a pipe we closed.
    script = "printf head; sleep 0.2; head -c 300000 /dev/zero"
    assert util.run(["sh", "-c", script], step="fetch", read_stdout=lambda out: out.read(4)) == b"head"


def test_a_readers_error_shows_the_programs_failure_first():
    def reader(stdout):
        stdout.read()
        raise ValueError("cut off")

    with pytest.raises(StepError) as excinfo:
        util.run(["sh", "-c", "echo partial; echo 'tar: disk full' >&2; exit 2"], step="fetch",
                 read_stdout=reader)
    assert excinfo.value.output == "tar: disk full\n\n(ValueError: cut off)"
    with pytest.raises(ValueError, match="cut off"):  # the program did well: the reader's error is the one
        util.run(["true"], step="fetch", read_stdout=reader)


def test_a_program_that_stops_reading_its_input_is_judged_by_its_exit_code():
    def write(pipe):
        for _ in range(100):
            pipe.write(b"x" * 65536)

    assert util.run(["sh", "-c", "head -c 1 >/dev/null"], step="x", write_stdin=write) == ""
    with pytest.raises(StepError, match="exited with code 4"):
        util.run(["sh", "-c", "exit 4"], step="x", write_stdin=write)


def test_succeeds_and_output():
    assert util.succeeds(["true"]) and not util.succeeds(["false"])
    assert util.succeeds(["sh", "-c", "test -f here"], cwd=__file__.rsplit("/", 1)[0]) is False
    assert util.output(["sh", "-c", "echo out; echo err >&2; exit 1"]) == "out\n"


def test_stream_hands_on_chunks_as_they_come_and_answers_the_exit_code():
    out, err = [], []
    code = util.stream(["sh", "-c", "printf '10%%\\r'; sleep 0.1; printf '20%%\\r\\n'; echo é >&2; exit 5"],
                       step="run", on_stdout=out.append, on_stderr=err.append)
    assert code == 5 and "".join(out) == "10%\r20%\r\n" and "".join(err) == "é\n"
    assert len(out) >= 2  # the first part before the program ended


def test_stream_writes_its_input_first(tmp_path):
    out = []
    assert util.stream(["sh", "-c", "cat; pwd"], step="run", on_stdout=out.append, on_stderr=print,
                       cwd=tmp_path,
                       write_stdin=lambda pipe: pipe.write(b"env\n")) == 0
    assert "".join(out) == f"env\n{tmp_path}\n"


def test_a_utf8_character_split_between_chunks_comes_whole():
    out = []
    script = (f"{sys.executable} -c \"import os,time; os.write(1, b'\\xc3'); time.sleep(0.1); "
              "os.write(1, b'\\xa9')\"")
    util.stream(["sh", "-c", script], step="run", on_stdout=out.append, on_stderr=print)
    assert "".join(out) == "é"


def test_the_reader_gets_a_binary_stream():
    assert util.run(["printf", "a\\000b"], step="x",
                    read_stdout=lambda out: isinstance(out, io.BufferedIOBase)
                    and out.read()) == b"a\0b"
