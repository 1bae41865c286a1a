"""Runs one task of a sweep, or a run on a cluster, inside the image (stdlib only, Python 3.8+; copied
into the image next to cell_runner.py).

`python task_runner.py --cell` runs the cell as cell_runner.py does, with the task's parameters put
among the --in values (sweep.pkl holds, for each task, {name: pickle}), so that they are variables
defined before the cell. Before it, in the environment:
- PYSTRIBUTED_TASK, the task's index: given (a sweep on one server, a task tried again), else Swarm's
  slot of the task (PYSTRIBUTED_SLOT={{.Task.Slot}}: a replicated job's tasks have the slots 0..N-1;
  Swarm gives the node's id instead of the slot 0);
- with PYSTRIBUTED_TASK_FOLDERS=1 (a sweep on a cluster, whose tasks share one mounted folder),
  PYSTRIBUTED_RESULTS/<index>/, made, is PYSTRIBUTED_RESULTS;
- the GPUs that Swarm assigned the task (DOCKER_RESOURCE_GPU, their UUIDs) are CUDA_VISIBLE_DEVICES
  (and NVIDIA_VISIBLE_DEVICES).

`python task_runner.py` (on a cluster) looks after that process, as a server's `finish` step would:
it copies its output into PYSTRIBUTED_RESULTS/output.log as it comes, passes an interrupt on to it
(SIGINT: the cell's `finally:` blocks run), writes its exit code and times into
PYSTRIBUTED_RESULTS/.pystributed-state.json (or the name PYSTRIBUTED_STATE_NAME gives: a rank of a
run over several nodes, whose job script then writes the run's state from all of them), and exits 0
itself. Swarm retries a replicated job's failed task again and again, whatever its restart policy
says (a failed task's slot is simply filled again), so the cell's own failure is never Swarm's:
pystributed reads it from the state file, and tries the task again itself (--retries) as a job of
its own.

With PYSTRIBUTED_TASKS_PER_CONTAINER=K (TASKS_PER_CONTAINER, for short tasks: a task's container, its
placement and its start cost about a second each), the container runs K tasks one after another, each
as above: its own process, folder, output.log and state file. An interrupt (SIGINT: our cancel) stops
the one that runs and saves the rest as cancelled before they started; a stop (SIGTERM: Slurm's time
limit, a preemption, `docker stop`, none of them the user's wish) saves them as unstarted
(`"Unstarted": true`), and the engine runs them again without counting a failure or a retry.
"""
import datetime
import json
import os
import pickle
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
SWEEP = "sweep.pkl"
TASK = "task.json"  # {"entry": the cell's path in the image}
LOG = "output.log"
STATE = ".pystributed-state.json"
SECRETS = "/run/secrets"  # where Swarm puts a task's secrets


def task_index(environ):
    given = environ.get("PYSTRIBUTED_TASK", "")
    if given.isdigit():
        return int(given)
    slot = environ.get("PYSTRIBUTED_SLOT", "")
    return int(slot) if slot.isdigit() else 0  # not a number: the node's id, which Swarm gives for slot 0


def prepare(environ, here=HERE):
    """Set the task's variables in `environ`; return its index (None outside a sweep)."""
    index = task_index(environ)
    sweep = os.path.exists(os.path.join(here, SWEEP))
    if sweep:
        environ["PYSTRIBUTED_TASK"] = str(index)
    if environ.pop("PYSTRIBUTED_TASK_FOLDERS", "") == "1":  # (once: the cell's process inherits the result)
        folder = os.path.join(environ.get("PYSTRIBUTED_RESULTS", "/results"), str(index))
        os.makedirs(folder, exist_ok=True)
        environ["PYSTRIBUTED_RESULTS"] = folder
    # a swarm's: files, not its spec
    for name in filter(None, environ.pop("PYSTRIBUTED_SECRETS", "").split(",")):
        with open(os.path.join(SECRETS, f"pystributed-{name}"), encoding="utf-8") as f:
            environ[name] = f.read()
    gpus = environ.get("DOCKER_RESOURCE_GPU", "")
    if gpus:
        environ["CUDA_VISIBLE_DEVICES"] = environ["NVIDIA_VISIBLE_DEVICES"] = gpus
    return index if sweep else None


def params_of(index, here=HERE):
    """The task's parameters, {name: pickle}."""
    if index is None:
        return {}
    with open(os.path.join(here, SWEEP), "rb") as f:
        every = pickle.load(f)
    if index >= len(every):
        raise SystemExit(f"pystributed: there is no task {index} in a sweep of {len(every)} tasks")
    return every[index]


