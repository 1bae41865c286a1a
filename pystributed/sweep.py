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
the record of the sweep is LOCAL_RESULTS_DIR/.sweeps/<sweep-id>.json (attach, status, cancel, logs).

The job and its tasks are jobs.py's; where they run, the place's engine (Place.engine names it:
places/server_engine.py, places/swarm_engine.py), on engine.py's common part."""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import itertools
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

from pystributed import (
    cell_runner,
    context,
    features,
    job_view,
    live,
    pipeline,
    progress,
    record,
    results,
    task_runner,
)
from pystributed.engine import POLL
from pystributed.errors import PystributedError, StepError, remote_cell_error
from pystributed.features import Feature, cell_mount, values
from pystributed.features import cluster as cluster_feature
from pystributed.jobs import FAILED, FINAL, SUCCEEDED, Job, Task, load, new_sweep_id
from pystributed.places import place_for
from pystributed.places.server_engine import ServerEngine
from pystributed.places.slurm_engine import SlurmEngine
from pystributed.places.swarm_engine import SwarmEngine

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
            raise PystributedError("params must be a non-empty list of dicts, "
                                   "e.g. [{'lr': 0.1}, {'lr': 0.01}]")
    else:
        if not grid:
            raise PystributedError("a sweep needs parameters: e.g. --sweep lr=0.1,0.01, "
                                   "or runner.sweep(lr=[0.1, 0.01])")
        for name, options in grid.items():
            if isinstance(options, (str, bytes)) or not hasattr(options, "__iter__"):
                raise PystributedError(f"{name}: give a list of values to sweep over, "
                                       f"e.g. {name}=[{options!r}]")
        params = [dict(zip(grid, combo)) for combo in itertools.product(*(list(v) for v in grid.values()))]
    for p in params:
        for name in p:
            if not str(name).isidentifier():
                raise PystributedError(f"parameter {name!r} is not a variable name")
    return params


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
            raise PystributedError(f"--sweep/--param {name} is given twice: "
                                   f"give all its values at once ({name}=A,B)")
        grid[name] = found
    return grid


def run(config, *, params, code_path=None, source=None, out=None, inputs=None, namespace=None, retries=0,
        detach=False, quiet=False, follow=None, on_interrupt=None):
    """Run the saved cell once per entry of `params` (a list of dicts); return its Job. With
    `namespace`, each --out name is set there to the list of its values, in parameter order."""
    if retries < 0:
        raise PystributedError("--retries must be 0 or more")
    if config.NODES > 1:
        raise PystributedError(f"NODES = {config.NODES} (--nodes) is for a single run, which runs over "
                               "several nodes; a sweep's tasks are one node each")
    code_path = code_path or config.USER_CODE_PATH
    exchange = values.Exchange(inputs=inputs, out=out, namespace=namespace)
    # A task's record names its image only: its cell is in it (no cell_mount.CellMount).
    found = [f for f in features.for_run(config, exchange=exchange)
             if not isinstance(f, (cluster_feature.Cluster, cell_mount.CellMount))]
    sweep_id = new_sweep_id()
    place = place_for(config)
    sweep = SweepRun(config, place, progress.steps_for(quiet), source=pipeline.check_code(code_path, source),
                     code_path=code_path, features=[*found, SweepFiles(params)], detach=detach)
    place.steps = sweep.steps
    if detach and not place.queues and (config.MAX_CONCURRENT or 1) < len(params):
        raise PystributedError(
            f"--detach: a sweep on one server is started task by task by this process, MAX_CONCURRENT "
            f"({config.MAX_CONCURRENT or 1}) at a time, so it cannot go on without it. Set MAX_CONCURRENT >= "
            f"{len(params)} (all start at once), or run it on a cluster (CLUSTER = 'swarm').")
    pipeline.check(sweep)
    job = Job(sweep_id, [Task(i, p) for i, p in enumerate(params)], out=exchange.out, server=place.name,
              cluster=config.CLUSTER, retries=retries, started=results.now_iso())
    with tempfile.TemporaryFile() as sweep.context, contextlib.ExitStack() as sweep.cleanup:
        pipeline.pack(sweep)
        sweep.result = results.RunResult(sweep_id, server=place.name, started=job.started)
        with place.connection() as sweep.place:
            pipeline.ship(sweep)
            job.image, job.remote_dir, job.user = sweep.result.image, sweep.result.remote_dir, sweep.user
            job.mounts = sweep.mounts
            # sweep.config: as the features left it (--gpus free becomes the GPU it took).
            engine = engine_for(sweep.place)(sweep.config, sweep.place, job, sweep=sweep, follow=follow,
                                             collect=lambda job: collect(job, namespace))
            return engine.go(detach=detach, on_interrupt=on_interrupt or config.ON_INTERRUPT)


def collect(job, namespace=None):
    """Each task's --out values and last value; the --out names as lists in the notebook."""
    for task in job.tasks:
        if not task.local_path:
            continue
        run = results.RunResult(f"{job.sweep_id}/{task.index}", local_path=Path(task.local_path))
        try:
            values.Exchange(out=job.out).collect(run)
        except PystributedError as e:
            if task.status == SUCCEEDED:
                task.set(error=str(e))
        task.values, task.value = dict(run.values), run.value  # (not saved: they stay in the task's folder)
    if namespace is not None:
        namespace.update(job.values)


# A run on a cluster: a job of one task.

def run_one(run, job=None, *, cancel=False, check=True):
    """A run on a cluster (pipeline.run hands it here once its image is there; lifecycle's attach, wait
    and cancel with its `job`): a job of one task on the cluster's engine, its id and folders the run's.
    Its RunResult, as a run on one server gives it: the cell's error raised, its --out values taken."""
    result, files, new = run.result, [], job is None
    if new:
        job = Job(result.run_id, [Task(0, {})], single=True, server=run.place.name,
                  cluster=run.config.CLUSTER, image=result.image, remote_dir=result.remote_dir,
                  user=run.user, mounts=run.mounts, started=result.started)
    elif not cancel and not job.claim():  # another process here drives it: shown as that one saves it
        job = _beside_driver(run.config, job, run.steps)
        if not job.claimed:
            return as_run(run, job, files, check=check)

    def landing(folder, found):  # (before the folder takes its name)
        live.unmark_file(folder / results.LOG_NAME)
        files.extend(found)

    engine = engine_for(run.place)(run.config, run.place, job, sweep=run, finalize=landing,
                                   follow=None if cancel or not check else 0)  # (wait, cancel: no output)
    run.place.steps = run.steps
    try:
        if run.detach:
            engine.go(detach=True, on_interrupt=run.on_interrupt)
            run.set(results.State.RUNNING)
            return result
        with run.steps.step("run", f"run {result.run_id} on {run.place.name}", live=True):
            job = (engine.cancel() if cancel else engine.resume() if not new
                   else engine.go(detach=False, on_interrupt=run.on_interrupt))
            log = job.tasks[0].log
            if engine.followed is None and not run.steps.quiet and log and log.exists():
                out = live.Redraws("stdout")  # it ended before a look saw it run: its output, now
                out.write(log.read_text(encoding="utf-8", errors="replace"))
                out.close()
    except KeyboardInterrupt:
        as_run(run, engine.job, files)
        raise
    return as_run(run, job, files, check=check and not cancel)


def as_run(run, job, files, *, check=False):
    """The run's record from its job's one task; with `check`, the run's failure raised."""
    result, task = run.result, job.tasks[0]
    state = results.State.DETACHED if job.status == "detached" else {
        SUCCEEDED: results.State.SUCCEEDED, FAILED: results.State.FAILED}.get(
        task.status, results.State.INTERRUPTED if task.final else results.State.RUNNING)
    if task.fetched:
        result.local_path, result.files = Path(task.local_path), sorted({*files, "run.json"})
    run.set(state, exit_code=task.exit_code)
    if task.fetched:
        if not files:  # (fetched by another process)
            result.files = sorted({*(p.relative_to(result.local_path).as_posix()
                                     for p in result.local_path.rglob("*") if p.is_file()), "run.json"})
        record.write_atomically(result.local_path / "run.json", result.to_json())
    if not check or not task.final:
        return result
    if state == results.State.FAILED and (task.exit_code is None or not task.fetched):
        # no cell's error: its node was lost, its container did not start, its folder did not come
        step = "fetch" if "could not be fetched" in (task.why or task.error) else "run"
        message, _, more = (task.error or task.why or "it failed").partition("\n")
        raise StepError(step, message, output=more)
    if task.fetched:
        run.hooks("after_fetch")
    if task.exit_code:
        text = result.log.read_text(encoding="utf-8", errors="replace") if result.log.exists() else ""
        raise remote_cell_error(result, text, text, entry=context.entry_point(".", run.code_path),
                                code_path=run.code_path)
    run.hooks("finished")
    return result


# After the start: from any kernel or shell, by the sweep's id, the same for every place.

def _config_of(config, job):
    """The config the sweep ran with, as far as where it ran goes."""
    return dataclasses.replace(config, REMOTE_SERVER=job.server, CLUSTER=job.cluster)


ENGINES = {"server": ServerEngine, "swarm": SwarmEngine, "slurm": SlurmEngine}


def engine_for(place):
    """The engine class of `place` (Place.engine names it)."""
    return ENGINES[place.engine]


@contextlib.contextmanager
def _engine(config, sweep_id, job=None, *, namespace=None, **options):
    job = job or load(config, sweep_id)
    config = _config_of(config, job)
    with place_for(config).connection() as place:
        engine = engine_for(place)(config, place, job, collect=lambda job: collect(job, namespace), **options)
        place.steps = engine.steps
        try:
            yield engine
        finally:
            engine.job.flush()


def attach(config, sweep_id, *, namespace=None, quiet=False, follow=None):
    """Follow a sweep started earlier (--detach, or an interrupt with ON_INTERRUPT = "detach") to its
    end, fetching each task's folder; its Job. While another process here drives it (a kernel, a
    `sweep`, an attach), its record is shown as that one saves it; this one takes it on if that one ends."""
    job = load(config, sweep_id)
    if not job.claim():
        job = _beside_driver(config, job, progress.steps_for(quiet))
        if not job.claimed:  # ended by the other process
            collect(job, namespace)
            return job
    with _engine(config, sweep_id, job, namespace=namespace, follow=follow, quiet=quiet) as driver:
        return driver.resume()


def _beside_driver(config, job, steps):
    """The job's record as the process that drives it saves it, until it ends (that Job) or the job
    is this process's to drive (that Job, claimed)."""
    steps.say(f"{'Run' if job.single else 'Sweep'} {job.sweep_id} is followed by another process here: "
              "showing it as that one saves it "
              "(if that process ends first, this one takes the sweep on).\n")
    display = job_view.Display(steps)
    while True:
        display.update(job)
        if job.status in FINAL:
            display.end(job)
            return job
        time.sleep(POLL)
        job = load(config, job.sweep_id)
        if job.status not in FINAL and job.claim():
            return job


def cancel(config, sweep_id):
    """Stop every task of the sweep (their cells get a KeyboardInterrupt), leave nothing running, fetch
    what they wrote."""
    with _engine(config, sweep_id, quiet=True) as engine:
        return engine.cancel()


def wait(config, sweep_id):
    """To its end, its results here (as attach, quietly)."""
    return attach(config, sweep_id, quiet=True)


def fetch(config, sweep_id, *, quiet=False):
    """The folders of the tasks that have ended, here now; nothing is waited for. While another
    process drives the sweep, that one fetches: its record is shown."""
    job = load(config, sweep_id)
    if not job.claim():
        return job
    with _engine(config, sweep_id, job, quiet=quiet) as driver:
        try:
            return driver.fetch_now()
        finally:
            job.release()


def logs(config, task_id, *, follow=False):
    """Print a task's output (task_id: SWEEP/INDEX) from its start (with `follow`, until it ends); the
    exit code."""
    sweep_id, _, index_text = task_id.partition("/")
    if not index_text.isdigit():
        raise PystributedError(f"logs of a sweep's task: give SWEEP/INDEX, e.g. {sweep_id}/0")
    index = int(index_text)
    out, err = live.Redraws("stdout"), live.Redraws("stderr")
    with _engine(config, sweep_id, quiet=True) as engine:
        tasks = engine.job.tasks
        if not 0 <= index < len(tasks):
            raise PystributedError(f"sweep {sweep_id} has tasks 0 to {len(tasks) - 1}, not {index}")
        code = engine.logs(tasks[index], out.write, err.write, follow=follow)
    out.close()
    err.close()
    return code


def status(config, sweep_id):
    """The sweep as its record has it, brought up to date from where it runs (a swarm's)."""
    job = load(config, sweep_id)
    if all(t.final for t in job.tasks) or not job.claim():  # (the process that drives it keeps the record)
        return job
    with _engine(config, sweep_id, job, quiet=True) as driver:
        try:
            driver.refresh()
        finally:
            job.release()
        return driver.job


# python -m pystributed sweep FILE --param NAME=V1,V2 ... | attach SWEEP | logs SWEEP/INDEX | status, wait,
# fetch, cancel SWEEP (cli.py hands these here).

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
    sweep_id = args.run_id.partition("/")[0]
    if args.command == "logs":
        return logs(config, args.run_id, follow=args.follow) and 1
    if args.command == "cancel":
        result = cancel(config, sweep_id)
    elif args.command == "status":
        result = status(config, sweep_id)
    elif args.command == "fetch":  # what has ended, now
        result = fetch(config, sweep_id, quiet=getattr(args, "quiet", False))
        print(result)
        return 1 if FAILED in result.statuses else 0
    else:  # attach, wait: to its end, its results here
        result = attach(config, sweep_id, quiet=getattr(args, "quiet", False))
    print(result)
    return 0 if result.ok or args.command in ("cancel", "status") else 1
