"""Sweeps: the parameters, what a sweep hands back, how it is shown (sweep.py)."""
import pytest

from pystributed import job_view, jobs, progress, sweep
from pystributed.errors import PystributedError


def test_parameters_from_the_command_line_are_literals_or_strings():
    assert sweep.parse_param("lr=0.1,1e-3") == ("lr", [0.1, 0.001])
    assert sweep.parse_param("name=adam, sgd ,'x,y'") == ("name", ["adam", "sgd", "'x", "y'"])
    assert sweep.parse_param("flag=True,None") == ("flag", [True, None])
    for bad in ("lr", "2x=1", "=1"):
        with pytest.raises(PystributedError, match="NAME=VALUE"):
            sweep.parse_param(bad)
    with pytest.raises(PystributedError, match="given twice"):
        sweep.grid_of(["lr=1", "lr=2"])


def test_every_combination_first_name_slowest_or_the_list_given():
    assert sweep.combinations(grid={"lr": [1, 2], "seed": [0, 1, 2]}) == [
        {"lr": 1, "seed": 0}, {"lr": 1, "seed": 1}, {"lr": 1, "seed": 2},
        {"lr": 2, "seed": 0}, {"lr": 2, "seed": 1}, {"lr": 2, "seed": 2}]
    assert sweep.combinations([{"a": 1}, {"a": 2, "b": 3}]) == [{"a": 1}, {"a": 2, "b": 3}]
    for params, grid, match in [([{"a": 1}], {"b": [1]}, "not both"), (None, {}, "needs parameters"),
                                (None, {"lr": 0.1}, "a list of values"), ([], None, "non-empty"),
                                ([{"not a name": 1}], None, "not a variable name")]:
        with pytest.raises(PystributedError, match=match):
            sweep.combinations(params, grid)


def result():
    tasks = [jobs.Task(0, {"lr": 0.1}, status=jobs.SUCCEEDED, node="n1", gpu="GPU-a", started=10.0,
                              ended=12.5, values={"loss": 1.5}),
             jobs.Task(1, {"lr": 0.01}, status=jobs.FAILED, attempts=2, error="ValueError: bad\nTraceback"),
             jobs.Task(2, {"lr": 0.001}, status=jobs.QUEUED, why="no suitable node")]
    return jobs.Job("sweep-20261125-101502-3fa9c1", tasks, out=["loss"], server="m", cluster="swarm")


def test_a_sweeps_values_statuses_and_errors_are_in_parameter_order():
    found = result()
    assert found.params == [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]
    assert found.statuses == ["succeeded", "failed", "queued"]
    assert found.values == {"loss": [1.5, None, None]}
    assert found.errors == [None, "ValueError: bad\nTraceback", None] and not found.ok
    assert found.counts() == {"queued": 1, "running": 0, "succeeded": 1, "failed": 1}


def test_a_sweep_shows_as_a_table_and_comes_back_from_its_record():
    found = result()
    lines = str(found.table()).splitlines()
    assert lines[0].split() == ["#", "PARAMETERS", "STATE", "NODE", "GPU", "DURATION", "LOG"]
    assert lines[1].split()[:6] == ["0", "lr=0.1", "succeeded", "n1", "GPU-a", "2.5s"]
    assert "failed (attempt 2): ValueError: bad" in lines[2] and "queued: no suitable node" in lines[3]
    assert str(found).startswith("sweep sweep-20261125-101502-3fa9c1: 3 tasks on the swarm cluster of m: "
                                 "1 queued")
    assert "<table" in found._repr_html_()
    again = jobs.Job.from_json(found.to_json())
    assert again.statuses == found.statuses and str(again.table()) == str(found.table())
    # values are loaded from the fetched folders, not the record
    assert again.values == {"loss": [None, None, None]}


def test_a_terminal_gets_a_line_when_a_task_changes(capsys):
    display = job_view.Display(progress.Steps())
    found = result()
    display.update(found)
    display.update(found)
    found.tasks[2].status, found.tasks[2].node = jobs.RUNNING, "n2"
    display.update(found)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["task 0 [lr=0.1] succeeded on n1 (GPU-a) in 2.5s",
                     "task 1 [lr=0.01] failed (attempt 2): ValueError: bad",
                     "task 2 [lr=0.001] queued: no suitable node",
                     "task 2 [lr=0.001] running on n2"]


def test_ids_of_sweeps_are_not_run_ids():
    assert jobs.check_sweep_id(jobs.new_sweep_id()).startswith("sweep-")
    with pytest.raises(PystributedError, match="not a sweep id"):
        jobs.check_sweep_id("20261125-101502-3fa9c1")


