"""Errors the user acts on: a step's failure with the tool's own message, and a failed cell raised
here as the exception it raised there."""
import pytest

from pystributed import errors
from pystributed.errors import RemoteCellError, StepError
from pystributed.results import RunResult

RUN_ID = "20261125-101502-3fa9c1"
TRACE = ('Traceback (most recent call last):\n'
         '  File "/app/sub/cell.py", line 3, in <module>\n'
         '    f()\n'
         '  File "/app/sub/cell.py", line 2, in f\n'
         "    raise KeyError('missing key')\n"
         "KeyError: 'missing key'\n")


def test_a_step_error_shows_the_last_lines_of_the_tools_output_and_the_hint():
    error = StepError("push", "`docker push x` exited with code 1",
                      output="\n".join(f"l{i}" for i in range(30)),
                      hint="Log in.", code=1)
    lines = str(error).splitlines()
    assert lines[0] == "push failed: `docker push x` exited with code 1"
    assert lines[1:-1] == [f"    l{i}" for i in range(10, 30)] and lines[-1] == "Log in."
    assert str(StepError("run", "it failed", output="  \n")) == "run failed: it failed"


def test_a_remote_exception_keeps_its_type_and_the_cells_own_line_numbers():
    result = RunResult(RUN_ID, exit_code=1, server="gpu-box")
    error = errors.remote_cell_error(result, "noise\n" + TRACE, "", entry="sub/cell.py",
                                     code_path="sub/cell.py")
    assert isinstance(error, KeyError) and isinstance(error, RemoteCellError)
    assert type(error).__name__ == "RemoteKeyError"
    assert (error.remote_type, error.remote_message) == ("KeyError", "'missing key'")
    assert str(error).splitlines()[:4] == [
        "KeyError: 'missing key'", f"(run {RUN_ID} on gpu-box, exit code 1)",
        "Remote traceback (line numbers are the cell's, as saved in sub/cell.py):",
        "  Traceback (most recent call last):"]
    assert '    File "sub/cell.py", line 3, in <module>' in str(error).splitlines()
    assert error.result is result


def test_a_cell_that_died_without_a_traceback_shows_the_end_of_its_output():
    result = RunResult(RUN_ID, exit_code=137, server="gpu-box")
    error = errors.remote_cell_error(result, "", "\n".join(f"epoch {i}" for i in range(40)), entry="c.py",
                                     code_path="c.py")
    assert type(error) is RemoteCellError
    lines = str(error).splitlines()
    assert lines[:4] == ["the cell failed with exit code 137", f"(run {RUN_ID} on gpu-box, exit code 137)",
                         errors.EXIT_HINTS[137], "Remote output (end):"]
    assert lines[4:] == [f"  epoch {i}" for i in range(10, 40)]


@pytest.mark.parametrize(("name", "cls"), [
    ("ValueError", ValueError), ("ZeroDivisionError", ArithmeticError), ("OSError", OSError),
    ("Exception", None),
    ("mypkg.CustomError", None), ("print", None)])
def test_which_remote_types_are_raised_as_their_own(name, cls):
    error = errors.remote_cell_error(RunResult(RUN_ID, exit_code=1), "Traceback (most recent call "
                                                                     f"last):\n{name}: x\n",
                                     "", entry="c.py", code_path="c.py")
    assert isinstance(error, RemoteCellError)
    assert isinstance(error, cls) if cls else type(error) is RemoteCellError
    assert error.remote_type == name


def test_parse_traceback_takes_the_last_one():
    text = ("Traceback (most recent call last):\nA: first\nTraceback (most recent call last):\n  "
            "x\nB.C: second\n")
    assert errors.parse_traceback(text) == ("B.C", "second", ("Traceback (most recent call last):\n  "
                                                             "x\nB.C: second"))
    assert errors.parse_traceback("no traceback") == ("", "", "")
    assert errors.parse_traceback("Traceback (most recent call last):\n  x\n  y")[:2] == ("", "")


def test_the_exception_is_the_line_after_the_frames_not_output_let_out_after_it():
    """One stream (a Slurm job's output.log): a print that a buffer held comes after the traceback."""
    text = 'a\nTraceback (most recent call last):\n  File "/app/c.py", line 5\nValueError: boom\nb\n'
    assert errors.parse_traceback(text)[:2] == ("ValueError", "boom")
