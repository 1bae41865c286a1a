"""A job: one image, its tasks (one per set of parameters), each with its own folder. A sweep is a
job of N tasks (sweep.py makes it; places/server_engine.py and places/swarm_engine.py run it).

`Task.set` and `Job.set` are the one way a state changes: under the job's lock (worker threads set
tasks' states). The record LOCAL_RESULTS_DIR/.sweeps/<sweep-id>.json is saved at once for a change of
the job's own, and once per look for its tasks' (`Job.flush`, which the engine calls each time it
looks): a look that changes N tasks writes the record once, not N times, so that `attach`, `status`
and `list` of another process see what this one saw within a look.

One process drives a job at a time (starts, retries, fetches its tasks): the one that holds its claim
(`Job.claim`, a lock on LOCAL_RESULTS_DIR/.sweeps/<sweep-id>.lock, let go when that process ends,
however it ends). Another process attaching meanwhile shows the record as the driver saves it."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import html
import json
import os
import threading
import time
from pathlib import Path

from pystributed import record, results
from pystributed.errors import PystributedError

try:
    import fcntl
except ImportError:  # Windows: no lock; one process at a time is then the user's to keep
    fcntl = None  # type: ignore[assignment]

SWEEP_ID = results.SWEEP_ID
INDEX = ".sweeps"
# A task's status, as the display and Job.statuses show it.
QUEUED, STARTING, RUNNING, RETRYING = "queued", "starting", "running", "retrying"
# ENDED: seen ended by a look that fetched nothing (status, cancel): attach fetches it
ENDED = "ended, not fetched yet"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
FINAL = (SUCCEEDED, FAILED, CANCELLED)


def new_sweep_id():
    return "sweep-" + results.new_run_id()


def check_sweep_id(text):
    if not SWEEP_ID.fullmatch(text):
        raise PystributedError(f"{text!r} is not a sweep id (they look like sweep-20261125-101502-3fa9c1)")
    return text


def shown(params):
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


@dataclasses.dataclass
class Task:
    index: int
    params: dict
    status: str = QUEUED
    node: str = ""  # as the display shows it
    node_id: str = ""  # Swarm's
    gpu: str = ""
    attempts: int = 0
    requeued: int = 0  # of the attempts, those run again because a stop kept the one before from starting
    exit_code: int | None = None
    started: float | None = None  # time.time()
    ended: float | None = None
    why: str = ""  # why it waits (Swarm's word), or what failed before the cell ran
    error: str = ""  # the remote exception, for a failed task
    local_path: str = ""
    values: dict = dataclasses.field(default_factory=dict)
    value: object = None
    fetched: bool = False

    @property
    def duration(self):
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    @property
    def final(self):
        return self.status in FINAL

    @property
    def log(self):
        return Path(self.local_path) / results.LOG_NAME if self.local_path else None

    def set(self, status=None, **fields):
        """The one way a task changes (from any thread): under its job's lock, saved with the job."""
        job = getattr(self, "job", None)
        if _assign(self, job, status, fields) and job is not None:
            job.dirty = True  # saved by the next flush (once per look)


@dataclasses.dataclass
class Job:
    """A sweep: its tasks in parameter order, with `params`, `statuses`, `values` (per --out name, a
    list in parameter order, None for a task that failed) and `errors`; `.table()` shows them."""

    sweep_id: str
    tasks: list
    out: list = dataclasses.field(default_factory=list)
    server: str = ""
    cluster: str = ""
    status: str = RUNNING  # running, detached, succeeded, failed, cancelled
    image: str = ""
    remote_dir: str = ""
    user: str = ""
    retries: int = 0
    started: str = ""
    ended: str = ""
    local_path: str = ""
    services: list = dataclasses.field(default_factory=list)  # a cluster's: [name, id, index (None: all)]
    mounts: list = dataclasses.field(default_factory=list)  # docker run's, of the features (REMOTE_DATA)
    per_container: int = 1  # a cluster's: tasks run one after another in one container (TASKS_PER_CONTAINER)
    # a swarm's: the node ids with its folder, for retries
    nodes: list = dataclasses.field(default_factory=list)
    # A run on a cluster: a job of one task whose folders are the run's own (REMOTE_WORKDIR/<run-id>/ there,
    # LOCAL_RESULTS_DIR/<run-id>/ here, no <index>/ below them), its id the run id.
    single: bool = False

    def task_dir(self, task):
        """The task's folder where it runs."""
        return self.remote_dir if self.single else f"{self.remote_dir}/{task.index}"

    def chunk(self, number):
        """The indexes of the tasks that the job's container (or array task) `number` runs."""
        return list(range(number * self.per_container,
                          min(len(self.tasks), (number + 1) * self.per_container)))

    def may_retry(self, task):
        """Whether a failed task has a retry left: its attempts that never started (`requeued`) used none."""
        return task.attempts - task.requeued <= self.retries

    def __post_init__(self):
        self.lock = threading.RLock()  # not fields: not in the record
        self.folder = None  # where it is saved, once bound to a config
        self.dirty = False  # a task changed since the record was saved
        self.claimed = None  # the open lock file, while this process drives the job
        for task in self.tasks:
            task.job = self

    def bind(self, config):
        self.folder = Path(config.LOCAL_RESULTS_DIR) / INDEX
        return self

    def set(self, status=None, **fields):
        """The one way the job's own state changes: under its lock, and saved."""
        if _assign(self, self, status, fields):
            self.save()

    def save(self):
        if self.folder is None:
            return
        with self.lock:  # one snapshot at a time, in order: the last change is the one on disk
            self.dirty = False
            self.folder.mkdir(parents=True, exist_ok=True)
            record.write_atomically(self.folder / f"{self.sweep_id}.json", self.to_json())

    def flush(self):
        """Save the record if a task changed since it was saved."""
        if self.dirty:
            self.save()

    def claim(self):
        """Whether this process may drive the job: True once it holds the job's lock (until `release`,
        or its end), False while another process holds it."""
        if self.claimed is not None or self.folder is None or fcntl is None:
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = open(self.folder / f"{self.sweep_id}.lock", "a")  # noqa: SIM115 (held open: the lock lives with it)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return False
        self.claimed = lock
        return True

    def release(self):
        if self.claimed is not None:
            with contextlib.suppress(OSError):
                self.claimed.close()  # (closing it lets the lock go)
            self.claimed = None

    @property
    def params(self):
        return [t.params for t in self.tasks]

    @property
    def statuses(self):
        return [t.status for t in self.tasks]

    @property
    def values(self):
        return {name: [t.values.get(name) for t in self.tasks] for name in self.out}

    @property
    def errors(self):
        return [t.error or None for t in self.tasks]

    @property
    def ok(self):
        return all(t.status == SUCCEEDED for t in self.tasks)

    def counts(self):
        found = collections.Counter(t.status for t in self.tasks)
        return {name: found.get(name, 0)
                for name in (QUEUED, STARTING, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED)
                if found.get(name) or name in (QUEUED, RUNNING, SUCCEEDED, FAILED)}

    def table(self):
        return Table(self)

    def summary(self):
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        where = f"on the {self.cluster} cluster of {self.server}" if self.cluster else f"on {self.server}"
        return f"sweep {self.sweep_id}: {len(self.tasks)} tasks {where}: {counts}"

    def __str__(self):
        return f"{self.summary()}\n{self.table()}"

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        return f"<b>{html.escape(self.summary())}</b>{self.table()._repr_html_()}"

    def to_json(self):
        # Field by field, not dataclasses.asdict: that would deep-copy every task's --out values (large,
        # at times) before they are left out; the parameters as shown (their values are in the image).
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tasks"}
        data["tasks"] = [{f.name: ({k: repr(v) for k, v in t.params.items()} if f.name == "params"
                                   else getattr(t, f.name))
                          for f in dataclasses.fields(t) if f.name not in ("values", "value")}
                         for t in self.tasks]
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(Task)}
        data["tasks"] = [Task(**{k: v for k, v in t.items() if k in known}) for t in data["tasks"]]
        for task in data["tasks"]:  # as they were shown (their values are in the image)
            task.params = {k: results.Shown(v, "") for k, v in task.params.items()}
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


