"""The image's side, run here: the saved script split into earlier cells and the cell, and lines
left open ended with a mark that Docker passes on (live.py takes it out again)."""
import io
import subprocess
import sys
import time

from pystributed import cell_runner
from pystributed.cell_runner import HEAD, MARKER, PARTIAL


def test_a_saved_script_splits_into_the_earlier_cells_and_the_cell():
    assert cell_runner.split(f"{HEAD}x = 1\n{MARKER}print(x)\n") == (f"{HEAD}x = 1\n", "print(x)\n")
    assert cell_runner.split("print(1)\n") == ("", "print(1)\n")


def until(done, timeout=10):
    """Wait for done() (the ticker is a thread: on a busy machine it may run late)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return done()


def test_a_line_left_open_is_ended_with_the_mark_and_a_finished_line_is_not():
    stream = io.StringIO()
    lines = cell_runner.OpenLines(stream, wait=0.02)
    lines.write("done\n")
    time.sleep(0.1)
    assert stream.getvalue() == "done\n"
    lines.write("\rstep 1")
    assert until(lambda: stream.getvalue() == "done\n\rstep 1" + PARTIAL)
    time.sleep(0.1)
    assert stream.getvalue() == "done\n\rstep 1" + PARTIAL  # once, however long it stays open
    lines.write("\rstep 2\n")
    time.sleep(0.1)
    assert stream.getvalue() == "done\n\rstep 1" + PARTIAL + "\rstep 2\n"
    assert lines.encoding == stream.encoding  # the rest is the stream's own


def test_a_line_ended_before_it_was_open_for_long_is_not_marked():
    # print("x") writes "x", then "\n": the ticker may look in between, and must leave that line whole.
    stream = io.StringIO()
    lines = cell_runner.OpenLines(stream, wait=2.0)
    lines.write("x")
    time.sleep(1.1)  # a tick (every half wait) has seen the line open, but not for a whole wait
    lines.write("\n")
    lines.write("epoch 1: ")
    time.sleep(1.1)
    lines.write("loss 0.5\nacc")  # a line that opens now, not when "epoch 1: " did
    time.sleep(0.1)
    lines.write("\n")
    time.sleep(2.5)
    assert stream.getvalue() == "x\nepoch 1: loss 0.5\nacc\n"


def test_the_cell_runs_with_its_open_lines_marked(tmp_path):
    cell = tmp_path / "user_code.py"
    cell.write_text("import sys, time\nsys.stderr.write('\\r50%')\ntime.sleep(0.5)\nprint('end')\n")
    out = subprocess.run([sys.executable, cell_runner.__file__, str(cell)], capture_output=True, check=True,
                         env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    assert out.stderr.decode() == "\r50%" + PARTIAL
    # print() writes "end" and "\n" apart: a runner stalled between them (a loaded machine) may
    # mark that line too, which is harmless once the marks are taken out.
    assert out.stdout.replace(PARTIAL.encode(), b"") == b"end\n"
