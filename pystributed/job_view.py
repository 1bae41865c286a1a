"""How a job shows while it runs: in a notebook a table that updates in place (counts, then a row
per task); in a terminal a line per change of a task's state, and the table at the end."""
from __future__ import annotations

import dataclasses
import html
import sys
import threading
import time

from pystributed import progress
from pystributed.jobs import FAILED, QUEUED, RETRYING, shown

POLL = 0.5  # at most this often, the notebook's table is drawn again


class Display:
    def __init__(self, steps):
        self.steps, self.quiet = steps, steps.quiet
        self.notebook = isinstance(steps, progress.NotebookSteps)
        self.handle, self.shown, self.said = None, 0.0, {}
        self.lock = threading.Lock()

    def update(self, job, *, force=False):
        if self.quiet:
            return
        with self.lock:
            if job.single:
                return self._run(job.tasks[0])
            if self.notebook:
                if force or time.monotonic() - self.shown > POLL:
                    self.shown = time.monotonic()
                    self._show(_Live(job))
                return
            for task in job.tasks:
                state = (task.status, task.attempts, task.node)
                if self.said.get(task.index) != state and (task.status != QUEUED or task.index in self.said
                                                           or task.why):
                    self.said[task.index] = state
                    sys.stdout.write(_line(task) + "\n")
                    sys.stdout.flush()

    def _run(self, task):
        """A run (a job of one task): why it waits, and where it runs once placed; its output follows."""
        if task.status in (QUEUED, RETRYING):
            if task.why and self.said.get("queued") != task.why:
                self.said["queued"] = task.why
                self.steps.say(f"queued: {task.why} (the scheduler starts it when it can)\n")
        elif task.node and not self.said.get("placed"):  # (running, or ended before a look saw it run)
            self.said["placed"] = task.node
            self.steps.say(f"placed on {task.node}" + (f", GPU {task.gpu}" if task.gpu else "") + "\n")

    def _show(self, view):
        from IPython.display import display

        if self.handle is None:
            self.handle = display(view, display_id=True)
        else:
            self.handle.update(view)

    def end(self, job):
        """The last state (in a terminal, the caller shows the Job), then the first figure of each task
        that made one: in a notebook side by side with its parameters, in a terminal their paths."""
        if self.quiet or job.single:  # (a run's figures showed as they came, in its output)
            return
        if self.notebook:
            self.update(job, force=True)
        from pystributed import live_display

        figures = live_display.first_figures(job.tasks)
        grid = live_display.Grid(figures, lambda task: shown(task.params))
        if figures and self.notebook:
            from IPython.display import display

            display(grid)
        elif figures:
            print(f"figures (the first of each task):\n{grid!r}")


def _line(task):
    where = f" on {task.node}" + (f" ({task.gpu})" if task.gpu else "") if task.node else ""
    attempt = f" (attempt {task.attempts})" if task.attempts > 1 else ""
    took = f" in {task.duration:.1f}s" if task.final and task.duration is not None else ""
    why = f": {task.why}" if task.status == QUEUED and task.why else ""
    error = f": {task.error.splitlines()[0]}" if task.status == FAILED and task.error else ""
    return f"task {task.index} [{shown(task.params)}] {task.status}{attempt}{where}{took}{why}{error}"


class _Live:
    """A copy of the job as it is now (the display's handle keeps what it is given)."""

    def __init__(self, job):
        with job.lock:
            self.job = dataclasses.replace(job, tasks=[dataclasses.replace(t) for t in job.tasks])

    def _repr_html_(self):
        counts = " · ".join(f"<b>{n}</b> {name}" for name, n in self.job.counts().items())
        return f"<div>sweep {html.escape(self.job.sweep_id)}: {counts}</div>{self.job.table()._repr_html_()}"

    def __repr__(self):
        return self.job.summary()