def cell(argv):
    """Run the cell, with the task's parameters among the --in values."""
    sys.path.insert(0, HERE)
    import cell_runner  # type: ignore[import-not-found]  # (beside this file in the image)

    index = prepare(os.environ)
    params = params_of(index)
    with open(os.path.join(HERE, TASK), encoding="utf-8") as f:
        entry = json.load(f)["entry"]
    read_inputs = cell_runner.read_inputs
    # The cell's own --in values (the notebook's) come on top of the parameters.
    cell_runner.read_inputs = lambda path: {**params, **read_inputs(path)}
    return cell_runner.main([os.path.join(HERE, "cell_runner.py"), entry, *argv])


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chunk(environ, index, here=HERE):
    """The tasks this container runs, one after another: its own; or, with
    PYSTRIBUTED_TASKS_PER_CONTAINER=K (a sweep's first job, never a retry), the K tasks of its number
    (its slot, or Slurm's array task id), K * number to K * number + K - 1."""
    per = environ.pop("PYSTRIBUTED_TASKS_PER_CONTAINER", "")
    if index is None or not per.isdigit() or int(per) <= 1:
        return [index]
    k = int(per)
    with open(os.path.join(here, SWEEP), "rb") as f:
        total = len(pickle.load(f))
    return list(range(index * k, min(total, index * k + k)))


def supervise():
    """Run the cell in a process of its own, for each task of the container; see the module's docstring."""
    base = os.environ.get("PYSTRIBUTED_RESULTS", "/results")
    folders = os.environ.get("PYSTRIBUTED_TASK_FOLDERS", "") == "1"
    indexes = chunk(os.environ, task_index(os.environ) if os.path.exists(os.path.join(HERE, SWEEP)) else None)
    if indexes[0] is not None:
        os.environ["PYSTRIBUTED_TASK"] = str(indexes[0])
    prepare(os.environ)  # the cell's process inherits these
    interrupted, current = [], []

    def forward(number, frame):
        interrupted.append(number)
        # (`docker stop` after `docker kill --signal INT`): its `finally:` blocks run on
        if len(interrupted) > 1 or not current:
            return
        try:
            current[-1].send_signal(number)
        except OSError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for at, index in enumerate(indexes):
        if at:  # the next task of the container: its index and folder
            os.environ["PYSTRIBUTED_TASK"] = str(index)
            if folders:
                os.environ["PYSTRIBUTED_RESULTS"] = os.path.join(base, str(index))
                os.makedirs(os.environ["PYSTRIBUTED_RESULTS"], exist_ok=True)
        if signal.SIGINT in interrupted:  # cancelled before it started (a cancel's SIGTERM may follow)
            save(index, 130, _now(), cancelled=True, error="cancelled before it started")
        elif interrupted:  # stopped before it started: for the engine to queue again, not a failure
            save(index, 128 + signal.SIGTERM, _now(), cancelled=False, error="stopped before it started",
                 unstarted=True)
        else:
            save(index, *run_cell(current), cancelled=bool(interrupted))
    return 0


def run_cell(current):
    """The cell's process, its output copied into output.log as it comes; (exit code, when it started)."""
    folder = os.environ.get("PYSTRIBUTED_RESULTS", "/results")
    log = os.open(os.path.join(folder, LOG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    started = _now()
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--cell"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    current.append(process)

    def pump(pipe, fd):
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            os.write(fd, chunk)
            os.write(log, chunk)

    pumps = [threading.Thread(target=pump, args=(process.stdout, 1)),
             threading.Thread(target=pump, args=(process.stderr, 2))]
    for thread in pumps:
        thread.start()
    code = process.wait()
    for thread in pumps:
        thread.join()
    os.close(log)
    return (code if code >= 0 else 128 - code), started  # killed by signal N: 128 + N, as a shell says


def save(index, code, started, *, cancelled, error="", unstarted=False):
    """The task's exit code and times, in its folder's state file (`Unstarted`: a stop came first)."""
    folder = os.environ.get("PYSTRIBUTED_RESULTS", "/results")
    name = os.environ.get("PYSTRIBUTED_RUN_ID", "") + ("" if index is None else f"-{index}")
    state = {"Cancelled": cancelled and code == 130, "Name": f"/pystributed-{name}", "Image": "",
             "State": {"Status": "exited", "ExitCode": code, "StartedAt": started, "FinishedAt": _now(),
                       "OOMKilled": False, "Error": error},
             "Mounts": [], "Node": os.environ.get("PYSTRIBUTED_NODE", ""),
             "Gpus": os.environ.get("DOCKER_RESOURCE_GPU", "")}
    if unstarted:
        state["Unstarted"] = True
    part = os.path.join(folder, f".{STATE}.{os.getpid()}")
    with open(part, "w", encoding="utf-8") as f:
        f.write(json.dumps(state) + "\n")
    given = os.environ.get("PYSTRIBUTED_STATE_NAME", "")
    os.replace(part, os.path.join(folder, given if given and os.sep not in given else STATE))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cell"]:
        sys.exit(cell(sys.argv[2:]))
    sys.exit(supervise())
