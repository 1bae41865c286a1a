import os
from pathlib import Path

import pytest
from fakes import programs  # noqa: F401 (a fixture for every test)

import pystributed

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALLED = Path(pystributed.__file__).resolve().parent


def pytest_report_header(config):
    return f"pystributed imported from {INSTALLED}"


def pytest_sessionstart(session):
    """The suite tests the package as installed (scripts/test.sh installs the wheel): one imported
    from this checkout (an editable install, or the checkout on sys.path) would hide a file missing
    from the wheel. PYSTRIBUTED_TEST_CHECKOUT=1 allows it for a quick loop, never in CI."""
    # (The checkout's own folder: a venv inside the checkout, as README allows, installs the wheel below it.)
    if INSTALLED == CHECKOUT / "pystributed" and (os.environ.get("CI") == "true"
                                                  or not os.environ.get("PYSTRIBUTED_TEST_CHECKOUT")):
        pytest.exit(f"pystributed was imported from this checkout ({INSTALLED}), not from an installed "
                    "wheel: run bash scripts/test.sh (or set PYSTRIBUTED_TEST_CHECKOUT=1 for a quick "
                    "loop, outside CI)",
                    returncode=4)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Each test starts in an empty folder, with no PYSTRIBUTED_ settings of the caller's."""
    for name in list(os.environ):
        if name.startswith("PYSTRIBUTED_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME is an empty folder of the test's own (where sh, started by the local place, begins)."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder
