"""Sweeps as `list` and `clean` see them on the server: one row per sweep (its state the count of its
tasks' states), and what of an ended sweep is left to put away (its tasks' containers, its Swarm
services). Read from the same survey as the runs (lifecycle.survey), plus, on a swarm, its tasks."""
from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path

from pystributed import docker
from pystributed.jobs import (
    CANCELLED,
    FAILED,
    FINAL,
    INDEX,
    QUEUED,
    RETRYING,
    RUNNING,
    STARTING,
    SUCCEEDED,
    SWEEP_ID,
    Job,
    sweeps,
)
from pystributed.lifecycle import STARTING_GRACE, RunState, describe, iso_time, json_or_empty
from pystributed.places import swarm_service

# The sweeps in REMOTE_WORKDIR, for `list` and `clean` (listing.py): the
# server's survey has each sweep's folder, its tasks' folders and saved states (and, on one server,
# the tasks' containers); on a swarm, the tasks of our services are asked for too.


@dataclasses.dataclass
class SweepState(RunState):
    """A sweep as the server sees it: one row of `list`, its state a summary ("12 tasks: 10
    succeeded, 2 failed"); `container` when something of it is left to put away."""

    tasks: dict = dataclasses.field(default_factory=dict)  # index -> its status (as jobs.Task's)
    total: int = 0  # its tasks: as many as its record here has, else as many as the server shows
    # ended tasks' containers (RunState), one server's
    leftovers: list = dataclasses.field(default_factory=list)
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
    shown = ", ".join(f"{counts[name]} {name}" for name in (RUNNING, STARTING, QUEUED, RETRYING, SUCCEEDED,
                                                             FAILED, CANCELLED, "not run") if counts[name])
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
    if place.queues and hasattr(place, "ours"):  # a swarm's services' tasks (not a Slurm cluster's)
        _swarm_tasks(place, found)
    for sweep in found.values():
        _complete(config, sweep, runs[sweep.run_id])
    return found


def _swarm_tasks(place, found):
    """The sweeps' services, and the state of each task's latest attempt (retries are services of
    their own)."""
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
            sweep.tasks[index] = RUNNING if task.state == "running" \
                else QUEUED if task.state in swarm_service.QUEUED else STARTING
        elif index not in sweep.tasks:  # Swarm could not run it: no state saved
            sweep.tasks[index] = FAILED


def _complete(config, sweep, runs):
    """The rest from its record here (its tasks, image, times, results here); its summary."""
    path = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{sweep.run_id}.json"
    known = Job.from_json(path.read_text(encoding="utf-8")) if path.exists() else None
    sweep.total = max(sweep.total, len(known.tasks) if known else 0)
    ended = sum(1 for status in sweep.tasks.values() if status in FINAL)
    if (not sweep.active and not (known and known.status in FINAL) and ended < sweep.total
            and sweep.age is not None and sweep.age < STARTING_GRACE):
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
