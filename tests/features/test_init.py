"""Which features a run gets (features.for_run), and the order their hooks are called in."""
from pathlib import Path

import pytest

from pystributed import config, features, pipeline, progress
from pystributed.features import base, cache, cell_mount, checks, data, requirements, shm, values


def kinds(found):
    return [type(feature) for feature in found]


def test_every_run_checks_its_cell():
    assert kinds(features.for_run(config.load(environ={}, REMOTE_SERVER="local"))) == [
        checks.Checks, shm.Shm, cell_mount.CellMount, base.BaseImage]


@pytest.mark.parametrize("setting", [{"DATA": ["data/"]}, {"REMOTE_DATA": {"/srv/imagenet": "imagenet"}}])
def test_a_run_with_data_checks_it_first(setting):
    assert kinds(features.for_run(config.load(environ={}, REMOTE_SERVER="local", **setting))) == [
        data.Data, checks.Checks, shm.Shm, cell_mount.CellMount, base.BaseImage]


def test_requirements_auto_exchange_and_cache_come_in_that_order():
    cfg = config.load(environ={}, REMOTE_SERVER="local", REQUIREMENTS="auto")
    exchange = values.Exchange(out="a")
    found = features.for_run(cfg, exchange=exchange, cache=True)
    assert kinds(found) == [checks.Checks, shm.Shm, cell_mount.CellMount, requirements.Auto, values.Exchange,
                            cache.Cache, base.BaseImage]
    # The cache remembers a run only after the exchange loaded its values, and reuses with that exchange.
    assert found[4] is exchange and found[5].exchange is exchange and found[5].base is found[6]
    assert kinds(features.for_run(config.load(environ={}, REMOTE_SERVER="local", REQUIREMENTS="r.txt"),
                                  cache=True)) == [checks.Checks, shm.Shm, cell_mount.CellMount, cache.Cache,
                                                   base.BaseImage]


def test_a_feature_without_a_hook_does_nothing_there():
    run = pipeline.Run(config.load(environ={}, REMOTE_SERVER="local"), None, progress.Steps(quiet=True))
    feature = features.Feature()
    for hook in ("check", "before_pack", "before_build", "after_fetch", "finished"):
        assert getattr(feature, hook)(run) is None
    assert feature.reuse(run) is None and feature.mounts(run) == []


def test_data_is_left_out_before_the_checks_measure_the_context(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"x" * 3_000_000)
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data/"], CONTEXT_WARN_MB=2)
    run = pipeline.Run(cfg, None, progress.Steps(quiet=True), source="open('data/big.bin')\n",
                       features=features.for_run(cfg))
    run.hooks("check")
    assert run.excludes == ["data"] and capsys.readouterr().err == ""
    run = pipeline.Run(config.load(environ={}, REMOTE_SERVER="local", CONTEXT_WARN_MB=2), None,
                       progress.Steps(quiet=True), source="open('data/big.bin')\n")
    run.features = features.for_run(run.config)
    run.hooks("check")  # without DATA, the same file is in the image
    assert capsys.readouterr().err.startswith("warning: the build context is 3.0 MB (over "
                                              "CONTEXT_WARN_MB = 2)")


def test_pipeline_imports_no_feature():
    """A feature is removed by deleting its module and its line in features.for_run."""
    source = Path(pipeline.__file__).read_text(encoding="utf-8")
    assert "features" not in "".join(line for line in source.splitlines() if line.startswith(("import",
                                                                                              "from")))
