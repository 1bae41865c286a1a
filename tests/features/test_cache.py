"""--cache: the key, the index in LOCAL_RESULTS_DIR/.cache, and which earlier run is reused."""
import json
import shutil
from pathlib import Path

from pystributed import cell_runner, config, pipeline, progress, results
from pystributed.features import cache, values

RUN_ID = "20261125-101502-3fa9c1"


def finished_run(cfg, tmp_path, *, saved=("a",), status="succeeded"):
    """A run of earlier, fetched, with its record and the values it sent back."""
    run = results.RunResult(RUN_ID, status=status, started="2026-11-25T10:15:02.000+00:00",
                            local_path=tmp_path / "results" / RUN_ID)
    (run.local_path / cell_runner.VALUES_DIR).mkdir(parents=True)
    cell_runner.save_values(str(run.local_path / cell_runner.VALUES_DIR), {"a": 1}, list(saved), None)
    results.save_record(cfg.LOCAL_RESULTS_DIR, run)
    return run


def test_cache_reuses_only_a_finished_run_with_the_values_asked_for(tmp_path, capsys):
    cfg = config.load(REMOTE_SERVER="local")
    key = cache.key(cfg, "digest")
    assert key != cache.key(config.load(REMOTE_SERVER="local", ENV={"A": "1"}), "digest")
    assert key != cache.key(cfg, "other digest")
    steps = progress.Steps()
    assert cache.reuse(cfg, key, None, steps) is None
    run = finished_run(cfg, tmp_path)
    cache.remember(cfg, key, run)
    namespace = {}
    reused = cache.reuse(cfg, key, values.Exchange(out="a", namespace=namespace), steps)
    assert reused.run_id == run.run_id and namespace == {"a": 1}
    assert "cached: reusing run 20261125-101502-3fa9c1 of 2026-11-25 10:15:02" in capsys.readouterr().out
    assert cache.reuse(cfg, key, values.Exchange(out="a,b"), steps) is None  # b was not sent back then
    shutil.rmtree(run.local_path)
    assert cache.reuse(cfg, key, None, steps) is None  # its folder is gone: run again
    index = Path(cfg.LOCAL_RESULTS_DIR) / cache.INDEX
    assert json.loads((index / f"{key}.json").read_text())["run_id"] == run.run_id


def test_a_run_that_did_not_succeed_is_not_reused(tmp_path):
    cfg = config.load(REMOTE_SERVER="local")
    key = cache.key(cfg, "digest")
    cache.remember(cfg, key, finished_run(cfg, tmp_path, status="failed"))
    assert cache.reuse(cfg, key, None, progress.Steps(quiet=True)) is None


def test_the_data_files_count_in_the_key(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"1")
    cfg = config.load(REMOTE_SERVER="local", DATA=["data"])
    key = cache.key(cfg, "digest")
    assert key == cache.key(cfg, "digest") and key != cache.key(config.load(REMOTE_SERVER="local"), "digest")
    (tmp_path / "data" / "a.bin").write_bytes(b"2")
    assert cache.key(cfg, "digest") != key
    assert cache.key(config.load(REMOTE_SERVER="local", REMOTE_DATA={"/srv/x": "x"}), "digest") != cache.key(
        config.load(REMOTE_SERVER="local"), "digest")


def test_the_feature_remembers_a_finished_run_and_reuses_it_after_the_pack(tmp_path, capsys):
    cfg = config.load(REMOTE_SERVER="local")
    run = pipeline.Run(cfg, None, progress.Steps(), digest="sha256:" + "0" * 64)
    feature = cache.Cache()
    assert feature.reuse(run) is None  # nothing yet: the cell runs
    run.result = finished_run(cfg, tmp_path)
    feature.finished(run)
    namespace = {}
    again = pipeline.Run(cfg, None, progress.Steps(), digest=run.digest)
    reused = cache.Cache(values.Exchange(out="a", namespace=namespace)).reuse(again)
    assert reused.run_id == RUN_ID and namespace == {"a": 1} and reused.values == {"a": 1}
    assert "cached: reusing run 20261125-101502-3fa9c1" in capsys.readouterr().out
    other = pipeline.Run(cfg, None, progress.Steps(), digest="sha256:" + "1" * 64)  # the code changed
    assert cache.Cache().reuse(other) is None
