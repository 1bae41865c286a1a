"""Sweeps: the saved cell once per combination of parameters, each a task with its own folder.

    %%remote --sweep lr=0.1,0.01 --sweep seed=0,1 --out loss     (4 tasks)
    runner.sweep(lr=[0.1, 0.01], seed=[0, 1])  or  runner.sweep(params=[{"lr": 0.1}, ...])
    python -m pystributed sweep FILE --param lr=0.1,0.01

One image for all tasks (built, pushed, pulled as for a run, by pipeline.ship): its cell layer holds
every task's parameters (sweep.pkl), and task_runner.py hands each task its own as variables defined
before the cell, with PYSTRIBUTED_TASK (its index). Where the tasks run:

- on a cluster (CLUSTER = "swarm"): one `replicated-job` service of N tasks (places/swarm.py), each
  asking for GPUS_PER_TASK GPUs; Swarm queues the tasks that find no free GPU, and retries a failed
  one (`--retries`: its restart policy). They share the folder REMOTE_WORKDIR/<sweep-id>/, made on
  every node, and write into its <index>/ on the node they ran on; the sweep fetches each task's
  folder from that node as soon as the task has ended;
- on one server: MAX_CONCURRENT containers at a time (default 1), started by this process, each with
  the folder REMOTE_WORKDIR/<sweep-id>/<index>/ as its own, put away (log and state saved) as a run's.

Each task's folder lands in LOCAL_RESULTS_DIR/<sweep-id>/<index>/, whole or not at all (results.extract);
the record of the sweep is LOCAL_RESULTS_DIR/.sweeps/<sweep-id>.json (attach, status, cancel, logs)."""
from __future__ import annotations

import ast
import collections
import concurrent.futures
import contextlib
import dataclasses
import html
import itertools
import json
import os
import pickle
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

from pystributed import cell_runner, docker, features, live, pipeline, progress, record, results, task_runner
from pystributed.errors import PystributedError, StepError, parse_traceback
from pystributed.features import Feature, values
from pystributed.features import cluster as cluster_feature
from pystributed.lifecycle import STARTING_GRACE, RunState, describe, docker_time, iso_time, json_or_empty
from pystributed.places import place_for, swarm

SWEEP_ID = re.compile(r"sweep-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
INDEX = ".sweeps"
POLL = 0.5
# A task's status, as the display and SweepResult.statuses show it.
QUEUED, STARTING, RUNNING, RETRYING = "queued", "starting", "running", "retrying"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
FINAL = (SUCCEEDED, FAILED, CANCELLED)


def new_sweep_id():
    return "sweep-" + results.new_run_id()


def check_sweep_id(text):
    if not SWEEP_ID.fullmatch(text):
        raise PystributedError(f"{text!r} is not a sweep id (they look like sweep-20261125-101502-3fa9c1)")
    return text


# The parameters.

def parse_param(text):
    """"lr=0.1,0.01" -> ("lr", [0.1, 0.01]): each value a Python literal if it reads as one, else a string."""
    name, sep, values_text = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise PystributedError(f"--sweep/--param {text!r}: give NAME=VALUE,VALUE,... (e.g. lr=0.1,0.01)")
    found = []
    for word in values_text.split(","):
        word = word.strip()
        try:
            found.append(ast.literal_eval(word))
        except (ValueError, SyntaxError):
            found.append(word)
    return name, found


def combinations(params=None, grid=None):
    """The tasks' parameters: `params` (a list of dicts) as it is, or every combination of `grid`
    ({name: values}), the first name varying slowest."""
    grid = dict(grid or {})
    if params is not None and grid:
        raise PystributedError("give either params=[{...}, ...] or NAME=[values], not both")
    if params is not None:
        params = [dict(p) for p in params]
        if not params or not all(isinstance(p, dict) for p in params):
            raise PystributedError("params must be a non-empty list of dicts, e.g. [{'lr': 0.1}, {'lr': 0.01}]")
    else:
        if not grid:
            raise PystributedError("a sweep needs parameters: e.g. --sweep lr=0.1,0.01, or runner.sweep(lr=[0.1, 0.01])")
        for name, options in grid.items():
            if isinstance(options, (str, bytes)) or not hasattr(options, "__iter__"):
                raise PystributedError(f"{name}: give a list of values to sweep over, e.g. {name}=[{options!r}]")
        params = [dict(zip(grid, combo)) for combo in itertools.product(*(list(v) for v in grid.values()))]
    for p in params:
        for name in p:
            if not str(name).isidentifier():
                raise PystributedError(f"parameter {name!r} is not a variable name")
    return params


def shown(params):
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


class SweepFiles(Feature):
    """The image's cell layer gets every task's parameters and task_runner.py."""

    def __init__(self, params):
        self.params = params

    def before_pack(self, run):
        try:
            pickled = [{k: pickle.dumps(v, cell_runner.PROTOCOL) for k, v in p.items()} for p in self.params]
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            raise PystributedError(f"a parameter could not be pickled ({type(e).__name__}: {e})") from None
        run.runner_files[task_runner.SWEEP] = pickle.dumps(pickled, cell_runner.PROTOCOL)
        run.runner_files.update(cluster_feature.runner_files(run.code_path))


# What a sweep did.

@dataclasses.dataclass
class TaskResult:
    index: int
    params: dict
    status: str = QUEUED
    node: str = ""  # as the display shows it
    node_id: str = ""  # Swarm's
    gpu: str = ""
    attempts: int = 0
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


@dataclasses.dataclass
class SweepResult:
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
        return {name: found.get(name, 0) for name in (QUEUED, STARTING, RUNNING, RETRYING, SUCCEEDED, FAILED,
                                                      CANCELLED) if found.get(name) or name in (QUEUED, RUNNING,
                                                                                                SUCCEEDED, FAILED)}

    def table(self):
        return Table(self)

    def summary(self):
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        where = f"on the swarm of {self.server}" if self.cluster else f"on {self.server}"
        return f"sweep {self.sweep_id}: {len(self.tasks)} tasks {where}: {counts}"

    def __str__(self):
        return f"{self.summary()}\n{self.table()}"

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        return f"<b>{html.escape(self.summary())}</b>{self.table()._repr_html_()}"

    def to_json(self):
        data = dataclasses.asdict(self)
        for task in data["tasks"]:
            task["params"] = {k: repr(v) for k, v in task["params"].items()}  # as shown; the values are in the image
            task.pop("values"), task.pop("value")
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(TaskResult)}
        data["tasks"] = [TaskResult(**{k: v for k, v in t.items() if k in known}) for t in data["tasks"]]
        for task in data["tasks"]:  # as they were shown (their values are in the image)
            task.params = {k: values.Shown(v, "") for k, v in task.params.items()}
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
                cells[-1] = (f"<a href='{html.escape(cells[-1])}' target='_blank'>log</a> " if row[-1] != "-" else "") \
                    + f"<a href='{html.escape(folder)}' target='_blank'>folder</a>"
            body.append("<tr>" + "".join(f"<td {style}>{c}</td>" for c in cells) + "</tr>")
        return f"<table style='margin:0'><tr>{head}</tr>{''.join(body)}</table>"


