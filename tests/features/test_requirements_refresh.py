"""REQUIREMENTS = "auto" sees what `%pip install` added to the running Python: the lookup of the
installed distributions is made again when sys.path or one of its folders changed, and only then.
pip itself installs a local wheel (tests/e2e/wheels.py) into a folder on sys.path."""
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from pystributed.features import requirements

_spec = importlib.util.spec_from_file_location("wheels",
                                               Path(__file__).resolve().parents[1] / "e2e" / "wheels.py")
wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheels)

NAME = "pystributed_pip_dep"
SOURCE = f"import {NAME}\n"
NOT_INSTALLED = f"{NAME} is not installed here, so its version cannot be pinned"


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
                   check=True, capture_output=True)


@pytest.fixture
def lookups(monkeypatch):
    """How many times the installed distributions were looked up (the costly part)."""
    count = []
    original = importlib.metadata.packages_distributions if hasattr(importlib.metadata,
                                                                    "packages_distributions") \
        else importlib.metadata.distributions
    name = original.__name__

    def counted(*args, **kwargs):
        count.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(importlib.metadata, name, counted)
    requirements._import_names.cache_clear()
    yield count
    requirements._import_names.cache_clear()


@pytest.fixture
def target(tmp_path, monkeypatch):
    """An empty folder on sys.path, as `pip install --target` or a venv's site-packages would be."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_package_pip_installs_after_the_first_lookup_is_pinned(tmp_path, target, lookups):
    assert requirements.resolve(SOURCE) == ([], [NOT_INSTALLED])
    wheel = wheels.make_wheel(tmp_path, name=NAME, version="2.0.1")
    pip("install", "--no-index", "--no-deps", "--target", str(target), str(wheel))  # what %pip install does
    pins, notes = requirements.resolve(SOURCE)
    assert [(pin.name, pin.version, pin.wheel) for pin in pins] == [(NAME, "2.0.1", wheel)] and notes == []
    with requirements.prepared("auto", SOURCE) as path:  # the wheel is shipped with the requirements
        assert (Path(path).parent / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert len(lookups) == 2  # the first time, then once after pip changed the folder; not for prepared()


def test_an_unchanged_environment_is_not_looked_up_again(tmp_path, target, lookups):
    requirements.resolve(SOURCE)
    requirements.resolve("import IPython\n")
    # The working directory (the notebook's folder) changes with every saved cell: not a reason.
    Path("user_code.py").write_text("x = 1\n")
    requirements.resolve(SOURCE)
    assert len(lookups) == 1


def test_an_upgrade_and_an_uninstall_are_seen(tmp_path, target, lookups):
    pip("install", "--no-index", "--no-deps", "--target", str(target),
        str(wheels.make_wheel(tmp_path, NAME, "1.0")))
    assert [pin.version for pin in requirements.resolve(SOURCE)[0]] == ["1.0"]
    (tmp_path / "new").mkdir()
    newer = wheels.make_wheel(tmp_path / "new", NAME, "1.1")
    pip("install", "--no-index", "--no-deps", "--upgrade", "--target", str(target), str(newer))
    assert [(pin.version, pin.wheel) for pin in requirements.resolve(SOURCE)[0]] == [("1.1", newer)]
    for path in target.iterdir():  # removed, as `pip uninstall` does
        subprocess.run(["rm", "-rf", str(path)], check=True)
    assert requirements.resolve(SOURCE) == ([], [NOT_INSTALLED])


def test_a_folder_added_to_sys_path_is_seen(tmp_path, lookups, monkeypatch):
    folder = tmp_path / "later"
    pip("install", "--no-index", "--no-deps", "--target", str(folder),
        str(wheels.make_wheel(tmp_path, NAME, "3.0")))
    assert requirements.resolve(SOURCE) == ([], [NOT_INSTALLED])
    monkeypatch.syspath_prepend(str(folder))
    assert [pin.version for pin in requirements.resolve(SOURCE)[0]] == ["3.0"]
