import pytest

from pystributed import live
from pystributed.cell_runner import PARTIAL
from pystributed.live import Redraws


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def out(capsys):
    class Out:
        text = ""

        def getvalue(self):
            self.text += capsys.readouterr().out
            return self.text
    return Out()


def test_plain_lines_and_partial_prints_pass_at_once(out):
    writer = Redraws("stdout")
    writer.write("one\ntw")
    assert out.getvalue() == "one\ntw"
    writer.write("o\nthree")
    writer.close()
    assert out.getvalue() == "one\ntwo\nthree"


def test_a_progress_bar_is_one_line_updated_at_most_every_interval(out):
    clock = Clock()
    writer = Redraws("stdout", interval=0.25, clock=clock)
    for step in range(10000):
        clock.now = step / 1000  # 10 s in all
        writer.write(f"\r{step / 100:.0f}%|{'#' * (step // 500)}")
    writer.write("\r100%|done\n")
    writer.write("after\n")
    text = out.getvalue()
    assert text.count("\r") <= 10 / 0.25 + 2
    assert text.endswith("\r100%|done\nafter\n")
    assert len(text) < 2000


def test_bar_state_is_shown_after_a_pause(out):
    clock = Clock()
    writer = Redraws("stdout", interval=0.25, clock=clock)
    writer.write("\r1/3")
    clock.now = 0.1
    writer.write("\r2/3")
    assert out.getvalue() == "\r1/3"
    clock.now = 1.0
    writer.write("\r3/3")
    assert out.getvalue() == "\r1/3\r3/3"


def test_close_shows_the_last_state(out):
    clock = Clock()
    writer = Redraws("stdout", clock=clock)
    writer.write("\r1")
    writer.write("\r2")
    writer.close()
    assert out.getvalue() == "\r1\r2"


def test_the_marks_of_open_lines_are_taken_out_even_when_cut_between_pieces():
    got = []
    unmarked = live.Unmarked(got.append)
    text = "\rstep 1" + PARTIAL + "\rstep 2" + PARTIAL + "done\n"
    for i in range(0, len(text), 3):  # every cut, through the marks too
        unmarked(text[i:i + 3])
    assert "".join(got) == "\rstep 1\rstep 2done\n" and unmarked.held == ""
    assert live.unmark("a" + PARTIAL + "b\n") == "ab\n"


def test_a_saved_log_loses_its_marks(tmp_path):
    log = tmp_path / "output.log"
    log.write_text("x" + PARTIAL + "y\n\x1b[1mbold\x1b[0m\n", encoding="utf-8")
    live.unmark_file(log)
    assert log.read_text(encoding="utf-8") == "xy\n\x1b[1mbold\x1b[0m\n"
    live.unmark_file(tmp_path / "none.log")  # no log: nothing to do
