"""The image side (cell_runner.py, run here by this Python as the image would) and the notebook
side (variables.py) of --in / --out and the last expression; the --cache index."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pystributed import cache, cell_runner, config, progress, record, results, util, variables
from pystributed.errors import PystributedError


def run_in_image(tmp_path, script, *, out=(), inputs=None):
    """Lay out /pystributed and /app as the image has them, under tmp_path, and run the cell."""
    runner_dir, app, results_dir = tmp_path / "pystributed", tmp_path / "app", tmp_path / "results"
    for folder in (runner_dir, app, results_dir):
        folder.mkdir(exist_ok=True)
    shutil.copy(cell_runner.__file__, runner_dir / "cell_runner.py")
    exchange = variables.Exchange(out=list(out), inputs=list(inputs or {}), namespace=inputs)
    for name, data in exchange.runner_files().items():
        (runner_dir / name).write_bytes(data)
    (app / "user_code.py").write_text(script)
    proc = subprocess.run([sys.executable, str(runner_dir / "cell_runner.py"), "user_code.py"], cwd=app,
                          env={"PYSTRIBUTED_RESULTS": str(results_dir), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)
    return proc, results.RunResult("20261125-101502-3fa9c1", local_path=results_dir), exchange


class Box:
    def __init__(self, v):
        self.v = v


Box.__module__, Box.__qualname__ = "__main__", "Box"


def test_inputs_in_outputs_and_the_last_value_back(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "helper.py").write_text("TWO = 2\n")  # the notebook folder's modules import
    script = (f"{cell_runner.HEAD}# In[1]\nclass Box:\n    def __init__(self, v=x):\n        self.v = v\n\n"
              f"{cell_runner.MARKER}import helper\nbox = Box(x * helper.TWO)\nprint(__name__, type(box).__module__)\n"
              "box.v + Box().v - given.v\n")
    sys.modules["__main__"].Box = Box  # as the notebook has it: `given` pickles as __main__.Box
    try:
        proc, result, exchange = run_in_image(tmp_path, script, out=["box"], inputs={"x": 21, "given": Box(21)})
    finally:
        del sys.modules["__main__"].Box
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "__main__ __main__\n"
    namespace = {"x": 21}
    exchange.namespace = namespace
    sys.modules["__main__"].Box = Box
    try:
        exchange.collect(result)
    finally:
        del sys.modules["__main__"].Box
    assert namespace["box"].v == 42 and result.values["box"].v == 42 and result.value == 42


def test_a_failing_cell_shows_its_own_lines_not_the_wrapper(tmp_path):
    script = f"{cell_runner.HEAD}def f():\n    raise ValueError('no')\n\n{cell_runner.MARKER}x = 1\nf()\n"
    proc, _, _ = run_in_image(tmp_path, script)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback (most recent call last):\n")
    assert 'user_code.py", line 2, in <module>\n    f()\n' in proc.stderr
    assert 'File "<earlier cells>", line 3, in f\n    raise ValueError(\'no\')' in proc.stderr
    assert "cell_runner" not in proc.stderr and proc.stderr.rstrip().endswith("ValueError: no")


def test_out_problems_are_named_and_the_rest_comes_back(tmp_path):
    script = "import threading\nlock = threading.Lock()\nfine = [1]\nfine;\n"
    proc, result, exchange = run_in_image(tmp_path, script, out=["lock", "fine", "never"])
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(PystributedError) as excinfo:
        exchange.collect(result)
    assert str(excinfo.value) == (
        "--out: lock could not be pickled (TypeError: cannot pickle '_thread.lock' object); never was never "
        "assigned (run 20261125-101502-3fa9c1; fine came back)")
    assert result.values == {"fine": [1]} and result.value is None  # `;` hides the value, as in Jupyter


def test_an_unpicklable_last_value_is_shown_as_the_server_showed_it(tmp_path):
    proc, result, exchange = run_in_image(tmp_path, "import threading\nthreading.Lock()\n")
    assert proc.returncode == 0, proc.stderr
    exchange.collect(result)
    assert repr(result.value).startswith("<unlocked _thread.lock object")


def test_sys_exit_keeps_its_code_and_the_out_variables_are_missing(tmp_path):
    proc, result, exchange = run_in_image(tmp_path, "import sys\nx = 1\nsys.exit(3)\n", out=["x"])
    assert proc.returncode == 3
    with pytest.raises(PystributedError, match="x was not saved"):
        exchange.collect(result)


@pytest.mark.parametrize("names", ["a,1b", "class", "a b"])
def test_bad_names_are_refused(names):
    with pytest.raises(PystributedError, match="not a variable name"):
        variables.names(names, "--out")


def test_names_split_on_commas_once_each():
    assert variables.names(" a, b,a ", "--in") == ["a", "b"]


def test_an_input_that_is_missing_or_cannot_be_pickled_is_refused():
    with pytest.raises(PystributedError, match="--in x: there is no variable x in the notebook; nothing was built"):
        variables.Exchange(inputs="x", namespace={}).runner_files()
    with pytest.raises(PystributedError, match=r"--in f could not be pickled \(.*lambda"):
        variables.Exchange(inputs="f", namespace={"f": lambda: 1}).runner_files()


def test_a_different_python_in_the_image_is_refused_before_building(monkeypatch):
    asked = []
    monkeypatch.setattr(util, "output", lambda cmd: asked.append(cmd) or "sha256:abc\n")
    monkeypatch.setattr(util, "run", lambda cmd, **kw: asked.append(cmd) or "3.8\n")
    monkeypatch.setattr(variables, "_pythons", {})
    cfg = config.load(REMOTE_SERVER="local", BASE_IMAGE="python:3.8-slim")
    exchange = variables.Exchange(out="x")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(PystributedError) as excinfo:
        exchange.check_python(cfg, on_server=False)
    assert str(excinfo.value) == (
        f"--in/--out send pickles between this kernel (Python {here}) and the image, whose BASE_IMAGE "
        f"python:3.8-slim has Python 3.8: pickles do not load across Python versions. Set BASE_IMAGE = "
        f"'python:{here}-slim' (or an image with Python {here}), or use a kernel with Python 3.8.")
    assert asked[1] == ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", "python:3.8-slim",
                        "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    with pytest.raises(PystributedError):
        exchange.check_python(cfg, on_server=False)
    assert len([c for c in asked if c[:2] == ["docker", "run"]]) == 1  # asked once per image
    variables.Exchange().check_python(cfg, on_server=False)  # nothing pickled: any Python will do


def test_a_base_image_that_is_not_there_is_named_as_such(monkeypatch):
    hints = []
    monkeypatch.setattr(util, "output", lambda cmd: "")  # docker image inspect: not on this engine
    monkeypatch.setattr(util, "run", lambda cmd, **kw: hints.append(kw["hint"]) or "3.11\n")
    variables.image_python(config.load(REMOTE_SERVER="local", BASE_IMAGE="python:3.9-slim"), on_server=False)
    assert hints == [("BASE_IMAGE (python:3.9-slim) is not here and could not be pulled: check its name, or "
                      "`docker pull python:3.9-slim` (after `docker login` if it needs one).")]


def test_cache_reuses_only_a_finished_run_with_the_values_asked_for(tmp_path, capsys):
    cfg = config.load(REMOTE_SERVER="local")
    key = cache.key(cfg, "digest")
    assert key != cache.key(config.load(REMOTE_SERVER="local", ENV={"A": "1"}), "digest")
    assert key != cache.key(cfg, "other digest")
    steps = progress.Steps()
    assert cache.reuse(cfg, key, None, steps) is None
    run = results.RunResult("20261125-101502-3fa9c1", status="succeeded", started="2026-11-25T10:15:02.000+00:00",
                            local_path=tmp_path / "results" / "20261125-101502-3fa9c1")
    (run.local_path / cell_runner.VALUES_DIR).mkdir(parents=True)
    cell_runner.save_values(str(run.local_path / cell_runner.VALUES_DIR), {"a": 1}, ["a"], None)
    record.save(cfg.LOCAL_RESULTS_DIR, run)
    cache.remember(cfg, key, run)
    namespace = {}
    reused = cache.reuse(cfg, key, variables.Exchange(out="a", namespace=namespace), steps)
    assert reused.run_id == run.run_id and namespace == {"a": 1}
    assert "cached: reusing run 20261125-101502-3fa9c1 of 2026-11-25 10:15:02" in capsys.readouterr().out
    assert cache.reuse(cfg, key, variables.Exchange(out="a,b"), steps) is None  # b was not sent back then
    shutil.rmtree(run.local_path)
    assert cache.reuse(cfg, key, None, steps) is None  # its folder is gone: run again
    assert json.loads((Path(cfg.LOCAL_RESULTS_DIR) / cache.INDEX / f"{key}.json").read_text())["run_id"] == run.run_id
