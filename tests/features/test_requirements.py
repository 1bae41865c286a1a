import contextlib
import importlib.metadata
import json
import sys
import zipfile
from pathlib import Path

from pystributed import config, pipeline, progress
from pystributed.features import requirements


def test_imports_are_found_anywhere_in_the_cell_by_their_top_name():
    source = ("import os, numpy.linalg as la\nfrom torch.nn import Linear\nfrom . import x\ndef f():\n    "
              "import IPython\n")
    assert requirements.imported(source) == ["IPython", "numpy", "os", "torch"]


def test_standard_library_is_recognised():
    assert requirements.is_stdlib("os") and requirements.is_stdlib("json") and requirements.is_stdlib("sys")
    assert not requirements.is_stdlib("IPython") and not requirements.is_stdlib("numpy")


def test_installed_imports_are_pinned_to_their_local_version(tmp_path):
    (tmp_path / "helpers.py").write_text("")  # a module of the notebook's folder: shipped in the context
    pins, notes = requirements.resolve("import os\nimport IPython\nimport helpers\nimport no_such_pkg_xyz\n")
    assert [(p.name, p.version, p.wheel) for p in pins] == [("ipython", importlib.metadata.version("ipython"),
                                                             None)]
    assert notes == ["no_such_pkg_xyz is not installed here, so its version cannot be pinned"]
    assert requirements.text(pins).splitlines()[1] == f"ipython=={importlib.metadata.version('ipython')}"


def install_wheel_here(tmp_path, monkeypatch, name="pystributed_unit_dep", version="0.4.2"):
    """A wheel installed the way pip does it from a file: its dist-info records where it came from."""
    wheel = tmp_path / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "direct_url.json").write_text(json.dumps({"url": wheel.as_uri(), "archive_info": {}}))
    monkeypatch.syspath_prepend(str(site))
    requirements._import_names.cache_clear()
    return wheel


def test_a_package_installed_from_a_local_wheel_ships_that_wheel(tmp_path, monkeypatch):
    wheel = install_wheel_here(tmp_path, monkeypatch)
    source = "import pystributed_unit_dep\n"
    with requirements.prepared("auto", source) as path:
        text = Path(path).read_text()
        assert f"./wheels/{wheel.name}  # pystributed_unit_dep==0.4.2" in text
        assert (Path(path).parent / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    requirements._import_names.cache_clear()


def test_nothing_to_install_gives_no_requirements_layer_and_a_file_is_used_as_it_is():
    with requirements.prepared("auto", "import os\n") as path:
        assert path is None
    with requirements.prepared("reqs.txt", "import os\n") as path:
        assert path == "reqs.txt"


def test_pinned_versions_are_read_from_a_requirements_file(tmp_path):
    (tmp_path / "r.txt").write_text("# x\nNumPy==1.26.4\ntorch[cuda] == 2.3.1 ; "
                                    "python_version>'3'\nscipy>=1\n-r other\n")
    assert requirements.pinned(tmp_path / "r.txt") == {"numpy": "1.26.4", "torch": "2.3.1"}


def test_the_default_base_image_follows_this_python():
    assert config.load(environ={}, REMOTE_SERVER="local").BASE_IMAGE == (
        f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")


def test_local_version_labels_and_vcs_installs():
    assert requirements.Pin("torch", "2.3.1+cpu").line() == "torch==2.3.1"
    url = "git+https://example.com/lib.git@0123abc"
    assert requirements.Pin("lib", "0.1", url=url).line() == f"lib @ {url}"


def test_the_python_3_9_fallbacks(monkeypatch):
    monkeypatch.delattr(sys, "stdlib_module_names")
    assert (requirements.is_stdlib("json") and requirements.is_stdlib("sys")
            and requirements.is_stdlib("asyncio"))
    assert not requirements.is_stdlib("IPython")
    monkeypatch.delattr(importlib.metadata, "packages_distributions")
    requirements._import_names.cache_clear()
    try:
        assert [d.metadata["Name"] for d in requirements.distributions("IPython")] == ["ipython"]
    finally:
        requirements._import_names.cache_clear()


def test_auto_gives_the_build_a_file_that_lasts_as_long_as_the_run(tmp_path):
    run = pipeline.Run(config.load(environ={}, REMOTE_SERVER="local", REQUIREMENTS="auto"), None,
                       progress.Steps(quiet=True), source="import IPython\n")
    with contextlib.ExitStack() as run.cleanup:
        requirements.Auto().before_pack(run)
        path = Path(run.requirements)
        assert path.read_text().splitlines()[1] == f"ipython=={importlib.metadata.version('ipython')}"
    assert not path.exists() and not path.parent.exists()
    run.source = "import os\n"
    with contextlib.ExitStack() as run.cleanup:
        requirements.Auto().before_pack(run)
        assert run.requirements is None  # nothing to install: no requirements layer