def save(config, result):
    folder = Path(config.LOCAL_RESULTS_DIR) / INDEX
    folder.mkdir(parents=True, exist_ok=True)
    record.write_atomically(folder / f"{result.sweep_id}.json", result.to_json())


def load(config, sweep_id):
    path = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{check_sweep_id(sweep_id)}.json"
    if not path.exists():
        raise PystributedError(f"there is no sweep {sweep_id} in {Path(config.LOCAL_RESULTS_DIR) / INDEX}: it was "
                               "started from another folder (or LOCAL_RESULTS_DIR)")
    return SweepResult.from_json(path.read_text(encoding="utf-8"))


def sweeps(config):
    folder = Path(config.LOCAL_RESULTS_DIR) / INDEX
    return sorted((SweepResult.from_json(p.read_text(encoding="utf-8")) for p in folder.glob("sweep-*.json")),
                  key=lambda r: r.sweep_id, reverse=True)


# The display.

class Display:
    """One view of the sweep: in a notebook a table that updates in place (counts, then a row per
    task); in a terminal a line per change of a task's state, and the table at the end."""

    def __init__(self, steps):
        self.quiet = steps.quiet
        self.notebook = isinstance(steps, progress.NotebookSteps)
        self.handle, self.shown, self.said = None, 0.0, {}
        self.lock = threading.Lock()

    def update(self, result, *, force=False):
        if self.quiet:
            return
        with self.lock:
            if self.notebook:
                if force or time.monotonic() - self.shown > POLL:
                    self.shown = time.monotonic()
                    self._show(_Live(result))
                return
            for task in result.tasks:
                state = (task.status, task.attempts, task.node)
                if self.said.get(task.index) != state and (task.status != QUEUED or task.index in self.said
                                                           or task.why):
                    self.said[task.index] = state
                    sys.stdout.write(_line(task) + "\n")
                    sys.stdout.flush()

    def _show(self, view):
        from IPython.display import display

        if self.handle is None:
            self.handle = display(view, display_id=True)
        else:
            self.handle.update(view)

    def end(self, result):
        """The last state (in a terminal, the caller shows the SweepResult)."""
        if self.notebook and not self.quiet:
            self.update(result, force=True)


def _line(task):
    where = f" on {task.node}" + (f" ({task.gpu})" if task.gpu else "") if task.node else ""
    attempt = f" (attempt {task.attempts})" if task.attempts > 1 else ""
    took = f" in {task.duration:.1f}s" if task.final and task.duration is not None else ""
    why = f": {task.why}" if task.status == QUEUED and task.why else ""
    error = f": {task.error.splitlines()[0]}" if task.status == FAILED and task.error else ""
    return f"task {task.index} [{shown(task.params)}] {task.status}{attempt}{where}{took}{why}{error}"


class _Live:
    def __init__(self, result):
        self.result = dataclasses.replace(result, tasks=[dataclasses.replace(t) for t in result.tasks])

    def _repr_html_(self):
        counts = " · ".join(f"<b>{n}</b> {name}" for name, n in self.result.counts().items())
        return f"<div>sweep {html.escape(self.result.sweep_id)}: {counts}</div>{self.result.table()._repr_html_()}"

    def __repr__(self):
        return self.result.summary()


# Running a sweep.

class SweepRun(pipeline.Run):
    """The sweep as pipeline's steps see it (connect, build, push, pull); its record is the sweep's own."""

    def set(self, state, **fields):
        self.result.status = results.State(state)
        for name, value in fields.items():
            setattr(self.result, name, value)


def grid_of(specs):
    """{name: values} of --sweep/--param words (NAME=V1,V2); an error for a name given twice."""
    grid = {}
    for spec in specs or []:
        name, found = parse_param(spec)
        if name in grid:
            raise PystributedError(f"--sweep/--param {name} is given twice: give all its values at once ({name}=A,B)")
        grid[name] = found
    return grid


def from_magic(shell, cell, args):
    """%%remote --sweep NAME=V1,V2 ...: save the cell (its parameters count as defined), run the sweep."""
    from pystributed import config as configuration
    from pystributed import magic

    params = combinations(grid=grid_of(args.sweep))
    base = magic._config()
    script, _ = magic.with_earlier_cells(shell, cell, args)
    magic.save(script, base.USER_CODE_PATH)
    options = magic.overrides(args, base)
    detach = options.pop("detach", False)
    if options.pop("cache", False):
        raise PystributedError("--cache is for single runs, not sweeps")
    inputs, out = options.pop("inputs", None), options.pop("out", None)
    config = configuration.load(**options)
    return run(config, params=params, source=script, out=out, inputs=inputs, namespace=shell.user_ns,
               retries=args.retries, detach=detach, quiet=args.quiet, follow=args.follow)


