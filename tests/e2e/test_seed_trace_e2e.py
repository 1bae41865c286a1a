"""The seed path, traced (scripts/seed_trace.py): `python -m pystributed run FILE` and runner.main()
after %%save_for_remote on the sandbox, the lines executed inside the installed package's functions."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pystributed

ROOT = Path(__file__).resolve().parents[2]
# Measured at 1010 lines in 26 files (commit 9c0e9f4): pipeline.py 139, the core helpers (dockerignore, config,
# results, util, places/server.py, places/ssh.py) most of the rest. (1005 before the option --nodes: its
# argument in cli.py's parser and magic.py's options, and its check in config.py, are on every run.)
# 1031 with features/cell_mount.py (issue #20): a first run checks for a note of an earlier image (none)
# and notes its own after the pull; the tag's two hashes (the lower layers', the cell layer's) in context.py.
# 1033: places/server.py's prepare asks BASE_IMAGE's id there with remote-build (2 lines on every run).
# 1034: config.py refuses TASKS_PER_CONTAINER off a cluster (its check is read on every run); 1035: push's
# check that a digest there is this tag's (pipeline.in_registry; on a first run one line more before it).
# 1037: the sweep command's --tasks-per-container in cli.py's parser (the parser is built on every run).
TODAY = 1037
# A plain run (no DATA, REMOTE_DATA, --gpus, CLUSTER, REQUIREMENTS, --cache) reaches none of these.
NOT_ON_A_PLAIN_RUN = ["places/swarm.py", "features/cluster.py", "features/cache.py", "features/requirements.py"]


@pytest.fixture(scope="module")
def trace(sandbox_env):
    """The script's --json, run once (two seed runs) with the sandbox's settings and no others."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYSTRIBUTED_")}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "seed_trace.py"), "--json"],
                         env={**env, **sandbox_env}, capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: over the limit, which a test below checks
    return json.loads(out.stdout)


def test_the_installed_package_is_traced(trace):
    assert Path(trace["package"]) == Path(pystributed.__file__).resolve().parent
    assert ROOT not in Path(trace["package"]).parents


def test_the_seed_path_does_not_grow(trace):
    assert trace["total"] <= TODAY, f"{trace['total']} lines: run scripts/seed_trace.py --functions"


def test_a_plain_run_runs_no_feature_it_does_not_use(trace):
    assert [name for name in NOT_ON_A_PLAIN_RUN if name in trace["files"]] == []
    # DATA's feature is not added: checks.py only asks it which paths DATA mounts (none).
    assert [name for name in trace["functions"] if name.startswith("features/data.py:")] == [
        "features/data.py:excluded"]
    # Whether `--gpus` is asked for is read in gpus.py; nothing else of it runs.
    assert [name for name in trace["functions"] if name.startswith("features/gpus.py:")] == [
        "features/gpus.py:requested"]


def test_a_plain_run_reaches_no_sweep_or_cluster_code(trace):
    sweeps = ["sweep.py", "cluster.py", "jobs.py", "engine.py", "job_view.py", "sweep_survey.py", "listing.py",
              "places/server_engine.py", "places/swarm_engine.py", "places/swarm_secrets.py"]
    assert [name for name in sweeps if name in trace["files"]] == []
