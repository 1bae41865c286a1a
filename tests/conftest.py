import os

import pytest
from fakes import programs  # noqa: F401 (a fixture for every test)


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