def run(config, *, params, code_path=None, source=None, out=None, inputs=None, namespace=None, retries=0,
        detach=False, quiet=False, follow=None, on_interrupt=None):
    """Run the saved cell once per entry of `params` (a list of dicts); return a SweepResult. With
    `namespace`, each --out name is set there to the list of its values, in parameter order."""
    if retries < 0:
        raise PystributedError("--retries must be 0 or more")
    code_path = code_path or config.USER_CODE_PATH
    exchange = values.Exchange(inputs=inputs, out=out, namespace=namespace)
    found = [f for f in features.for_run(config, exchange=exchange) if not isinstance(f, cluster_feature.Cluster)]
    sweep_id = new_sweep_id()
    place = place_for(config)
    sweep = SweepRun(config, place, progress.steps_for(quiet), source=pipeline.check_code(code_path, source),
                     code_path=code_path, features=[*found, SweepFiles(params)], detach=detach)
    if isinstance(place, swarm.Swarm):
        place.steps = sweep.steps
    elif detach and (config.MAX_CONCURRENT or 1) < len(params):
        raise PystributedError(
            f"--detach: a sweep on one server is started task by task by this process, MAX_CONCURRENT "
            f"({config.MAX_CONCURRENT or 1}) at a time, so it cannot go on without it. Set MAX_CONCURRENT >= "
            f"{len(params)} (all start at once), or run it on a cluster (CLUSTER = 'swarm').")
    pipeline.check(sweep)
    result = SweepResult(sweep_id, [TaskResult(i, p) for i, p in enumerate(params)], out=exchange.out,
                         server=place.name, cluster=config.CLUSTER, retries=retries, started=results.now_iso())
    with tempfile.TemporaryFile() as sweep.context, contextlib.ExitStack() as sweep.cleanup:
        pipeline.pack(sweep)
        sweep.result = results.RunResult(sweep_id, server=place.name, started=result.started)
        with place.connection() as sweep.place:
            if isinstance(sweep.place, swarm.Swarm):
                sweep.place.steps = sweep.steps
            pipeline.ship(sweep)
            result.image, result.remote_dir, result.user = sweep.result.image, sweep.result.remote_dir, sweep.user
            result.mounts = sweep.mounts
            # sweep.config: as the features left it (--gpus free becomes the GPU it took).
            engine = (Cluster if config.is_cluster else Server)(sweep.config, sweep.place, result, sweep=sweep,
                                                                namespace=namespace, follow=follow)
            return engine.go(detach=detach, on_interrupt=on_interrupt or config.ON_INTERRUPT)


class Engine:
    """What both kinds of sweep share: the display, fetching a task's folder, the values, the record."""

    def __init__(self, config, place, result, *, sweep=None, namespace=None, follow=None):
        self.config, self.place, self.result = config, place, result
        self.sweep, self.namespace, self.follow = sweep, namespace, follow
        self.steps = sweep.steps if sweep else progress.steps_for(False)
        self.display = Display(self.steps)
        self.local = Path(config.LOCAL_RESULTS_DIR) / result.sweep_id
        result.local_path = str(self.local.resolve())
        self.fetches = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        self.followed = None
        self.lock = threading.Lock()

    def env(self, index=None):
        """The container's variables (on the command line; ENV and SECRETS go on its stdin)."""
        env = {"PYSTRIBUTED_RESULTS": "/results", "PYSTRIBUTED_RUN_ID": self.result.sweep_id,
               "PYSTRIBUTED_SWEEP_ID": self.result.sweep_id, "HOME": "/tmp"}
        if index is not None:
            env["PYSTRIBUTED_TASK"] = str(index)
        return env

    def go(self, *, detach, on_interrupt):
        self.start()
        self.result.status = RUNNING
        save(self.config, self.result)
        if detach:
            return self.detached()
        return self.watch(on_interrupt)

    def detached(self):
        self.result.status = "detached"
        save(self.config, self.result)
        sweep_id = self.result.sweep_id
        self.steps.say(f"Sweep {sweep_id} ({len(self.result.tasks)} tasks) goes on on {self.place.name}. Follow it "
                       f"and fetch its results with runner.attach({sweep_id!r}) (or, in a shell, `python -m "
                       f"pystributed attach {sweep_id}`).\n")
        return self.result

    def watch(self, on_interrupt):
        try:
            self.wait()
        except KeyboardInterrupt:
            if on_interrupt == "detach" and self.goes_on_alone():
                self.detached()
                raise
            self.steps.say(f"\nInterrupted: stopping every task of {self.result.sweep_id} and fetching what "
                           "results exist ...\n")
            self.cancel()
            raise
        return self.done()

    def done(self):
        self.fetches.shutdown(wait=True)
        if self.followed is not None:  # the followed task's last output
            self.followed.join(timeout=5)
        result = self.result
        result.ended = results.now_iso()
        result.status = SUCCEEDED if result.ok else CANCELLED if CANCELLED in result.statuses else FAILED
        self.collect()
        save(self.config, result)
        if self.local.exists():
            (self.local / "sweep.json").write_text(result.to_json(), encoding="utf-8")
        self.display.end(result)
        return result

    def fetch_task(self, task, place, remote_dir, *, going=False):
        """Copy the task's folder to LOCAL_RESULTS_DIR/<sweep-id>/<index>/ (whole, or not at all)."""
        local = self.local / str(task.index)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            place.fetch(remote_dir, lambda stream: results.extract(stream, local), going=going,
                        hint=f"The task's results are still in {remote_dir} on {task.node or place.name}.")
        except (StepError, OSError) as e:
            task.why = f"its results could not be fetched: {getattr(e, 'message', e)}"
            self.steps.say(f"task {task.index}: {task.why}\n")
            return
        task.local_path, task.fetched = str(local.resolve()), True
        state = _json_file(local / results.STATE_NAME).get("State") or {}
        times = [docker_time(state.get(k)) for k in ("StartedAt", "FinishedAt")]
        if all(times):  # the container's own, from the node's clock
            task.started, task.ended = times[0].timestamp(), times[1].timestamp()
        if task.status == FAILED and not task.error:
            task.error = failure(task)

    def collect(self):
        """Each task's --out values and last value; the --out names as lists in the notebook."""
        for task in self.result.tasks:
            if not task.local_path:
                continue
            run = results.RunResult(f"{self.result.sweep_id}/{task.index}", local_path=Path(task.local_path))
            try:
                values.Exchange(out=self.result.out).collect(run)
            except PystributedError as e:
                if task.status == SUCCEEDED:
                    task.error = str(e)
            task.values, task.value = dict(run.values), run.value
        if self.namespace is not None:
            self.namespace.update(self.result.values)

    def follow_task(self, task, stream):
        """With `follow`, the task's output here, live, once it runs (`stream(on_stdout, on_stderr)`)."""
        if self.follow != task.index or self.followed is not None:
            return
        out, err = live.Redraws("stdout"), live.Redraws("stderr")

        def go():
            with contextlib.suppress(StepError):
                stream(out.write, err.write)
            out.close()
            err.close()

        self.followed = threading.Thread(target=go, daemon=True)
        self.followed.start()


