"""--in/--out between a kernel and an image whose Pythons differ (3.12 and 3.11): plain values cross
(pickle protocol 5), and a value that cannot be loaded is named with the module it needs and the
two sides' Pythons and versions. The other Python is faked: this machine has one."""
import json
import pickle
import shutil
import subprocess
import sys
import types

import pytest

from pystributed import cell_runner, results
from pystributed.errors import PystributedError
from pystributed.features import values

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def lib(monkeypatch):
    """A package `labkit` 2.0 with a class, importable here until the test takes it away."""
    module = types.ModuleType("labkit")
    module.__version__ = "2.0"

    class Thing:
        def __init__(self, n):
            self.n = n

    Thing.__module__, Thing.__qualname__ = "labkit", "Thing"
    module.Thing = Thing
    monkeypatch.setitem(sys.modules, "labkit", module)
    return module


def test_protocol_5_is_what_both_sides_write():
    assert cell_runner.PROTOCOL == 5  # read by every Python 3.8+
    exchange = values.Exchange(inputs="x", namespace={"x": {"a": [1, 2.5, "s", b"b", (None, True)]}})
    inputs = pickle.loads(exchange.runner_files()["inputs.pkl"])
    assert inputs["x"][:2] == b"\x80\x05"


@pytest.mark.parametrize("protocol", range(6))
def test_the_modules_a_pickle_needs_are_read_without_loading_it(lib, protocol):
    import fractions

    data = pickle.dumps([lib.Thing(1), fractions.Fraction(1, 3), lib.Thing(2), {"k": fractions.Fraction(2)}],
                        protocol)
    assert cell_runner.modules_of(data) == ["labkit", "fractions"]
    assert cell_runner.versions([data]) == {"labkit": "2.0"}


def collect(tmp_path, pickles, report):
    folder = tmp_path / "r" / cell_runner.VALUES_DIR
    folder.mkdir(parents=True)
    (folder / "values.pkl").write_bytes(pickle.dumps(pickles, cell_runner.PROTOCOL))
    (folder / "report.json").write_text(json.dumps(report))
    namespace = {}
    result = results.RunResult("20261125-101502-3fa9c1", local_path=tmp_path / "r")
    return values.Exchange(out=list(report["out"]), namespace=namespace), result, namespace


def test_plain_values_from_an_image_on_another_python_come_back(tmp_path):
    plain = {"n": 1, "f": 0.5, "s": "x", "l": [1, [2]], "d": {"a": (1, 2)}, "b": b"\x00", "set": {1}}
    exchange, result, namespace = collect(tmp_path, {"v": pickle.dumps(plain, 5)},
                                          {"python": "3.12", "out": {"v": "ok"}, "value": None,
                                           "modules": {}})
    exchange.collect(result)
    assert namespace == {"v": plain}


def test_a_value_that_cannot_be_loaded_names_its_module_and_both_sides(tmp_path, lib, monkeypatch):
    data = pickle.dumps(lib.Thing(3), 5)
    monkeypatch.delitem(sys.modules, "labkit")  # pickled in the image, not installed here
    exchange, result, namespace = collect(
        tmp_path, {"t": data, "ok": pickle.dumps(7, 5)},
        {"python": "3.12", "out": {"t": "ok", "ok": "ok"}, "value": None, "modules": {"labkit": "2.0"}})
    with pytest.raises(PystributedError) as excinfo:
        exchange.collect(result)
    assert str(excinfo.value) == (
        "--out: t could not be unpickled here (ModuleNotFoundError: No module named 'labkit'; it needs "
        f"module labkit; pickled in the image by Python 3.12 with labkit 2.0, loaded here by Python {HERE} "
        "with labkit not installed): install what it needs here, in the image's version (run "
        "20261125-101502-3fa9c1; ok came back)")
    assert namespace == {"ok": 7}


def test_a_class_missing_from_another_version_of_its_module_is_named(tmp_path, lib):
    data = pickle.dumps(lib.Thing(3), 5)
    del lib.Thing  # labkit here is a version without it
    lib.__version__ = "1.0"
    exchange, result, _ = collect(tmp_path, {"t": data},
                                  {"python": "3.12", "out": {"t": "ok"}, "value": None,
                                   "modules": {"labkit": "2.0"}})
    with pytest.raises(PystributedError, match=r"it needs module labkit; pickled in the image by Python "
                                               rf"3\.12 with labkit 2\.0, loaded here by Python {HERE} "
                                               r"with labkit 1\.0\)"):
        exchange.collect(result)


def test_the_image_names_an_input_it_cannot_load_with_both_sides(tmp_path, lib):
    """cell_runner.py run by this Python as the image's would, without the module the notebook has."""
    runner_dir, app = tmp_path / "pystributed", tmp_path / "app"
    runner_dir.mkdir()
    app.mkdir()
    shutil.copy(cell_runner.__file__, runner_dir / "cell_runner.py")
    exchange = values.Exchange(inputs="thing", namespace={"thing": lib.Thing(5)})
    for name, data in exchange.runner_files().items():
        (runner_dir / name).write_bytes(data)
    (app / "user_code.py").write_text("print(thing.n)\n")
    proc = subprocess.run([sys.executable, str(runner_dir / "cell_runner.py"), "user_code.py"], cwd=app,
                          env={"PYSTRIBUTED_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert ("RuntimeError: --in thing could not be unpickled in the image (ModuleNotFoundError: No module "
            f"named 'labkit'; it needs module labkit; pickled in the notebook by Python {HERE} with labkit "
            f"2.0, loaded in the image by Python {HERE} with labkit not installed). Install what it needs in "
            "the image (REQUIREMENTS), in the notebook's version, or send what it is "
            "made from instead") in proc.stderr


def test_the_image_reports_the_versions_of_what_its_values_need(tmp_path, lib):
    cell_runner.save_values(str(tmp_path), {"t": lib.Thing(1), "n": 2}, ["t", "n"], None)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["python"] == HERE and report["modules"] == {"labkit": "2.0"}
