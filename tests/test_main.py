"""runner.*: what main() and the run commands hand on to the pipeline and lifecycle."""
import subprocess
import sys

import pytest

import pystributed.main as runner
from pystributed import clean as cleaning
from pystributed import lifecycle, listing, magic, pipeline, results
from pystributed.features import cache, checks, data, values
from pystributed.results import RunResult

RUN_ID = "20261125-101502-3fa9c1"


@pytest.fixture
def ran(monkeypatch, tmp_path):
    """pipeline.run's arguments, each time; a config for the local engine."""
    (tmp_path / "config.py").write_text("REMOTE_SERVER = 'local'\n")
    seen = []

    def run(config, **kwargs):
        seen.append((config, kwargs))
        return RunResult(RUN_ID, exit_code=0)

    monkeypatch.setattr(pipeline, "run", run)
    return seen


def test_import_outside_ipython_works():
    out = subprocess.run([sys.executable, "-c", "import pystributed.main as r; print(callable(r.main))"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "True\n"


def test_main_runs_the_saved_cell_with_its_features(ran, tmp_path):
    (tmp_path / "user_code.py").write_text("x = 1\n")
    assert runner.main(out="x", quiet=True).run_id == RUN_ID
    (config, kwargs), = ran
    assert config.REMOTE_SERVER == "local"
    assert kwargs == {"code_path": "user_code.py", "source": None, "quiet": True, "detach": False,
                      "on_interrupt": None, "features": kwargs["features"],
                      "engine": lifecycle.on_cluster}  # (a cluster's run: a job of one task)
    kinds = [type(f) for f in kwargs["features"]]
    assert kinds[0] == checks.Checks and values.Exchange in kinds
    assert data.Data not in kinds and cache.Cache not in kinds  # no DATA, no --cache
    exchange, = [f for f in kwargs["features"] if isinstance(f, values.Exchange)]
    assert exchange.out == ["x"] and exchange.inputs == []


def test_the_options_the_cell_was_saved_with_apply_and_arguments_win(ran, tmp_path, monkeypatch):
    monkeypatch.setitem(magic._saved, str(tmp_path / "user_code.py"), (
        "y = 2\n", {"BASE_IMAGE": "python:3.12", "REMOTE_SERVER": "local", "detach": True, "out": "y",
                    "cache": True}))
    (tmp_path / "user_code.py").write_text("y = 2\n")
    runner.main(BASE_IMAGE="python:3.11", on_interrupt="detach")
    config, kwargs = ran[0]
    assert config.BASE_IMAGE == "python:3.11" and kwargs["source"] == "y = 2\n"
    assert kwargs["detach"] is True and kwargs["on_interrupt"] == "detach"
    assert [f.out for f in kwargs["features"] if isinstance(f, values.Exchange)] == [["y"]]
    assert any(isinstance(f, cache.Cache) for f in kwargs["features"])
    runner.main(out=[], cache=False)  # arguments win over the saved options
    assert [f.out for f in ran[1][1]["features"] if isinstance(f, values.Exchange)] == [[]]
    assert not any(isinstance(f, cache.Cache) for f in ran[1][1]["features"])


def test_submit_is_main_detached(ran):
    runner.submit(quiet=True)
    assert ran[0][1]["detach"] is True


def test_the_last_value_is_shown(ran, monkeypatch, capsys):
    def run(config, **kwargs):
        result = RunResult(RUN_ID)
        result.value = 42
        return result

    monkeypatch.setattr(pipeline, "run", run)
    assert runner.main().value == 42
    assert capsys.readouterr().out == "42\n"


def test_runs_reads_the_local_record(ran):
    results.save_record("results", RunResult(RUN_ID, status="succeeded"))
    assert [r.run_id for r in runner.runs()] == [RUN_ID]


def test_the_run_commands_take_the_config_and_overrides(ran, monkeypatch):
    seen = []
    for name in ("status", "wait", "cancel"):
        monkeypatch.setattr(lifecycle, name, lambda config, run_id, name=name: seen.append(
            (name, run_id, config.REMOTE_WORKDIR)))
    monkeypatch.setattr(lifecycle, "logs", lambda config, run_id,
                        follow: seen.append(("logs", run_id, follow)))
    monkeypatch.setattr(lifecycle, "fetch", lambda config, run_id,
                        quiet: seen.append(("fetch", run_id, quiet)))
    monkeypatch.setattr(listing, "list_runs", lambda config: seen.append(("list", config.REMOTE_WORKDIR)))
    runner.status(RUN_ID, REMOTE_WORKDIR="w1")
    runner.wait(RUN_ID, REMOTE_WORKDIR="w2")
    runner.cancel(RUN_ID, REMOTE_WORKDIR="w3")
    runner.logs(RUN_ID, follow=True)
    runner.fetch(RUN_ID, quiet=True)
    runner.list_runs(REMOTE_WORKDIR="w4")
    assert seen == [("status", RUN_ID, "w1"), ("wait", RUN_ID, "w2"), ("cancel", RUN_ID, "w3"),
                    ("logs", RUN_ID, True), ("fetch", RUN_ID, True), ("list", "w4")]


def test_clean_only_shows_unless_yes(ran, monkeypatch):
    seen = []
    monkeypatch.setattr(cleaning, "clean", lambda config, older_than, apply: seen.append((older_than, apply)))
    runner.clean()
    runner.clean(older_than="7d", yes=True)
    assert seen == [(None, False), (7 * 86400, True)]


def test_attach_brings_back_the_values_the_run_was_started_with(ran, monkeypatch, tmp_path):
    collected = []
    monkeypatch.setattr(lifecycle, "_attach", lambda config, run_id, quiet, on_interrupt: RunResult(run_id,
                                                                                                   local_path=tmp_path))
    monkeypatch.setattr(values.Exchange, "of_run", classmethod(lambda cls, result, namespace: cls(out=["z"])))
    monkeypatch.setattr(values.Exchange, "collect", lambda self,
                        result: collected.append((self.out, result.run_id)))
    runner.attach(RUN_ID)
    assert collected == [(["z"], RUN_ID)]
    monkeypatch.setattr(lifecycle, "_attach", lambda config, run_id, quiet, on_interrupt: RunResult(run_id))
    runner.attach(RUN_ID)  # nothing fetched: nothing to collect
    assert len(collected) == 1


def test_main_nodes_is_the_nodes_key_and_is_refused_off_slurm(ran, tmp_path):
    from pystributed.errors import ConfigError

    (tmp_path / "user_code.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="only with CLUSTER = \"slurm\""):
        runner.main(nodes=2)
    runner.main(nodes=2, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", CLUSTER="slurm")
    assert ran[0][0].NODES == 2
