"""Runs after they started, from any kernel or shell: attach, status, logs, wait, fetch, cancel,
list (clean.py removes what ended). The server is the truth: the container labelled with the run id, and
the run folder REMOTE_WORKDIR/<run-id>/ with its output.log and .pystributed-state.json (the
container's final state, saved as it is removed). The local index (LOCAL_RESULTS_DIR/.runs/) answers
`list` when the server cannot be reached, and is brought up to date by what the server says."""
from __future__ import annotations

import dataclasses
import datetime
import html
import json
import re
import sys
import time

from pystributed import docker, jobs, live, pipeline, progress, results
from pystributed.errors import PystributedError, StepError, UnknownRun
from pystributed.features import values
from pystributed.places import place_for
from pystributed.results import State, docker_time

# Container states in which a run is still going (or about to): such a run is never removed.
ACTIVE = ("running", "paused", "restarting", "created")
# A run folder with no container, no state and no log may belong to a run that is being built
# and pushed right now (its container comes later): clean leaves it alone this long.
STARTING_GRACE = 3600
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclasses.dataclass
class RunState:
    """One run as the server (or, offline, the local index) describes it."""

    run_id: str
    state: str = "no container"  # running, exited N, interrupted, cancelled, killed (out of memory) ...
    exit_code: int | None = None
    started: datetime.datetime | None = None
    ended: datetime.datetime | None = None
    image: str = ""
    container: bool = False  # its container is still on the server
    active: bool = False  # it runs, or may be about to: never removed
    remote_dir: str = ""
    age: float | None = None  # seconds since its run folder last changed (a file added or removed)
    local_path: str = ""  # where its results were fetched to here

    @property
    def duration(self):
        if not self.started:
            return None
        end = self.ended or datetime.datetime.now(datetime.timezone.utc)
        return max(0.0, (end - self.started).total_seconds())  # the two clocks may differ a little

    def row(self):
        started = self.started.astimezone().strftime("%Y-%m-%d %H:%M:%S") if self.started else "-"
        return [self.run_id, self.state, started, human_duration(self.duration), self.image or "-",
                self.local_path or "-"]

    def __str__(self):
        run, state, started, took, image, fetched = self.row()
        lines = [f"{run} {state}", f"  started   {started}", f"  duration  {took}", f"  image     {image}",
                 f"  folder    {self.remote_dir or '-'}",
                 f"  results   {fetched if self.local_path else 'not fetched'}"]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


class RunTable(list):
    """What `list` shows; `offline` says why it comes from the local index instead of the server."""

    HEAD = ("RUN", "STATE", "STARTED", "DURATION", "IMAGE", "RESULTS HERE")

    def __init__(self, runs, *, offline=""):
        super().__init__(runs)
        self.offline = offline

    def __str__(self):
        rows = [list(self.HEAD)] + [r.row() for r in self]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEAD))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        if not self:
            lines = ["no runs"]
        if self.offline:
            lines.insert(0, f"OFFLINE, from the local index (may be stale): {self.offline}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEAD)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r.row()) + "</tr>"
                       for r in self)
        note = (f"<p><b>Offline</b>, from the local index (may be stale): {html.escape(self.offline)}</p>"
                if self.offline else "")
        return f"{note}<table><tr>{head}</tr>{body}</table>"

    def to_json(self):
        def plain(value):
            return value.isoformat() if isinstance(value, datetime.datetime) else str(value)
        runs = [dataclasses.asdict(r) for r in self]
        return json.dumps({"offline": self.offline, "runs": runs}, indent=1, default=plain)


