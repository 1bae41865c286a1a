"""bench.py's parts for sweeps at the size people run them (issue #29): `scale`, what 1,000 tasks cost
here per look with no rig; `sweep-large`, `sweep-large-slurm` and `sweep-large-server`, a sweep of 1,000
short tasks on a rig or on the sandbox's server, to its end, with the default settings."""
import contextlib
import io
import os
import sys
import time
import types
from pathlib import Path
from statistics import median

from pystributed import config as configuration
from pystributed import job_view, jobs, progress
from pystributed.places import slurm
from pystributed.places.slurm_engine import SlurmEngine

SCREEN_LINES = 24  # a terminal's height: a large sweep's table and its counts fit in it


class _Login:
    """The Slurm place as the engine's look asks it: squeue's answer for every task, made here."""

    name = "login"

    def __init__(self, job, size):
        self.job, self.size, self.running = job, size, True

    def sweep_jobs(self, remote_dir, *names):
        # each look: every task running, then every task pending (Resources), so each look changes all
        state, reason = ("RUNNING", "None") if self.running else ("PENDING", "Resources")
        self.running = not self.running
        name = names[0]
        lines = [f"{1000 + i}|{40 + i // self.size}|{i % self.size}|{name}|{state}|{reason}|node{i % 8}"
                 for i in range(len(self.job.tasks))]
        text = "@@pystributed@@ jobs\n" + "\n".join(lines) + "\n@@pystributed@@ gpus\n"
        text += "".join(f"{1000 + i} {i % 4}\n" for i in range(len(self.job.tasks)) if state == "RUNNING")
        return slurm.parse_jobs(text), set()


