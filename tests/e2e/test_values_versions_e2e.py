"""--in/--out values that cannot be loaded on the other side are named with the module they need and
each side's Python and version, on the sandbox (the Pythons are alike here; unit tests fake another:
tests/features/test_values_versions.py)."""
import sys
import zipfile

import pytest

from pystributed import config, features, pipeline
from pystributed.errors import PystributedError, RemoteCellError
from pystributed.features import values

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


def run(exchange):
    cfg = config.load()
    return pipeline.run(cfg, quiet=True, features=features.for_run(cfg, exchange=exchange))


def test_an_input_whose_module_the_image_lacks_is_named(sandbox, tmp_path, monkeypatch):
    (tmp_path / "labmod.py").write_text("__version__ = '0.3'\nclass Thing:\n    n = 1\n")
    (tmp_path / ".dockerignore").write_text("labmod.py\n")  # here, not in the image
    monkeypatch.syspath_prepend(str(tmp_path))
    import labmod

    (tmp_path / "user_code.py").write_text("print(thing)\n")
    with pytest.raises(RemoteCellError) as excinfo:
        run(values.Exchange(inputs="thing", namespace={"thing": labmod.Thing()}))
    assert ("--in thing could not be unpickled in the image (ModuleNotFoundError: No module named 'labmod'; "
            f"it needs module labmod; pickled in the notebook by Python {HERE} with labmod 0.3, loaded in "
            f"the image by Python {HERE} with labmod not installed)") in str(excinfo.value)


def test_an_output_whose_module_is_not_here_is_named_and_the_rest_comes_back(sandbox, tmp_path, monkeypatch):
    wheel = tmp_path / "labdep-2.0-py3-none-any.whl"
    info = "labdep-2.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("labdep/__init__.py", "__version__ = '2.0'\nclass Result:\n    def __init__(self, v):\n"
                                           "        self.v = v\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: labdep\nVersion: 2.0\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: "
                                      "py3-none-any\n")
        whl.writestr(f"{info}/RECORD",
                     f"labdep/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    (tmp_path / "requirements.txt").write_text(f"./{wheel.name}\n")
    monkeypatch.setenv("PYSTRIBUTED_REQUIREMENTS", "requirements.txt")
    (tmp_path / "user_code.py").write_text("import labdep\nresult = labdep.Result(42)\ncount = 3\n")
    namespace = {}
    with pytest.raises(PystributedError) as excinfo:
        run(values.Exchange(out="result,count", namespace=namespace))
    assert ("--out: result could not be unpickled here (ModuleNotFoundError: No module named 'labdep'; it "
            f"needs module labdep; pickled in the image by Python {HERE} with labdep 2.0, loaded here by "
            f"Python {HERE} with labdep not installed): install what it needs here, in the "
            "image's version") in str(excinfo.value)
    assert namespace == {"count": 3}
