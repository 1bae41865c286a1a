"""The image side (cell_runner.py, run here by this Python as the image would) and the notebook
side (features/values.py) of --in / --out and the last expression."""
import json
import pickle
import shutil
import subprocess
import sys

import pytest

from pystributed import cell_runner, config, docker, pipeline, progress, results
from pystributed.errors import PystributedError, StepError
from pystributed.features import values
from pystributed.places import ssh


def run_in_image(tmp_path, script, *, out=(), inputs=None):
    """Lay out /pystributed and /app as the image has them, under tmp_path, and run the cell."""
    runner_dir, app, results_dir = tmp_path / "pystributed", tmp_path / "app", tmp_path / "results"
    for folder in (runner_dir, app, results_dir):
        folder.mkdir(exist_ok=True)
    shutil.copy(cell_runner.__file__, runner_dir / "cell_runner.py")
    exchange = values.Exchange(out=list(out), inputs=list(inputs or {}), namespace=inputs)
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
              f"{cell_runner.MARKER}import helper\nbox = Box(x * helper.TWO)\nprint(__name__, "
              "type(box).__module__)\nbox.v + Box().v - given.v\n")
    sys.modules["__main__"].Box = Box  # as the notebook has it: `given` pickles as __main__.Box
    try:
        proc, result, exchange = run_in_image(tmp_path, script, out=["box"],
                                              inputs={"x": 21, "given": Box(21)})
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
        values.names(names, "--out")


def test_names_split_on_commas_once_each():
    assert values.names(" a, b,a ", "--in") == ["a", "b"]


def test_an_input_that_is_missing_or_cannot_be_pickled_is_refused():
    with pytest.raises(PystributedError, match="--in x: there is no variable x in the notebook; "
                                               "nothing was built"):
        values.Exchange(inputs="x", namespace={}).runner_files()
    with pytest.raises(PystributedError, match=r"--in f could not be pickled \(.*lambda"):
        values.Exchange(inputs="f", namespace={"f": lambda: 1}).runner_files()


def test_the_names_to_send_back_and_the_inputs_go_next_to_the_runner_before_the_pack():
    run = pipeline.Run(config.load(environ={}, REMOTE_SERVER="local"), None, progress.Steps(quiet=True))
    values.Exchange(inputs="k", out="a,b", namespace={"k": [1, 2]}).before_pack(run)
    assert set(run.runner_files) == {"settings.json", "inputs.pkl"}
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert json.loads(run.runner_files["settings.json"]) == {"out": ["a", "b"], "python": here, "modules": {}}
    assert pickle.loads(run.runner_files["inputs.pkl"]) == {"k": pickle.dumps([1, 2], cell_runner.PROTOCOL)}
    run.runner_files = {}
    values.Exchange().before_pack(run)  # no --in: no pickles in the image
    assert set(run.runner_files) == {"settings.json"}
    assert json.loads(run.runner_files["settings.json"]) == {"out": [], "python": here, "modules": {}}


def test_a_fetched_run_tells_which_names_it_was_to_send_back(tmp_path):
    result = results.RunResult("20261125-101502-3fa9c1", local_path=tmp_path / "r")
    cell_runner.save_values(str(tmp_path / "r" / cell_runner.VALUES_DIR), {"a": 1}, ["a", "b"], None)
    namespace = {}
    exchange = values.Exchange.of_run(result, namespace=namespace)
    assert exchange.out == ["a", "b"] and exchange.namespace is namespace
    assert values.Exchange.of_run(results.RunResult("x", local_path=tmp_path / "none")).out == []


def test_finished_loads_the_values_into_the_notebook(tmp_path):
    result = results.RunResult("20261125-101502-3fa9c1", local_path=tmp_path / "r")
    cell_runner.save_values(str(tmp_path / "r" / cell_runner.VALUES_DIR), {"a": 1}, ["a"], 7)
    namespace = {}
    run = pipeline.Run(config.load(environ={}, REMOTE_SERVER="local"), None, progress.Steps(quiet=True),
                       result=result)
    values.Exchange(out="a", namespace=namespace).finished(run)
    assert namespace == {"a": 1} and result.values == {"a": 1} and result.value == 7


