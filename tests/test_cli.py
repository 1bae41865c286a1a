"""python -m pystributed: its commands, what each prints where, and its exit codes."""
import io
import json
import subprocess
import sys

import pytest

from pystributed import clean as cleaning
from pystributed import cli, config, jobs, lifecycle, listing, pipeline, results
from pystributed.errors import PystributedError, RemoteCellError, StepError

RUN_ID = "20261125-101502-3fa9c1"


@pytest.fixture
def configured(monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "gpu-box")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "reg:5000")


def test_exit_codes(configured, monkeypatch, capsys):
    def unknown(config, run_id):
        raise lifecycle.UnknownRun("there is no run")

    def unreachable(config, run_id):
        raise StepError("connect", "ssh failed", code=255)

    monkeypatch.setattr(lifecycle, "status", unknown)
    assert cli.main(["status", RUN_ID]) == cli.EXIT_UNKNOWN_RUN == 66
    assert capsys.readouterr().err == "error: there is no run\n"
    monkeypatch.setattr(lifecycle, "status", unreachable)
    assert cli.main(["status", RUN_ID]) == cli.EXIT_UNREACHABLE == 69
    assert capsys.readouterr().err == "error: connect failed: ssh failed\n"
    monkeypatch.setattr(lifecycle, "wait", lambda config,
                        run_id: lifecycle.RunState(run_id, "exited 3", exit_code=3))
    assert cli.main(["wait", RUN_ID]) == 3
    assert capsys.readouterr().err == f"{RUN_ID} exited 3\n"
    monkeypatch.setattr(lifecycle, "wait", lambda config,
                        run_id: lifecycle.RunState(run_id, "exited 300", exit_code=300))
    assert cli.main(["wait", RUN_ID]) == 255
    monkeypatch.setattr(lifecycle, "wait", lambda config, run_id: lifecycle.RunState(run_id, "no container"))
    assert cli.main(["wait", RUN_ID]) == cli.EXIT_ERROR == 1
    monkeypatch.setattr(listing, "list_runs", lambda config: listing.RunTable([], offline="gpu-box: down"))
    assert cli.main(["list"]) == 69
    assert "OFFLINE, from the local index (may be stale): gpu-box: down" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["cancel", "not-a-run"])
    assert exit_.value.code == cli.EXIT_USAGE == 2
    assert "argument RUN: 'not-a-run' is not a run id" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "command", "code"), [
    (StepError("run", "the connection to gpu-box dropped (ssh exit code 255)", code=255), "run", 1),
    (StepError("connect", "ssh failed", code=255), "submit", 1),  # run and submit keep 1 for any failed step
    (StepError("pull", "no such image"), "run", 1),
    (PystributedError("bad config"), "run", 1),
    (KeyboardInterrupt(), "run", 130),
])
def test_run_and_submit_exit_1_for_any_failed_step(configured, monkeypatch, capsys, error, command, code):
    def fail(config, **kwargs):
        raise error

    monkeypatch.setattr(pipeline, "run", fail)
    assert cli.main([command]) == code
    assert capsys.readouterr().err == ("" if code == 130 else f"error: {error}\n")


@pytest.mark.parametrize(("error", "unreachable"), [
    (StepError("status", "x", output="Cannot connect to the Docker daemon at unix:///var/run/docker.sock"),
     True),
    (StepError("status", "x", output="permission denied while trying to connect to the Docker daemon"), True),
    (StepError("logs", "x", code=255), True),
    (StepError("connect", "x"), True),
    (StepError("fetch", "x", code=2), False),
])
def test_a_server_that_cannot_be_reached_is_69(configured, monkeypatch, error, unreachable):
    def fail(config, run_id, **kwargs):
        raise error

    monkeypatch.setattr(lifecycle, "fetch", fail)
    assert cli.main(["fetch", RUN_ID]) == (69 if unreachable else 1)


def test_a_failed_cell_exits_with_its_own_code(configured, monkeypatch, capsys):
    def fail(config, **kwargs):
        raise RemoteCellError("ValueError: bad", result=results.RunResult(RUN_ID, exit_code=3))

    monkeypatch.setattr(pipeline, "run", fail)
    assert cli.main(["run"]) == 3 and capsys.readouterr().err == "error: ValueError: bad\n"


def test_run_prints_where_the_results_are(configured, monkeypatch, capsys, tmp_path):
    (tmp_path / "cell.py").write_text("print(1)\n")
    seen = {}

    def run(config, **kwargs):
        seen.update(kwargs)
        # pystributed's own hidden state is not counted: `ls` shows the other 2
        return results.RunResult(RUN_ID, local_path=tmp_path / "results" / RUN_ID,
                                 files=[".pystributed-state.json", "a", "b"])

    monkeypatch.setattr(pipeline, "run", run)
    assert cli.main(["run", "cell.py", "-q"]) == 0
    assert capsys.readouterr().out == f"{RUN_ID}: 2 file(s) in {tmp_path}/results/{RUN_ID}\n"
    assert seen["code_path"] == "cell.py" and seen["quiet"] is True
    assert [type(f).__name__ for f in seen["features"]][:2] == ["Checks", "Shm"]  # no DATA here
    # no --out, no --cache here
    assert not any(type(f).__name__ in ("Exchange", "Cache") for f in seen["features"])


def test_submit_prints_the_run_id_alone_on_stdout(configured, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(pipeline, "run", lambda config, **kw: seen.update(kw) or print("step lines") or
                        results.RunResult(RUN_ID))
    assert cli.main(["submit"]) == 0
    out = capsys.readouterr()
    assert out.out == f"{RUN_ID}\n" and "step lines" in out.err  # RUN=$(python -m pystributed submit)
    assert seen["detach"] is True and seen["code_path"] is None


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_file_that_is_not_there_is_named(tmp_path, capsys, command):
    (tmp_path / "config.py").write_text("REMOTE_SERVER = 'local'\n")
    assert cli.main([command, "nothere.py"]) == 1
    assert capsys.readouterr().err == ("error: nothere.py: no such file (FILE is the script to run; without "
                                       "it, the cell %%save_for_remote saved to USER_CODE_PATH)\n")


def test_the_run_id_commands(configured, monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(lifecycle, "logs", lambda config, run_id,
                        follow: calls.append(("logs", run_id, follow)))
    monkeypatch.setattr(lifecycle, "status", lambda config, run_id: lifecycle.RunState(run_id, "running"))
    monkeypatch.setattr(lifecycle, "cancel", lambda config, run_id: lifecycle.RunState(run_id, "cancelled"))
    monkeypatch.setattr(lifecycle, "fetch", lambda config, run_id, quiet: results.RunResult(
        run_id, local_path=tmp_path / run_id, files=["x", ".pystributed-state.json"]))
    assert cli.main(["logs", "-f", RUN_ID]) == 0 and calls == [("logs", RUN_ID, True)]
    assert cli.main(["status", RUN_ID]) == 0 and capsys.readouterr().out.startswith(f"{RUN_ID} "
                                                                                    "running\n  started   -")
    assert cli.main(["cancel", RUN_ID]) == 0 and capsys.readouterr().out == f"{RUN_ID} cancelled\n"
    assert cli.main(["fetch", "-q", RUN_ID]) == 0
    assert capsys.readouterr().out == f"{RUN_ID}: 1 file(s) in {tmp_path}/{RUN_ID}\n"


def test_list_as_json(configured, monkeypatch, capsys):
    monkeypatch.setattr(listing, "list_runs", lambda config: listing.RunTable([lifecycle.RunState(RUN_ID)]))
    assert cli.main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["offline"] == "" and data["runs"][0]["run_id"] == RUN_ID
            and data["runs"][0]["started"] is None)


class FakePlan:
    def __init__(self, empty=False):
        self.empty, self.done = empty, False

    def __str__(self):
        return "the plan"


@pytest.fixture
def plans(configured, monkeypatch):
    """clean, removing only where `confirm` says yes."""
    seen = []

    def clean(config, *, older_than, confirm):
        plan = FakePlan()
        seen.append(older_than)
        plan.done = confirm(plan)
        return plan

    monkeypatch.setattr(cleaning, "clean", clean)
    return seen


def test_clean_removes_with_yes(plans, capsys):
    assert cli.main(["clean", "--older-than", "7d", "--yes"]) == 0
    assert capsys.readouterr().out == "the plan\nRemoved.\n" and plans == [7 * 86400]


def test_clean_only_shows_with_dry_run_or_without_a_terminal(plans, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal
    assert cli.main(["clean", "--dry-run"]) == 0
    assert capsys.readouterr().out == "the plan\nNothing removed.\n"
    assert cli.main(["clean"]) == 0
    assert capsys.readouterr().out == "the plan\nNothing removed: run again with --yes to remove these.\n"
    assert plans == [None, None]


@pytest.mark.parametrize(("answer", "removed"),
                         [("y\n", True), ("yes\n", True), ("\n", False), ("n\n", False)])
def test_clean_asks_in_a_terminal(plans, capsys, monkeypatch, answer, removed):
    class Terminal:
        def isatty(self):
            return True

        def readline(self):
            return answer

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert cli.main(["clean"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the plan\nRemove these? [y/N] ")
    assert out.endswith("Removed.\n" if removed else "Nothing removed: run again with --yes to "
                                                     "remove these.\n")


def test_clean_with_nothing_to_remove_shows_the_plan(configured, monkeypatch, capsys):
    monkeypatch.setattr(cleaning, "clean", lambda config, **kwargs: FakePlan(empty=True))
    assert cli.main(["clean"]) == 0 and capsys.readouterr().out == "the plan\n"


def test_clean_refuses_a_bad_age(configured, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["clean", "--older-than", "7 days"])
    assert exit_.value.code == 2 and "'7 days' is not an age" in capsys.readouterr().err


def test_help():
    out = subprocess.run([sys.executable, "-m", "pystributed", "run", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert ("usage: python -m pystributed run [-h] [-q] [--nodes N] [FILE]" in out and "69   the "
                                                                                       "server or its "
                                                                                       "Docker" in out)


def test_a_config_error_exits_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pystributed", "run"], check=False, capture_output=True,
                          text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: REMOTE_SERVER is not set in config.py")


def test_sweep_tasks_per_container_sets_the_key_and_is_refused_off_a_cluster(configured, monkeypatch, capsys,
                                                                             tmp_path):
    from pystributed import sweep

    (tmp_path / "cell.py").write_text("print(x)\n")
    seen = []
    monkeypatch.setattr(sweep, "run", lambda config,
                        **kw: seen.append(config.TASKS_PER_CONTAINER) or jobs.Job("s", []))
    args = ["sweep", "cell.py", "--param", "x=1,2", "--tasks-per-container", "2", "--detach"]
    assert cli.main(args) == 1
    assert "TASKS_PER_CONTAINER" in capsys.readouterr().err and seen == []
    monkeypatch.setenv("PYSTRIBUTED_CLUSTER", "swarm")
    assert cli.main(args) == 0 and seen == [2]


def test_run_nodes_sets_nodes_and_is_refused_off_slurm(configured, monkeypatch, capsys, tmp_path):
    (tmp_path / "cell.py").write_text("print(1)\n")
    seen = []
    monkeypatch.setattr(pipeline, "run", lambda config,
                        **kw: seen.append(config.NODES) or results.RunResult(RUN_ID))
    assert cli.main(["run", "cell.py", "--nodes", "2"]) == 1
    assert "NODES = 2" in capsys.readouterr().err and seen == []
    monkeypatch.setenv("PYSTRIBUTED_CLUSTER", "slurm")
    assert cli.main(["run", "cell.py", "--nodes", "2", "-q"]) == 0 and seen == [2]


def test_status_of_a_large_sweep_is_a_screen_with_all_every_task(configured, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PYSTRIBUTED_LOCAL_RESULTS_DIR", str(tmp_path))
    sweep_id = "sweep-20261125-101502-3fa9c1"
    tasks = [jobs.Task(i, {"x": i}, status=jobs.SUCCEEDED, started=1.0, ended=2.0 + i) for i in range(200)]
    jobs.save(config.load(), jobs.Job(sweep_id, tasks, server="gpu-box", status=jobs.SUCCEEDED))
    assert cli.main(["status", sweep_id]) == 0  # (every task ended: the record alone)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and [line.split()[0] for line in lines[2:5]] == ["199", "198", "197"]
    assert cli.main(["status", sweep_id, "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 202 and lines[0].endswith("200 succeeded, 0 failed") and lines[-1].startswith("199 ")