def failure(task):
    """The remote exception of a failed task, from its log."""
    text = task.log.read_text(encoding="utf-8", errors="replace") if task.log and task.log.exists() else ""
    kind, message, trace = parse_traceback(text)
    if kind:
        return f"{kind}: {message}\n{trace}"
    if task.exit_code is not None:
        return f"exit code {task.exit_code}" + (f": {task.why}" if task.why else "")
    return task.why or "failed"


class Cluster(Engine):
    """One replicated job on the swarm (its tasks' slots are their indexes), and a one-task job for
    each retry of a task (PYSTRIBUTED_TASK given). Every POLL seconds the tasks of all of them are
    read from the manager; a task that Swarm says is complete is fetched from its node, and its
    state file (task_runner.py) says whether the cell succeeded."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = set()  # Swarm tasks whose end was dealt with
        self.busy = set()  # indexes being fetched and settled

    @property
    def service(self):
        return swarm.service_name(self.result.sweep_id)

    def run_args(self, run_id):
        return docker.run_detached(self.result.image, run_id=run_id, results_dir=self.result.remote_dir,
                                   user=self.result.user, env=self.env(),
                                   extra_args=[*self.result.mounts, *self.config.DOCKER_RUN_ARGS])[2:]

    def secrets(self):
        """ENV and SECRETS (on the service's stdin): the sweep's, or read again after an attach."""
        return self.sweep.env if self.sweep else pipeline.environment(self.config)

    def start(self):
        n = len(self.result.tasks)
        with self.steps.step("start", f"{n} tasks on the swarm of {self.place.name}"):
            ident = self.place.create(self.run_args(self.result.sweep_id), self.secrets(), replicas=n,
                                      max_concurrent=self.config.MAX_CONCURRENT or n, gpus=self.config.GPUS_PER_TASK,
                                      variables=["PYSTRIBUTED_TASK_FOLDERS=1"])
        self.result.services = [[self.service, ident, None]]

    def retry(self, task):
        """The task again, as a one-task job of its own (Swarm places it where a GPU is free)."""
        run_id = f"{self.result.sweep_id}-{task.index}-{task.attempts + 1}"
        ident = self.place.create(self.run_args(run_id), self.secrets(), replicas=1,
                                  gpus=self.config.GPUS_PER_TASK,
                                  variables=["PYSTRIBUTED_TASK_FOLDERS=1", f"PYSTRIBUTED_TASK={task.index}",
                                             f"PYSTRIBUTED_ATTEMPT={task.attempts + 1}"])
        with self.lock:
            self.result.services.append([swarm.service_name(run_id), ident, task.index])

    def attempts(self):
        """(whether the sweep's job is still there, {index: its Swarm tasks, oldest first})."""
        names = [name for name, _, _ in self.result.services] or [self.service]
        exists, tasks = self.place.tasks(*names)
        index_of = {ident: index for _, ident, index in self.result.services}
        attempts = collections.defaultdict(list)
        for task in sorted(tasks, key=lambda t: t.created):
            if task.service in index_of:
                index = index_of[task.service]
                attempts[task.slot if index is None else index].append(task)
        return exists, attempts

    def look(self, *, fetch=True):
        """Bring the tasks up to date with Swarm's; whether the sweep's job is still there."""
        exists, attempts = self.attempts()
        for mine in self.result.tasks:
            theirs = attempts.get(mine.index, [])
            if mine.final or mine.index in self.busy or not theirs:
                continue
            last = theirs[-1]
            mine.attempts = len(theirs)
            if last.node:
                mine.node, mine.node_id, mine.gpu = self.place.node(last.node).shown, last.node, ", ".join(last.gpus)
            # Only the latest attempt counts: the ones before it were settled (a retry follows a complete
            # task whose cell failed) or failed in Swarm's hands (Swarm replaced them).
            self.seen.update(t.id for t in theirs[:-1])
            swarm_failures = [t for t in theirs if t.ended and not t.succeeded]
            if last.succeeded:
                if not fetch:
                    mine.status = "ended, not fetched yet"  # (status: attach fetches it, and says how it went)
                elif last.id not in self.seen:
                    self.seen.add(last.id)
                    self.busy.add(mine.index)
                    mine.ended = time.time()
                    self.fetches.submit(self.settle, mine, last)
            elif last.ended and len(swarm_failures) > self.result.retries:
                mine.status, mine.ended = FAILED, time.time()  # Swarm could not run it (and tries again: not ours)
                mine.why = mine.error = last.error or last.message or "Swarm could not run it"
                mine.exit_code = last.exit_code
            elif last.ended:
                mine.status = RETRYING  # Swarm puts another task in its place
            elif last.state in swarm.QUEUED:
                mine.status, mine.why = (RETRYING if len(theirs) > 1 else QUEUED), last.error or ""
            elif last.state in swarm.STARTING:
                mine.status, mine.why = STARTING, ""
            elif last.state == "running":
                if mine.status != RUNNING:
                    mine.started, mine.ended = time.time(), None
                mine.status, mine.why = RUNNING, ""
                self.follow_task(mine, lambda out, err, last=last: self.place.at(last.node).stream(
                    "docker_command", "logs", "--follow", last.container, step="run", on_stdout=out, on_stderr=err))
        return exists

    def settle(self, task, last):
        """A task that Swarm says is complete: fetch its folder; succeeded, tried again, or failed."""
        try:
            self.fetch_task(task, self.place.at(last.node), f"{self.result.remote_dir}/{task.index}")
            state = _json_file(Path(task.local_path) / results.STATE_NAME) if task.local_path else {}
            code = (state.get("State") or {}).get("ExitCode")
            task.exit_code = code
            if task.started is None:
                task.started = task.ended
            if code == 0:
                task.status, task.error = SUCCEEDED, ""
            elif code is None:
                task.status, task.error = FAILED, task.why or "its results (and exit code) could not be fetched"
            elif task.attempts <= self.result.retries and not self.cancelling:
                task.status, task.error = RETRYING, failure(task)
                self.retry(task)
            else:
                task.status = CANCELLED if state.get("Cancelled") else FAILED
                task.error = failure(task)
        finally:
            self.busy.discard(task.index)

    cancelling = False

    def goes_on_alone(self):
        """Whether the sweep goes on without this process (Swarm queues the tasks it has not started)."""
        return True

    def wait(self):
        while True:
            exists = self.look()
            self.display.update(self.result)
            if all(t.final for t in self.result.tasks) and not self.busy:
                self.display.update(self.result)
                break
            if not exists:  # removed by `cancel` elsewhere
                for task in self.result.tasks:
                    if not task.final:
                        task.status = CANCELLED
                break
            time.sleep(POLL)
        self.remove()
        self.tidy()

    def remove(self, *, interrupt=False):
        names = [name for name, _, _ in self.result.services] or [self.service]
        self.place.remove_service(*names, step="cancel", interrupt=interrupt)

    def tidy(self):
        """The sweep's folder goes from the nodes where no task ran (it is empty there)."""
        used = {t.node_id for t in self.result.tasks if t.node_id}
        spare = [n for n in self.place.usable() if n.id not in used]
        self.place.each(spare, lambda node: self.place.at(node).call("rmdir_run", self.result.remote_dir,
                                                                       step="fetch"))

    def cancel(self):
        """Remove the jobs (Swarm interrupts each task's cell: SIGINT), wait until no container of
        them is left, fetch what the tasks wrote."""
        self.cancelling = True
        with contextlib.suppress(StepError):
            self.look(fetch=False)
        self.remove(interrupt=True)
        for task in self.result.tasks:
            if not task.final:
                task.status, task.ended = CANCELLED, time.time()
                if task.node_id and not task.fetched:
                    self.fetches.submit(self.fetch_task, task, self.place.at(task.node_id),
                                        f"{self.result.remote_dir}/{task.index}")
        self.done()
        self.tidy()


def _json_file(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Server(Engine):
    """MAX_CONCURRENT containers at a time on one server, each looked after by a thread of ours."""

    def start(self):
        self.queue = collections.deque(t for t in self.result.tasks if not t.final)
        self.stopping = threading.Event()
        self.launched = set()  # indexes of the tasks whose container was started
        self.errors = []
        width = min(self.config.MAX_CONCURRENT or 1, len(self.queue))
        self.workers = [threading.Thread(target=self.work, daemon=True) for _ in range(width)]
        with self.steps.step("start", f"{len(self.queue)} tasks on {self.place.name}, {width} at a time"):
            if self.sweep is not None and self.sweep.detach:  # all at once, before this process goes (run())
                while self.queue:
                    task = self.queue.popleft()
                    self.place.call("rundir", self.place.workdir(), f"{self.result.sweep_id}/{task.index}", step="run")
                    self.launch(task)
                self.workers = []
            for worker in self.workers:
                worker.start()

    def goes_on_alone(self):
        # The tasks not started yet are started only by this process, which an interrupt ends.
        return not self.queue and all(t.index in self.launched for t in self.result.tasks if not t.final)

    def task_id(self, task):
        return f"{self.result.sweep_id}-{task.index}"

    def task_dir(self, task):
        return f"{self.result.remote_dir}/{task.index}"

    def work(self):
        while not self.stopping.is_set():
            with self.lock:
                if not self.queue:
                    return
                task = self.queue.popleft()
            try:
                self.run_task(task)
            except StepError as e:
                if self.stopping.wait(0.5):  # an interrupt (Ctrl-C reaches our ssh too): cancel() puts it away
                    return
                task.status, task.error, task.ended = FAILED, f"{e.message}\n{e.output}".strip(), time.time()
            except BaseException as e:  # noqa: BLE001 (kept for the main thread)
                self.errors.append(e)
                return

    def launch(self, task):
        """Start the task's container (an attempt more)."""
        sweep = self.sweep
        task.attempts += 1
        task.status, task.started, task.ended = STARTING, time.time(), None
        args = docker.run_detached(sweep.result.image, run_id=self.task_id(task), results_dir=self.task_dir(task),
                                   user=sweep.user, env={**self.env(task.index), "PYSTRIBUTED_ATTEMPT": str(task.attempts)},
                                   extra_args=[*sweep.mounts, *self.config.DOCKER_RUN_ARGS])[2:]
        self.place.start([*args, *swarm.task_command("--cell")], sweep.env)  # finish saves its log
        self.launched.add(task.index)
        task.status, task.node = RUNNING, self.place.name

    def run_task(self, task):
        self.place.call("rundir", self.place.workdir(), f"{self.result.sweep_id}/{task.index}", step="run")
        while True:
            if self.stopping.is_set():
                task.status = CANCELLED
                return
            self.launch(task)
            self.follow_task(task, lambda out, err: self.place.logs(self.task_dir(task), self.task_id(task), out, err,
                                                                    follow=True))
            lines = self.place.finish(self.task_dir(task), self.task_id(task))
            first = lines[0].strip() if lines else ""
            task.exit_code = int(json.loads(first)["State"]["ExitCode"]) if first.startswith("{") else int(first)
            task.ended = time.time()
            if task.exit_code == 0 or self.stopping.is_set() or task.attempts > self.result.retries:
                break
            task.status = RETRYING
        task.status = SUCCEEDED if task.exit_code == 0 else CANCELLED if self.stopping.is_set() else FAILED
        task.node = self.place.name
        self.fetch_task(task, self.place, self.task_dir(task))

    def wait(self):
        while any(w.is_alive() for w in self.workers):
            self.display.update(self.result)
            time.sleep(POLL)
        for worker in self.workers:
            worker.join()
        self.display.update(self.result)
        if self.errors:
            raise self.errors[0]

    def cancel(self):
        """Stop every task that started (SIGINT, then `docker stop`), put each away, fetch what it wrote.
        Statuses are not trusted here: an interrupt from a terminal also kills our ssh commands, and a
        worker may have taken that for its task's failure."""
        self.stopping.set()
        started = [t for t in self.result.tasks if t.index in self.launched and not t.fetched]
        for task in started:
            with contextlib.suppress(StepError):
                self.place.stop(self.task_id(task), step="cancel")
        for worker in self.workers:
            worker.join(timeout=15)
        for task in started:
            if task.fetched:
                continue
            with contextlib.suppress(StepError):
                lines = self.place.finish(self.task_dir(task), self.task_id(task), cancelled=True)
                first = lines[0].strip() if lines else ""
                task.exit_code = int(json.loads(first)["State"]["ExitCode"]) if first.startswith("{") else int(first)
            task.status, task.ended = CANCELLED, time.time()
            self.fetch_task(task, self.place, self.task_dir(task))
        for task in self.result.tasks:
            if not task.final or task in started and task.status != SUCCEEDED:
                task.status = CANCELLED
        self.done()


# After the start: from any kernel or shell, by the sweep's id.

def _engine(config, place, result, **kwargs):
    return (Cluster if result.cluster else Server)(config, place, result, **kwargs)


def attach(config, sweep_id, *, namespace=None, quiet=False, follow=None):
    """Follow a sweep started earlier (--detach, or an interrupt with ON_INTERRUPT = "detach") to its
    end, fetching each task's folder; its SweepResult."""
    result = load(config, sweep_id)
    config = _config_of(config, result)
    with place_for(config).connection() as place:
        engine = _engine(config, place, result, namespace=namespace, follow=follow)
        engine.steps = progress.steps_for(quiet)
        engine.display = Display(engine.steps)
        if isinstance(place, swarm.Swarm):
            place.steps = engine.steps
            exists, _ = engine.attempts()
            for task in result.tasks:  # those that ended before: fetched now, if they were not
                if (task.final or not exists) and not task.fetched and task.node_id:
                    engine.fetches.submit(engine.fetch_task, task, place.at(task.node_id),
                                          f"{result.remote_dir}/{task.index}")
                if not exists and not task.final:  # put away already (cancelled)
                    task.status = CANCELLED
            return engine.done() if not exists else engine.watch("detach")
        engine.queue, engine.stopping, engine.errors = collections.deque(), threading.Event(), []
        engine.workers = [threading.Thread(target=_reattach, args=(engine, t), daemon=True)
                          for t in result.tasks if not t.final]
        for worker in engine.workers:
            worker.start()
        return engine.watch("detach")


def _reattach(engine, task):
    """A task of a server's sweep that was started before a detach: wait for it, put it away, fetch it."""
    lines = engine.place.finish(engine.task_dir(task), engine.task_id(task))
    first = lines[0].strip() if lines else ""
    task.exit_code = int(json.loads(first)["State"]["ExitCode"]) if first.startswith("{") else int(first)
    task.status, task.ended, task.node = (SUCCEEDED if task.exit_code == 0 else FAILED), time.time(), engine.place.name
    engine.fetch_task(task, engine.place, engine.task_dir(task))


def _config_of(config, result):
    """The config the sweep ran with, as far as where it ran goes."""
    return dataclasses.replace(config, REMOTE_SERVER=result.server, CLUSTER=result.cluster)


def cancel(config, sweep_id):
    """Stop every task of the sweep (their cells get a KeyboardInterrupt), leave nothing running, fetch
    what they wrote."""
    result = load(config, sweep_id)
    config = _config_of(config, result)
    with place_for(config).connection() as place:
        engine = _engine(config, place, result)
        engine.display = Display(progress.steps_for(True))
        if isinstance(engine, Cluster):
            engine.cancel()
            return engine.result
        engine.workers, engine.stopping = [], threading.Event()
        for task in result.tasks:
            if not task.final:
                with contextlib.suppress(StepError):
                    place.stop(engine.task_id(task), step="cancel")
                with contextlib.suppress(StepError):
                    _reattach(engine, task)
                task.status = CANCELLED
        return engine.done()


def logs(config, sweep_id, index, *, follow=False):
    """Print a task's output from its start (with `follow`, until it ends)."""
    result = load(config, sweep_id)
    config = _config_of(config, result)
    if not 0 <= index < len(result.tasks):
        raise PystributedError(f"sweep {sweep_id} has tasks 0 to {len(result.tasks) - 1}, not {index}")
    task = result.tasks[index]
    out, err = live.Redraws("stdout"), live.Redraws("stderr")
    with place_for(config).connection() as place:
        remote_dir = f"{result.remote_dir}/{index}"
        if isinstance(place, swarm.Swarm):
            _, attempts = Cluster(config, place, result).attempts()
            last = (attempts.get(index) or [None])[-1]
            if last and last.container and not last.ended:
                code = place.at(last.node).stream("docker_command", "logs", *(["--follow"] if follow else []),
                                                  last.container, step="logs", on_stdout=out.write, on_stderr=err.write)
            else:
                node = (last.node if last else "") or task.node_id or place.where(remote_dir)
                code = place.at(node).logs(remote_dir, "-", out.write, err.write)
        else:
            code = place.logs(remote_dir, f"{sweep_id}-{index}", out.write, err.write, follow=follow)
    out.close()
    err.close()
    return code


def status(config, sweep_id):
    """The sweep as its record has it, brought up to date from the swarm (a cluster's sweep)."""
    result = load(config, sweep_id)
    if result.cluster and not all(t.final for t in result.tasks):
        config = _config_of(config, result)
        with place_for(config).connection() as place:
            Cluster(config, place, result).look(fetch=False)
    return result


# The sweeps in REMOTE_WORKDIR, for `list` and `clean` (lifecycle.survey(..., sweeps=True)): the
# server's survey has each sweep's folder, its tasks' folders and saved states (and, on one server,
# the tasks' containers); on a swarm, the tasks of our services are asked for too.

@dataclasses.dataclass
class SweepState(RunState):
    """A sweep as the server sees it: one row of `list`, its state a summary ("12 tasks: 10
    succeeded, 2 failed"); `container` when something of it is left to put away."""

    tasks: dict = dataclasses.field(default_factory=dict)  # index -> its status (as SweepResult's)
    total: int = 0  # its tasks: as many as its record here has, else as many as the server shows
    leftovers: list = dataclasses.field(default_factory=list)  # ended tasks' containers (RunState), one server's
    services: list = dataclasses.field(default_factory=list)  # its Swarm services, all of whose tasks ended

    def put_away(self, config, place):
        """Its ended tasks' containers (each one's log and state saved in its folder first), its services
        (and their containers on the nodes)."""
        for task in self.leftovers:
            place.finish(task.remote_dir, task.run_id)
        if self.services:
            place.remove_service(*self.services, step="clean")

    @property
    def put_away_line(self):
        if self.services:
            return f"  services   {', '.join(self.services)}  (sweep {self.run_id}: {self.state})"
        return (f"  containers {', '.join(docker.container_name(t.run_id) for t in self.leftovers)}  (sweep "
                f"{self.run_id}: {self.state}; their logs and states are saved first)")


def _task_status(run):
    if run.active:
        return STARTING if run.state == "starting" else RUNNING
    return SUCCEEDED if run.exit_code == 0 else CANCELLED if run.state == "cancelled" else FAILED


def _summary(total, statuses):
    counts = collections.Counter(statuses)
    shown = ", ".join(f"{counts[name]} {name}" for name in (RUNNING, STARTING, QUEUED, RETRYING, SUCCEEDED, FAILED,
                                                             CANCELLED, "not run") if counts[name])
    return f"{total} tasks: {shown}" if total else "no task started"


def survey(config, place, sections):
    """{sweep id: SweepState} of the sweeps in REMOTE_WORKDIR (those of the survey's `sections`)."""
    now = float(sections.get("now", [time.time()])[0])
    workdir = (sections.get("workdir") or [""])[0]
    found, runs = {}, collections.defaultdict(list)
    for line in sections.get("sweeps", []):
        path, _, mtime = line.rpartition(" ")
        sweep_id, _, index = path.partition("/")
        if SWEEP_ID.fullmatch(sweep_id):
            sweep = found.setdefault(sweep_id, SweepState(sweep_id, remote_dir=f"{workdir}/{sweep_id}"))
            age = max(0.0, now - float(mtime))  # its folder's, or its youngest task folder's
            sweep.age = age if sweep.age is None else min(sweep.age, age)
            sweep.total = max(sweep.total, int(index) + 1 if index.isdigit() else 0)
    # Saved states, then containers (a retried task's container is newer than its saved state).
    for line, container in [(line, False) for line in sections.get("sweep_states", [])] + \
                           [(line, True) for line in sections.get("containers", [])]:
        info = json_or_empty(line)
        name = (info.get("Name") or "").removeprefix("/").removeprefix(docker.container_name(""))
        sweep_id, _, index = name.rpartition("-")
        folder = f"{workdir}/{sweep_id}/{index}"
        mounts = [m.get("Source") for m in info.get("Mounts") or []]
        if sweep_id not in found or not index.isdigit() or (container and folder not in mounts):
            continue
        task = RunState(name, remote_dir=folder)
        describe(task, info, container=container)
        found[sweep_id].tasks[int(index)] = _task_status(task)
        found[sweep_id].active |= task.active
        runs[sweep_id].append(task)
        if container and not task.active:
            found[sweep_id].leftovers.append(task)
    if isinstance(place, swarm.Swarm):
        _swarm_tasks(place, found)
    for sweep in found.values():
        _complete(config, sweep, runs[sweep.run_id])
    return found


def _swarm_tasks(place, found):
    """The sweeps' services, and the state of each task's latest attempt (retries are services of their own)."""
    names, tasks = place.ours()
    for name in names:
        match = SWEEP_ID.match(name.removeprefix(docker.container_name("")))
        if match and match.group(0) in found:
            found[match.group(0)].services.append(name)
    latest = {}
    for task in sorted(tasks, key=lambda t: t.created):
        match = SWEEP_ID.match(task.run)
        if match and match.group(0) in found:
            rest = task.run[match.end():].lstrip("-")  # a retry's INDEX-ATTEMPT
            latest[match.group(0), int(rest.split("-")[0]) if rest else task.slot] = task
    for (sweep_id, index), task in latest.items():
        sweep = found[sweep_id]
        sweep.total = max(sweep.total, index + 1)
        if not task.ended:
            sweep.active = True
            sweep.tasks[index] = RUNNING if task.state == "running" else QUEUED if task.state in swarm.QUEUED \
                else STARTING
        elif index not in sweep.tasks:  # Swarm could not run it: no state saved
            sweep.tasks[index] = FAILED


def _complete(config, sweep, runs):
    """The rest from its record here (its tasks, image, times, results here); its summary."""
    path = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{sweep.run_id}.json"
    known = SweepResult.from_json(path.read_text(encoding="utf-8")) if path.exists() else None
    sweep.total = max(sweep.total, len(known.tasks) if known else 0)
    ended = sum(1 for status in sweep.tasks.values() if status in FINAL)
    if (not sweep.active and not (known and known.status in FINAL) and ended < sweep.total and sweep.age is not None
            and sweep.age < STARTING_GRACE):
        sweep.active = True  # being built, or between two tasks of one server's sweep: it goes on
    if sweep.active:
        sweep.leftovers, sweep.services = [], []
    sweep.leftovers.sort(key=lambda run: int(run.run_id.rpartition("-")[2]))
    sweep.container = bool(sweep.leftovers or sweep.services)
    rest = QUEUED if sweep.active else "not run"
    sweep.state = _summary(sweep.total, [sweep.tasks.get(i, rest) for i in range(sweep.total)])
    starts = [r.started for r in runs if r.started]
    sweep.started = min(starts) if starts else iso_time(known.started if known else "")
    if not sweep.active:
        ends = [r.ended for r in runs if r.ended]
        sweep.ended = max(ends) if ends else iso_time(known.ended if known else "")
    sweep.image = (known.image if known else "") or next((r.image for r in runs if r.image), "")
    if known and known.local_path and Path(known.local_path).exists():
        sweep.local_path = known.local_path


def from_records(config, server):
    """The sweeps this folder started on `server`, as their records here last saw them (`list` offline)."""
    found = []
    for known in sweeps(config):
        if known.server == server:
            found.append(SweepState(
                known.sweep_id, state=f"{_summary(len(known.tasks), known.statuses)} (last seen)",
                started=iso_time(known.started), ended=iso_time(known.ended), image=known.image,
                remote_dir=known.remote_dir, total=len(known.tasks),
                local_path=known.local_path if known.local_path and Path(known.local_path).exists() else ""))
    return found


# python -m pystributed sweep FILE --param NAME=V1,V2 ... | attach SWEEP | logs SWEEP/INDEX | status, wait,
# fetch, cancel SWEEP (cli.py hands these here).

def add_commands(command):
    sub = command("sweep", "run a script once per combination of parameters",
                  "Run FILE once per combination of the --param values (each a variable defined before the script, "
                  "and PYSTRIBUTED_TASK its index): on a cluster (CLUSTER = 'swarm') as one Swarm job sharing its "
                  "GPUs, on one server MAX_CONCURRENT at a time. Each task's folder lands in "
                  "LOCAL_RESULTS_DIR/<sweep-id>/<index>/. Exits 0 if every task succeeded, 1 otherwise.")
    sub.add_argument("file", nargs="?", metavar="FILE", help="the code to run (default: USER_CODE_PATH)")
    sub.add_argument("--param", action="append", required=True, metavar="NAME=V1,V2",
                     help="a parameter and its values (Python literals, else strings); give one per parameter")
    sub.add_argument("--retries", type=int, default=0, metavar="N", help="run a failed task again, N times at most")
    sub.add_argument("--detach", action="store_true", help="start the sweep, print its id and return")
    sub.add_argument("--follow", type=int, metavar="INDEX", help="show this task's output live")
    sub.add_argument("-q", "--quiet", action="store_true", help="no step lines")
    sub = command("attach", "follow a sweep (or a run) to its end and fetch its results",
                  "Follow SWEEP (or RUN) started earlier: each task's state as it changes, then its results.")
    sub.add_argument("run_id", metavar="SWEEP")
    sub.add_argument("-q", "--quiet", action="store_true", help="no step lines")


def is_sweep(args):
    return bool(SWEEP_ID.fullmatch(str(getattr(args, "run_id", "")).split("/")[0])) or args.command == "sweep"


def command(config, args):
    """A command of cli.py's on a sweep; its exit code."""
    if args.command == "sweep":
        path = args.file or config.USER_CODE_PATH
        if not os.path.isfile(path):
            raise PystributedError(f"{path}: no such file (FILE is the script to run)")
        params = combinations(grid=grid_of(args.param))
        stdout = contextlib.redirect_stdout(sys.stderr) if args.detach else contextlib.nullcontext()
        with stdout:  # with --detach, stdout is the sweep id alone
            result = run(config, params=params, code_path=path, retries=args.retries, detach=args.detach,
                         quiet=args.quiet, follow=args.follow)
        print(result.sweep_id if args.detach else result.table())
        return 0 if args.detach or result.ok else 1
    sweep_id, _, index = args.run_id.partition("/")
    if args.command == "logs":
        if not index.isdigit():
            raise PystributedError(f"logs of a sweep's task: give SWEEP/INDEX, e.g. {sweep_id}/0")
        return logs(config, sweep_id, int(index), follow=args.follow) and 1
    if args.command == "cancel":
        result = cancel(config, sweep_id)
    elif args.command == "status":
        result = status(config, sweep_id)
    else:  # attach, wait, fetch: to its end, its results here
        result = attach(config, sweep_id, quiet=getattr(args, "quiet", False))
    print(result)
    return 0 if result.ok or args.command in ("cancel", "status") else 1