def measure_scale(args, workspace):
    """No rig: a sweep of --scale-tasks tasks on Slurm as this process handles it at each look: squeue's
    answer for all of them parsed and mapped to the tasks (in arrays of MaxArraySize 1001), every task
    changed, the record saved (Job.flush); the display drawn (a terminal's lines, a notebook's table);
    and `status SWEEP --all`, every task's row."""
    n = args.scale_tasks
    cfg = configuration.load(environ={}, REMOTE_SERVER="login", DOCKER_REGISTRY="reg:5000", CLUSTER="slurm",
                             SLURM_CONTAINERS="docker", LOCAL_RESULTS_DIR=str(workspace / "scale"))
    job = jobs.Job(jobs.new_sweep_id(), [jobs.Task(i, {"lr": i / n, "seed": i}) for i in range(n)],
                   server="login", cluster="slurm", remote_dir="/home/me/runs/sweep")
    size = 1001
    name = slurm.job_name(job.sweep_id)
    job.services = [[name, str(40 + k), None, *([k * size] if k else [])] for k in range(-(-n // size))]
    started = types.SimpleNamespace(steps=progress.steps_for(True), detach=False, env={})
    engine = SlurmEngine(cfg, _Login(job, size), job, sweep=started)
    looks = []
    for _ in range(args.repeat):
        begin = time.perf_counter()
        engine.look(fetch=False)
        engine.job.flush()
        looks.append(time.perf_counter() - begin)
    engine.fetches.shutdown()
    # The display, of a sweep half done: half the tasks succeeded (of uneven lengths), 1 in 100 failed.
    for task in job.tasks[: n // 2]:
        failed = task.index % 100 == 0
        task.set(jobs.FAILED if failed else jobs.SUCCEEDED, started=1.0, ended=2.0 + task.index % 7,
                 error="ValueError: bad" if failed else "")
    terminal = job_view.Display(progress.Steps())
    first = io.StringIO()
    with contextlib.redirect_stdout(first):  # a line per failure, once; the counts
        terminal.update(job, force=True)
    shown, html, every, lines = [], [], [], 0
    for _ in range(args.repeat):
        out = io.StringIO()
        begin = time.perf_counter()
        with contextlib.redirect_stdout(out):
            terminal.update(job, force=True)
            print(job)  # the table at the end, as `sweep` and `status` print it
        shown.append(time.perf_counter() - begin)
        lines = max(lines, len(out.getvalue().splitlines()))
        begin = time.perf_counter()
        page = job_view._Live(job)._repr_html_()  # the notebook's table, drawn at most every 0.5 s
        html.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        listed = f"{job.summary()}\n{job.table(every=True)}"
        every.append(time.perf_counter() - begin)
    rows = page.count("<tr>") - 1
    print(f"\na sweep of {n} tasks on Slurm, here, per look ({args.repeat} looks, medians; no rig):")
    print(f"  a look: squeue's {n} rows parsed and mapped, every task changed, the record saved: "
          f"{median(looks):.3f}s (target < 0.5s)")
    print(f"  half of them done (1 in 100 failed), the rest running or waiting: a terminal's look and "
          f"the table {median(shown) * 1000:.1f} ms, {lines} lines (target <= {SCREEN_LINES}; before, once: "
          f"{len(first.getvalue().splitlines())} lines, a failure's each and the counts)")
    print(f"  a notebook's table: {median(html) * 1000:.1f} ms, {rows} rows")
    print(f"  `status SWEEP --all`: {median(every) * 1000:.1f} ms, {len(listed.splitlines())} lines")
    return [(f"a look at {n} tasks (parsed, every task changed, saved) < 0.5s", median(looks) < 0.5,
             f"{median(looks):.3f}s"),
            (f"the display of {n} tasks a screen high (<= {SCREEN_LINES} lines)", lines <= SCREEN_LINES,
             f"{lines} lines")]


LARGE_CELL = "import time\n# round {n}\ntime.sleep({seconds})\n"


def measure_large_sweep(args, rig, gpus, config, made, folders=None):
    """A sweep of --large-tasks tasks of --large-seconds each on the rig, or on one server (`config`
    points there; the images made are added to `made`, the server's run folders to `folders`), with the
    default settings (a container a task), to its end: its time against the ideal (the waves of tasks on
    the rig's GPUs, or MAX_CONCURRENT at once on a server, plus one run's overhead, measured beside it),
    and whether every task's folder came back."""
    from pystributed import features, pipeline
    from pystributed import sweep as sweeping

    n, seconds = args.large_tasks, args.large_seconds
    where = "one server, MAX_CONCURRENT" if rig == "server" else f"the {rig} rig, its fake GPUs"
    print(f"\na sweep of {n} tasks of {seconds} s on {where}: {gpus} at once, default settings:", flush=True)
    Path("user_code.py").write_text(LARGE_CELL.format(n="one", seconds=seconds))
    begin = time.perf_counter()
    one = pipeline.run(config, quiet=True, features=features.for_run(config))
    took_one = time.perf_counter() - begin
    made.append(one.image)
    Path("user_code.py").write_text(LARGE_CELL.format(n="large", seconds=seconds))
    begin = time.perf_counter()
    result = sweeping.run(config, params=[{"x": k} for k in range(n)], quiet=True)
    took = time.perf_counter() - begin
    made.append(result.image)
    if folders is not None:
        folders += [one.remote_dir, result.remote_dir]
    back = sum(1 for t in result.tasks
               if t.local_path and (Path(t.local_path) / ".pystributed-state.json").is_file())
    overhead = took_one - seconds
    waves = -(-n // gpus)
    ideal = waves * seconds + overhead
    print(f"  one run {took_one:.2f}s; the sweep {took:.2f}s against an ideal of {ideal:.2f}s ({waves} waves "
          f"+ one run's overhead): {took / ideal:.2f}x; {took / n:.3f}s a task")
    print(f"  {result.summary()}; {back} of {n} folders back"
          + (f"; {len(result.services)} job array(s)" if rig == "slurm" else ""))
    label = f"{rig}: {n} tasks of {seconds} s end with every folder back"
    return [(label, result.ok and back == n, f"{back}/{n}, {took:.1f}s, {took / ideal:.2f}x of ideal")]


# These parts' options: (name, type, default, metavar, what it is).
OPTIONS = [("--scale-tasks", int, 1000, "N", "tasks of the `scale` part"),
           ("--large-tasks", int, 1000, "N", "tasks of the sweep-large parts"),
           ("--large-seconds", float, 0.1, "S", "each task's work in the sweep-large parts"),
           ("--large-at-once", int, 6, "N", "sweep-large-server's MAX_CONCURRENT")]


def add_arguments(parser):
    for name, kind, default, metavar, text in OPTIONS:
        parser.add_argument(name, type=kind, default=default, metavar=metavar,
                            help=f"{text} (default: {default})")


if __name__ == "__main__":
    sys.exit(f"run it through bench.py: {os.path.basename(sys.argv[0])} holds some of its parts")