def test_collect_puts_each_out_name_in_the_namespace_in_parameter_order(tmp_path):
    job = jobs.Job("sweep-20261125-101502-3fa9c1", [jobs.Task(i, {"x": i}) for i in range(2)], out=["loss"])
    for task in job.tasks:
        folder = tmp_path / str(task.index) / ".pystributed"
        folder.mkdir(parents=True)
        task.local_path = str(tmp_path / str(task.index))
    namespace = {}
    sweep.collect(job, namespace)
    assert namespace == {"loss": [None, None]}  # (nothing pickled: no value came back)



class Heard:
    """A feature that notes which of a run's hooks were called."""

    def __init__(self):
        self.heard = []

    def after_fetch(self, run):
        self.heard.append("after_fetch")

    def finished(self, run):
        self.heard.append("finished")


def cluster_run(tmp_path, status, *, exit_code=None, log="", error=""):
    """A run on a cluster whose job's one task ended so (its folder here when it has a log); the run
    (pipeline.Run), its job, its feature."""
    from pystributed import config, pipeline, results

    cfg = config.load(environ={}, REMOTE_SERVER="me@login", CLUSTER="slurm", DOCKER_REGISTRY="reg:5000",
                      LOCAL_RESULTS_DIR=str(tmp_path / "results"))
    run_id = "20261125-101502-3fa9c1"
    task = jobs.Task(0, {}, status=status, exit_code=exit_code, error=error, fetched=bool(log))
    if log:
        folder = tmp_path / "results" / run_id
        folder.mkdir(parents=True)
        (folder / "output.log").write_text(log)
        task.local_path = str(folder)
    feature = Heard()
    run = pipeline.Run(cfg, None, progress.steps_for(True), result=results.RunResult(run_id, server="login"),
                       code_path="cell.py", features=[feature])
    return run, jobs.Job(run_id, [task], single=True), feature


def test_a_cluster_runs_task_becomes_its_record_and_its_values_are_taken(tmp_path):
    from pystributed import results

    run, job, feature = cluster_run(tmp_path, jobs.SUCCEEDED, exit_code=0, log="hi\n")
    result = sweep.as_run(run, job, ["output.log"], check=True)
    assert result.status == results.State.SUCCEEDED and result.exit_code == 0
    assert feature.heard == ["after_fetch", "finished"]  # (--out values: finished)
    assert result.files == ["output.log", "run.json"] and (result.local_path / "run.json").exists()
    assert results.load_record(run.config.LOCAL_RESULTS_DIR, result.run_id).status == results.State.SUCCEEDED


def test_a_cluster_runs_failure_raises_the_cells_error_or_says_the_step(tmp_path):
    from pystributed.errors import RemoteCellError, StepError

    run, job, feature = cluster_run(tmp_path / "a", jobs.FAILED, exit_code=1,
                                    log='Traceback (most recent call last):\n  File "/app/cell.py", line 1\n'
                                        "ValueError: bad\n")
    with pytest.raises(RemoteCellError, match="ValueError: bad") as caught:
        sweep.as_run(run, job, [], check=True)
    assert isinstance(caught.value, ValueError) and feature.heard == ["after_fetch"]
    run, job, _ = cluster_run(tmp_path / "b", jobs.FAILED, error="its node gpu2 was lost: down")
    with pytest.raises(StepError, match="its node gpu2 was lost") as step:
        sweep.as_run(run, job, [], check=True)
    assert step.value.step == "run"
    run, job, _ = cluster_run(tmp_path / "c", jobs.FAILED, exit_code=0,
                              error="its results could not be fetched: ssh: timeout\nIts results are in")
    with pytest.raises(StepError, match="could not be fetched") as step:
        sweep.as_run(run, job, [], check=True)
    assert step.value.step == "fetch" and "are in" in step.value.output


def test_a_runs_job_lists_no_figure_grid_at_its_end(tmp_path, capsys):
    """A run's figures showed in its output as they came; the grid of first figures is a sweep's."""
    folder = tmp_path / "run"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "001.png").write_bytes(b"\x89PNG")
    task = jobs.Task(0, {}, status=jobs.SUCCEEDED, local_path=str(folder), fetched=True)
    job_view.Display(progress.steps_for(False)).end(jobs.Job("20261125-101502-3fa9c1", [task], single=True))
    assert "figures" not in capsys.readouterr().out
    job_view.Display(progress.steps_for(False)).end(jobs.Job("sweep-20261125-101502-3fa9c1", [task]))
    assert "figures (the first of each task)" in capsys.readouterr().out
