"""The steps of a run, with their state and duration: plain lines in a terminal, one compact
display that updates in place in a notebook, nothing in quiet mode."""
import contextlib
import html
import sys
import threading
import time


def steps_for(quiet=False):
    if quiet:
        return Steps(quiet=True)
    return NotebookSteps() if _in_notebook() else Steps()


def _in_notebook():
    # A kernel has imported IPython already; importing it here would cost a shell run 0.4 s.
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython.get_ipython(), "kernel", None) is not None


class Steps:
    """Terminal: `name detail ...` when a step starts, `done in 1.2s` when it ends."""

    def __init__(self, *, quiet=False):
        self.quiet = quiet
        self.rows = []  # [name, detail, state, started, took, progress]

    def say(self, text):
        if not self.quiet:
            sys.stdout.write(text)  # looked up now: Jupyter swaps sys.stdout per cell
            sys.stdout.flush()

    def progress(self, text):
        """How far the running step is (bytes moved, layers pushed)."""
        self.rows[-1][5] = text

    @contextlib.contextmanager
    def step(self, name, detail="", *, live=False):
        """With `live`, output comes in between, so start and end each get a line."""
        row = [name, detail, "running", time.monotonic(), None, ""]
        self.rows.append(row)
        self._started(row, live)
        try:
            yield
            row[2] = "done"
        except BaseException as e:
            row[2] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            raise
        finally:
            row[4] = time.monotonic() - row[3]
            self._ended(row, live)

    def _started(self, row, live):
        self.say(f"{row[0]:<8}{row[1]} ...{chr(10) if live else ' '}")

    def _ended(self, row, live):
        took = f"{row[2]} in {row[4]:.1f}s" + (f" ({row[5]})" if row[5] else "")
        self.say(f"{row[0]:<8}{took}\n" if live else f"{took}\n")


class NotebookSteps(Steps):
    """One display above the cell's output, updated in place, with a clock for the running step."""

    def __init__(self):
        super().__init__()
        self.handle = None  # shown with the first step: a cached run has none, and shows no empty table
        self.ticking = None
        self.refreshed = 0.0

    def progress(self, text):
        super().progress(text)
        if time.monotonic() - self.refreshed > 0.3:  # a few updates a second are enough to watch
            self._refresh()

    def _refresh(self):
        self.refreshed = time.monotonic()
        if self.handle is None:
            from IPython.display import display

            self.handle = display(_Table(self.rows), display_id=True)
        else:
            self.handle.update(_Table(self.rows))

    def _started(self, row, live):
        self._refresh()
        self.ticking = threading.Event()
        threading.Thread(target=self._tick, args=(self.ticking,), daemon=True).start()

    def _ended(self, row, live):
        self.ticking.set()
        self._refresh()

    def _tick(self, stop):
        while not stop.wait(1.0):
            self._refresh()


_MARKS = {"running": "⏳", "done": "✔", "failed": "✘", "interrupted": "■"}


class _Table:
    def __init__(self, rows):
        self.rows = [list(row) for row in rows]

    def _took(self, row):
        took = row[4] if row[4] is not None else time.monotonic() - row[3]
        return f"{took:.1f}s"

    def __repr__(self):
        return " | ".join(f"{_MARKS[r[2]]} {r[0]} {self._took(r)}" + (f" ({r[5] or r[1]})"
                                                                      if r[5] or r[1] else "")
                          for r in self.rows) or "starting"

    def _repr_html_(self):
        # Left and top aligned: JupyterLab centres tables and right-aligns their cells, so a new
        # step or a longer detail would shift every step sideways at each update.
        cells = "".join(
            f"<td style='padding:0 1em 0 0;text-align:left;vertical-align:top'>{_MARKS[r[2]]} <b>{r[0]}</b> "
            f"{self._took(r)}<br><small>{html.escape(r[5] or r[1])}</small></td>" for r in self.rows)
        return f"<table style='margin:0 0 0.5em 0'><tr>{cells}</tr></table>"