class Table:
    HEAD = ("#", "PARAMETERS", "STATE", "NODE", "GPU", "DURATION", "LOG")

    def __init__(self, result):
        self.result = result

    def rows(self):
        for t in self.result.tasks:
            state = t.status + (f" (attempt {t.attempts})" if t.attempts > 1 else "")
            if t.status == QUEUED and t.why:
                state += f": {t.why}"
            if t.status == FAILED and t.error:
                state += f": {t.error.splitlines()[0][:80]}"
            took = "-" if t.duration is None else f"{t.duration:.1f}s"
            log = os.path.relpath(t.log) if t.log and t.log.exists() else "-"
            yield str(t.index), shown(t.params), state, t.node or "-", t.gpu or "-", took, log

    def __str__(self):
        rows = [self.HEAD, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEAD))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        style = "style='text-align:left;vertical-align:top;padding:0 1em 0 0'"
        head = "".join(f"<th {style}>{html.escape(h)}</th>" for h in self.HEAD)
        body = []
        for row, task in zip(self.rows(), self.result.tasks):
            cells = [html.escape(c) for c in row]
            if task.local_path and Path(task.local_path).exists():
                folder = os.path.relpath(task.local_path)
                cells[-1] = (f"<a href='{html.escape(cells[-1])}' target='_blank'>log</a> "
                             if row[-1] != "-" else "") \
                    + f"<a href='{html.escape(folder)}' target='_blank'>folder</a>"
            body.append("<tr>" + "".join(f"<td {style}>{c}</td>" for c in cells) + "</tr>")
        return f"<table style='margin:0'><tr>{head}</tr>{''.join(body)}</table>"


def _assign(thing, job, status, fields):
    """Set `status` and `fields` on `thing` under the job's lock; whether anything changed."""
    if status is not None:
        fields["status"] = status
    with job.lock if job is not None else _NO_LOCK:
        changed = {name: value for name, value in fields.items() if getattr(thing, name) != value}
        for name, value in changed.items():
            setattr(thing, name, value)
    return bool(changed)


_NO_LOCK = threading.Lock()  # a task on its own (made by a test, or a copy for the display)


def save(config, job):
    job.bind(config).save()


def load(config, sweep_id):
    path = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{check_sweep_id(sweep_id)}.json"
    if not path.exists():
        raise PystributedError(f"there is no sweep {sweep_id} in {Path(config.LOCAL_RESULTS_DIR) / INDEX}: "
                               "it was started from another folder (or LOCAL_RESULTS_DIR)")
    return Job.from_json(path.read_text(encoding="utf-8")).bind(config)


def of_run(config, run_id):
    """The job of a run on a cluster (a job of one task: sweep.run_one), or None (a run on one server)."""
    path = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{run_id}.json"
    return Job.from_json(path.read_text(encoding="utf-8")).bind(config) if path.exists() else None


def sweeps(config):
    folder = Path(config.LOCAL_RESULTS_DIR) / INDEX
    found = [Job.from_json(p.read_text(encoding="utf-8")).bind(config) for p in folder.glob("sweep-*.json")]
    return sorted(found, key=lambda r: results.start_order(r.sweep_id, r.started), reverse=True)


