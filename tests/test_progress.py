"""The steps as they go: plain lines in a terminal, one display updated in place in a notebook."""
import pytest

from pystributed import progress


def test_a_step_is_one_line_in_a_terminal(capsys, monkeypatch):
    clock = iter([10.0, 11.25])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    steps = progress.steps_for()
    with steps.step("push", "reg:5000"):
        steps.progress("2/3 layers")
    assert capsys.readouterr().out == "push    reg:5000 ... done in 1.2s (2/3 layers)\n"


def test_a_live_step_gets_a_line_at_its_start_and_end(capsys):
    steps = progress.Steps()
    with pytest.raises(KeyboardInterrupt), steps.step("run", "run 1 on gpu", live=True):
        print("the cell's output")
        raise KeyboardInterrupt
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run     run 1 on gpu ..." and lines[1] == "the cell's output"
    assert lines[2].startswith("run     interrupted in ")
    assert steps.rows[0][2] == "interrupted"


def test_a_failed_step_says_so(capsys):
    steps = progress.Steps()
    with pytest.raises(ValueError), steps.step("build", "here"):
        raise ValueError
    assert capsys.readouterr().out.startswith("build   here ... failed in ")


def test_quiet_says_nothing(capsys):
    steps = progress.steps_for(quiet=True)
    with steps.step("build"):
        steps.say("x")
    assert capsys.readouterr().out == "" and steps.rows[0][2] == "done"


def test_the_step_display_appears_with_the_first_step(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj,
                        display_id: shown.append(repr(obj)) or _Handle(shown))
    steps = progress.NotebookSteps()
    steps.say("cached: reusing run ...\n")  # a cached run has no step: no empty table either
    assert shown == []
    with steps.step("build", "here"):
        pass
    assert shown[0].startswith("⏳ build") and shown[-1].startswith("✔ build")
    assert "<b>build</b>" in progress._Table(steps.rows)._repr_html_()


def test_a_notebook_is_told_apart_from_a_terminal(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert type(progress.steps_for()) is progress.Steps


class _Handle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, obj):
        self.shown.append(repr(obj))
