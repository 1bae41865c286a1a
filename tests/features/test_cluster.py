"""CLUSTER = "swarm": the image carries task_runner.py and where the cell is; the place gets the steps."""
import json
from pathlib import Path

from pystributed import config, pipeline, progress, task_runner
from pystributed.features import cluster
from pystributed.places import swarm


def test_the_task_runner_and_where_the_cell_is_go_into_the_image(tmp_path):
    files = cluster.runner_files(str(tmp_path / "user_code.py"))
    assert files["task_runner.py"] == Path(task_runner.__file__).read_bytes()
    assert json.loads(files[task_runner.TASK]) == {"entry": "user_code.py"}


def test_a_swarm_place_shows_its_queue_in_the_runs_steps():
    cfg = config.load(REMOTE_SERVER="manager", CLUSTER="swarm", DOCKER_REGISTRY="reg:5000")
    run = pipeline.Run(cfg, swarm.Swarm(cfg), progress.steps_for(True), code_path="user_code.py")
    feature = cluster.Cluster()
    feature.check(run)
    assert run.place.steps is run.steps
    feature.before_pack(run)
    assert set(run.runner_files) == {"task_runner.py", task_runner.TASK}