def human_duration(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def parse_age(text):
    """'90s', '30m', '12h', '7d', '2w' (or a number of seconds) -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(text))
    if not match:
        raise PystributedError(f"{text!r} is not an age: give a number and a unit, "
                               "e.g. 90s, 30m, 12h, 7d, 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


# What the server says.

def survey(config, place, run_id=None):
    """{run id: RunState} of the runs in REMOTE_WORKDIR (or only `run_id`), in one command."""
    return parse_survey(config, place.survey(run_id))


def parse_survey(config, sections):
    now = float(sections.get("now", [time.time()])[0])
    workdir = (sections.get("workdir") or [""])[0]
    runs = {}
    for line in sections.get("folders", []):
        name, _, mtime = line.rpartition(" ")
        if results.RUN_ID.fullmatch(name):
            runs[name] = RunState(name, remote_dir=f"{workdir}/{name}", age=max(0.0, now - float(mtime)))
    logged = {line.removeprefix("./") for line in sections.get("logs", [])}
    for line, container in [(line, False) for line in sections.get("states", [])] + \
                           [(line, True) for line in sections.get("containers", [])]:
        info = json_or_empty(line)
        run_id = (info.get("Name") or "").removeprefix("/").removeprefix(docker.container_name(""))
        mounts = [m.get("Source") for m in info.get("Mounts") or []]
        # Only runs of this REMOTE_WORKDIR: other folders' runs share the engine.
        if run_id in runs and (not container or f"{workdir}/{run_id}" in mounts):
            describe(runs[run_id], info, container=container)
    for run in runs.values():
        if run.state == "no container":
            _from_index(config, run, logged=run.run_id in logged)
        local = results.load_record(config.LOCAL_RESULTS_DIR, run.run_id)
        if local and local.local_path and local.local_path.exists():
            run.local_path = str(local.local_path)
    return runs


def json_or_empty(line):
    try:
        return json.loads(line)
    except ValueError:
        return {}


def describe(run, info, *, container):
    state = info.get("State") or {}
    status, code = state.get("Status", ""), state.get("ExitCode")
    run.container, run.image = container, info.get("Image", run.image)
    run.started = docker_time(state.get("StartedAt")) or run.started
    if status in ACTIVE and not (status == "created" and state.get("Error")):
        run.active, run.exit_code, run.ended = True, None, None
        run.state = "starting" if status == "created" else status
        return
    run.active, run.exit_code = False, code
    run.ended = docker_time(state.get("FinishedAt"))
    if status == "created" or (state.get("Error") and not run.started):  # (docker wait marks it exited)
        run.state = "failed to start"
    elif info.get("Cancelled"):
        run.state = "cancelled"
    elif state.get("OOMKilled"):
        run.state = "killed (out of memory)"
    elif code == 130:  # the SIGINT of an interrupt: Python's KeyboardInterrupt exit
        run.state = "interrupted"
    else:
        run.state = f"exited {code}"


def _from_index(config, run, *, logged):
    """A run folder without a container or .pystributed-state.json: what the local index knows of it."""
    local = results.load_record(config.LOCAL_RESULTS_DIR, run.run_id)
    if local and local.exit_code is not None:
        run.exit_code, run.image = local.exit_code, local.image
        run.state = (str(State.INTERRUPTED) if local.status == State.INTERRUPTED
                     else f"exited {local.exit_code}")
    elif logged and local and local.status in (State.RUNNING, State.DETACHED) and not run.container and \
            config.is_cluster:
        # A Swarm task writes output.log as it starts; its container is on a node, not in this survey.
        run.state, run.active = "running", True
    elif logged:
        run.state = "ended"  # put away without a .pystributed-state.json (by an older pystributed)
    elif local and local.status not in (State.STARTING, State.RUNNING, State.DETACHED):
        run.state = str(local.status)  # e.g. failed before its container started
    elif run.age is not None and run.age < STARTING_GRACE:
        run.state, run.active = "no container (starting?)", True
    if local:
        run.image = run.image or local.image
        run.started = run.started or iso_time(local.started)
        if not run.active:  # its duration ends where the record says, not now
            run.ended = run.ended or iso_time(local.ended)


def iso_time(text):
    return datetime.datetime.fromisoformat(text) if text else None


def find(config, place, run_id):
    """The run as the server sees it; UnknownRun if it has no such run in REMOTE_WORKDIR."""
    results.check_run_id(run_id)
    run = survey(config, place, run_id).get(run_id)
    if run is None:
        local = results.load_record(config.LOCAL_RESULTS_DIR, run_id)
        known = ""
        if local:
            known = f"; the local index last saw it {local.status}" + (
                f", its results are in {local.local_path}" if local.local_path else "")
        raise UnknownRun(f"there is no run {run_id} in {config.REMOTE_WORKDIR} on {place.name}{known}")
    remember(config, place, run)
    return run


def _result(config, place, run):
    """The run's RunResult: the local record, brought up to date, or a new one."""
    result = (results.load_record(config.LOCAL_RESULTS_DIR, run.run_id)
              or results.RunResult(run.run_id, server=place.name))
    result.remote_dir, result.image = run.remote_dir, run.image or result.image
    if run.started and not result.started:
        result.started = run.started.isoformat(timespec="milliseconds")
    if run.ended:
        result.ended = run.ended.isoformat(timespec="milliseconds")
    if run.active and run.container:
        result.status = State.RUNNING
    elif run.exit_code is not None:
        result.exit_code = run.exit_code
        result.status = State(run.state) if run.state in (State.CANCELLED, State.INTERRUPTED) else (
            State.SUCCEEDED if run.exit_code == 0 else State.FAILED)
    return result


def remember(config, place, run):
    """Bring the local index up to date with what the server says (only runs it knows)."""
    known = results.load_record(config.LOCAL_RESULTS_DIR, run.run_id)
    if known:
        updated = _result(config, place, run)
        if updated != known:
            results.set_state(config.LOCAL_RESULTS_DIR, updated, updated.status)


def _pipeline_run(config, place, run, steps=None, **fields):
    """A pipeline.Run for a run that started earlier."""
    return pipeline.Run(config, place, steps or progress.steps_for(True), result=_result(config, place, run),
                        code_path=config.USER_CODE_PATH, **fields)


def put_away(config, place, run, *, cancelled=False):
    """Save an ended container's log and state into its run folder and remove it; the run again."""
    place.finish(run.remote_dir, run.run_id, cancelled=cancelled)
    return find(config, place, run.run_id)


def on_cluster(run, job=None, **options):
    """A run on a cluster, once its image is there (pipeline.run's `engine`), or its `job` after the start
    (attach, wait, cancel): a job of one task on the cluster's engine (sweep.run_one)."""
    from pystributed import sweep

    return sweep.run_one(run, job, **options)


# The commands.

def status(config, run_id):
    with place_for(config).connection() as place:
        return find(config, place, run_id)


def logs(config, run_id, *, follow=False):
    """Print the run's output from the start (stdout and stderr apart while its container is
    there, then from output.log); with `follow`, go on printing until it ends."""
    with place_for(config).connection() as place:
        run = find(config, place, run_id)
        if follow:
            run = _with_container(config, place, run)
        out, err = live.Redraws("stdout"), live.Redraws("stderr")
        code = place.logs(run.remote_dir, run_id, live.Unmarked(out.write), live.Unmarked(err.write),
                          follow=follow)
        out.close()
        err.close()
        if code:
            raise StepError("logs", f"the output of run {run_id} could not be read (exit code {code})",
                            hint=place.hint())
        return run


def held(config, place, run):
    """Whether the run's container is there to follow, stop or put away: ours, or on a cluster its job's
    (a Swarm task on a node, a Slurm job: no survey lists them) once it started (its job's record here)."""
    return run.container or (place.queues and run.active and job_of(config, place, run) is not None)


def job_of(config, place, run):
    """A cluster's run: its job (of one task, sweep.run_one), which its engine drives; None elsewhere."""
    return jobs.of_run(config, run.run_id) if place.queues else None


def _with_container(config, place, run, *, poll=5.0):
    """The run once its container is there (or it is known to have none)."""
    if run.active and not held(config, place, run):
        print(f"Run {run.run_id} has no container yet (is it being built or pushed?): waiting for it.",
              file=sys.stderr)
    while run.active and not held(config, place, run):
        time.sleep(poll)
        run = find(config, place, run.run_id)
    return run


def attach(config, run_id, *, quiet=False, on_interrupt="detach", namespace=None):
    """Follow a run started earlier (from any kernel or shell): its output from the start, then
    live; then fetch its results (with `namespace`, its --out variables set there). An interrupt
    leaves it running."""
    result = _attach(config, run_id, quiet=quiet, on_interrupt=on_interrupt)
    if namespace is not None and result.local_path:
        values.Exchange.of_run(result, namespace=namespace).collect(result)
    return result


def _attach(config, run_id, *, quiet, on_interrupt):
    steps = progress.steps_for(quiet)
    with place_for(config).connection() as place:
        run = _with_container(config, place, find(config, place, run_id))
        started = _pipeline_run(config, place, run, steps, on_interrupt=on_interrupt)
        job = job_of(config, place, run)
        if job is not None:
            return on_cluster(started, job)
        if not held(config, place, run):
            # It ended and was put away (its output is in the run folder): fetch what it left.
            steps.say(f"Run {run_id} has ended ({run.state}); fetching its results and log.\n")
            result = pipeline.fetch(started)
            if result.log and result.log.exists():
                steps.say(result.log.read_text(encoding="utf-8", errors="replace"))
            return result
        return pipeline.follow(started, start=False)


def wait(config, run_id):
    """Wait for the run to end; put its container away (log and state saved in the run folder);
    return its RunState, whose exit_code is the cell's."""
    with place_for(config).connection() as place:
        run = _with_container(config, place, find(config, place, run_id))
        job = job_of(config, place, run)
        if job is not None:
            on_cluster(_pipeline_run(config, place, run), job, check=False)
            return find(config, place, run_id)
        if held(config, place, run):
            run = put_away(config, place, run)
        return run


def fetch(config, run_id, *, quiet=False):
    """Copy the run folder back to LOCAL_RESULTS_DIR/<run-id>/ (replacing an earlier copy whole).
    A run still going gives what it has written so far."""
    steps = progress.steps_for(quiet)
    with place_for(config).connection() as place:
        run = find(config, place, run_id)
        if run.container and not run.active:
            run = put_away(config, place, run)  # so that output.log and .pystributed-state.json come too
        if run.active:
            steps.say(f"Run {run_id} is still {run.state}: fetching what it has written so far.\n")
        return pipeline.fetch(_pipeline_run(config, place, run, steps), going=run.active)


def cancel(config, run_id):
    """Stop the run (its cell gets a KeyboardInterrupt first, so its `finally:` blocks run) and
    remove its container; its log and state stay in the run folder. A run that ended is only
    put away."""
    with place_for(config).connection() as place:
        run = find(config, place, run_id)
        if run.active and not held(config, place, run):
            raise PystributedError(f"run {run_id} has no container yet (it is being built or pushed): "
                                   "interrupt the process that started it, or cancel it once it runs")
        job = job_of(config, place, run)
        if job is not None:
            if run.active:
                on_cluster(_pipeline_run(config, place, run), job, cancel=True)
            return find(config, place, run_id)
        if not held(config, place, run):
            return run
        if run.active:
            place.stop(run_id, step="cancel")
        return put_away(config, place, run, cancelled=run.active)
