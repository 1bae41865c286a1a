"""CLUSTER = "swarm" (places/swarm.py): the image carries task_runner.py, which the service runs
before the cell; the place shows in the run's display that a task waits for a GPU."""
import json
from pathlib import Path

from pystributed import context, task_runner
from pystributed.features import Feature


def runner_files(code_path):
    """task_runner.py, and what it needs to know: where the cell is in the image."""
    entry = context.entry_point(".", code_path)
    return {"task_runner.py": Path(task_runner.__file__).read_bytes(),
            task_runner.TASK: json.dumps({"entry": entry}).encode()}


class Cluster(Feature):
    def check(self, run):
        if run.place.queues:  # a swarm's, a Slurm cluster's: what it has to say (queued, placed)
            run.place.steps = run.steps

    def before_pack(self, run):
        run.runner_files.update(runner_files(run.code_path))
