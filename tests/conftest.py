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