INSPECT = ["docker", "image", "inspect", "--format", "{{.Id}}"]
PYTHON = ["--rm", "--network", "none", "--entrypoint", "sh"]
VERSION = ["-c", 'exec "$(command -v python3 || command -v python)" "$@"', "sh",  # python3, else python
           "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]


def test_a_different_python_in_the_image_is_warned_about_before_building(programs, monkeypatch, capsys):
    monkeypatch.setattr(values, "_pythons", {})
    monkeypatch.setattr(values, "here_python", lambda: "3.12")
    cfg = config.load(environ={}, REMOTE_SERVER="local", BASE_IMAGE="python:3.11-slim")
    exchange = values.Exchange(out="x")
    programs.expect(*INSPECT, "python:3.11-slim", out="sha256:abc\n")
    programs.expect("docker", "run", *PYTHON, "python:3.11-slim", *VERSION, out="3.11\n")
    exchange.check_python(cfg, docker.here, on_server=False)  # not refused
    assert capsys.readouterr().err == (
        "warning: --in/--out: this kernel runs Python 3.12 and BASE_IMAGE python:3.11-slim Python 3.11. "
        "Plain values (numbers, strings, lists, dicts, NumPy arrays, tensors) cross; an object whose module "
        "differs between the two may not load, and is then named. The same Python on both sides avoids it "
        "(BASE_IMAGE = 'python:3.12-slim', or a kernel with Python 3.11).\n")
    programs.expect(*INSPECT, "python:3.11-slim", out="sha256:abc\n")  # asked once per image: no docker run
    exchange.check_python(cfg, docker.here, on_server=False)
    assert "warning: --in/--out: this kernel runs Python 3.12" in capsys.readouterr().err
    # nothing pickled: nothing asked
    values.Exchange().before_build(pipeline.Run(cfg, None, progress.Steps(quiet=True)))


def test_a_base_image_that_is_not_there_is_named_as_such(programs, monkeypatch):
    monkeypatch.setattr(values, "_pythons", {})
    cfg = config.load(environ={}, REMOTE_SERVER="local", BASE_IMAGE="python:3.9-slim")
    programs.expect(*INSPECT, "python:3.9-slim", code=1)  # not on this engine
    programs.expect("docker", "run", *PYTHON, "python:3.9-slim", *VERSION, code=125,
                    stderr="Unable to find image 'python:3.9-slim' locally\n")
    with pytest.raises(StepError) as excinfo:
        values.image_python(cfg, docker.here, on_server=False)
    assert excinfo.value.step == "build"
    assert excinfo.value.hint == ("BASE_IMAGE (python:3.9-slim) is not here and could not be pulled: check "
                                  "its name, or `docker pull python:3.9-slim` (after `docker login` if "
                                  "it needs one).")


def test_an_image_pulled_to_ask_its_python_is_remembered_by_its_id(programs, monkeypatch):
    monkeypatch.setattr(values, "_pythons", {})
    cfg = config.load(environ={}, REMOTE_SERVER="local", BASE_IMAGE="python:3.9-slim")
    programs.expect(*INSPECT, "python:3.9-slim", code=1)  # not here yet: `docker run` pulls it
    programs.expect("docker", "run", *PYTHON, "python:3.9-slim", *VERSION, out="Unable to find image\n3.9\n")
    programs.expect(*INSPECT, "python:3.9-slim", out="sha256:def\n")
    assert values.image_python(cfg, docker.here, on_server=False) == "3.9"
    programs.expect(*INSPECT, "python:3.9-slim", out="sha256:def\n")
    assert values.image_python(cfg, docker.here, on_server=False) == "3.9"


@pytest.mark.parametrize("transport", ["registry", "remote-build"])
def test_the_python_is_asked_of_the_engine_that_builds(programs, monkeypatch, transport):
    monkeypatch.setattr(values, "_pythons", {})
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="registry.example:5000",
                      TRANSPORT=transport, BASE_IMAGE="python:3.9-slim")
    run = pipeline.Run(cfg, ssh.Ssh(cfg), progress.Steps(quiet=True))
    on_server = ("server", "docker_command") if transport == "remote-build" else ("docker",)
    programs.expect(*on_server, *INSPECT[1:], "python:3.9-slim", code=1)
    programs.expect(*on_server, "run", *PYTHON, "python:3.9-slim", *VERSION, code=125)
    with pytest.raises(StepError) as excinfo:
        values.Exchange(inputs="x", namespace={"x": 1}).before_build(run)
    where = "on the server" if transport == "remote-build" else "here"
    assert excinfo.value.hint.startswith(f"BASE_IMAGE (python:3.9-slim) is not {where} and "
                                         "could not be pulled")
    programs.expect(*on_server, *INSPECT[1:], "python:3.9-slim", out="sha256:abc\n")
    programs.expect(*on_server, "run", *PYTHON, "python:3.9-slim", *VERSION, out=f"{here}\n")
    values.Exchange(out="y").before_build(run)
