import importlib

import pytest
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_import_of_runner_registers_the_magic_in_the_running_ipython(ip):
    import pystributed.main

    importlib.reload(pystributed.main)  # what `import pystributed.main as runner` does the first time
    assert "save_for_remote" in ip.magics_manager.magics["cell"]


def test_load_ext_registers_it_too(ip):
    ip.run_line_magic("load_ext", "pystributed")
    assert "save_for_remote" in ip.magics_manager.magics["cell"]


def test_the_cell_is_saved_and_not_run(ip, tmp_path, capsys):
    ip.run_line_magic("load_ext", "pystributed")
    result = ip.run_cell("%%save_for_remote\nraise SystemExit('ran locally')\n")
    assert result.success
    assert (tmp_path / "user_code.py").read_text() == "raise SystemExit('ran locally')\n"
    out = capsys.readouterr().out
    assert out == ("Saved the cell (1 line) to user_code.py; run it remotely with runner.main() "
                   "or `python -m pystributed run user_code.py`.\n")


def test_the_path_comes_from_the_line_or_the_config(ip, tmp_path):
    ip.run_line_magic("load_ext", "pystributed")
    (tmp_path / "config.py").write_text("USER_CODE_PATH = 'cells/train.py'\n")
    assert ip.run_cell("%%save_for_remote\nx = 1\n").success
    assert ip.run_cell("%%save_for_remote other.py\ny = 2\n").success
    assert (tmp_path / "cells" / "train.py").read_text() == "x = 1\n"
    assert (tmp_path / "other.py").read_text() == "y = 2\n"


@pytest.mark.parametrize(("cell", "message"), [
    ("x = 1\ny = (\n", "the cell does not compile: '(' was never closed (line 2); nothing was saved"),
    ("\n  \n", "the cell is empty: nothing to save"),
])
def test_bad_cells_are_refused_and_nothing_is_written(ip, tmp_path, cell, message):
    from IPython.core.error import UsageError

    ip.run_line_magic("load_ext", "pystributed")
    with pytest.raises(UsageError) as excinfo:
        ip.run_cell_magic("save_for_remote", "", cell)
    assert excinfo.value.args == (message,)
    assert list(tmp_path.iterdir()) == []


def test_earlier_cells_come_along_and_the_options_are_kept_for_main(ip, tmp_path):
    from pystributed import magic

    ip.run_line_magic("load_ext", "pystributed")
    assert ip.run_cell("K = 2\ndef f():\n    return K\n", store_history=True).success
    assert ip.run_cell("%%save_for_remote --out r --in K --cache\nr = f()\n", store_history=True).success
    saved = (tmp_path / "user_code.py").read_text()
    assert saved.endswith("# --- the cell ---\nr = f()\n") and "def f():" in saved
    assert "K = 2" not in saved  # sent with --in instead
    _, options = magic.saved("user_code.py")
    assert options == {"out": "r", "inputs": "K", "cache": True}


def test_remote_saves_the_cell_for_the_next_main_too(ip, tmp_path, monkeypatch, capsys):
    from pystributed import magic, pipeline
    from pystributed.results import RunResult

    ran = []
    monkeypatch.setattr(pipeline, "run", lambda config,
                        **kw: ran.append(kw["source"]) or RunResult("r", 0, None))
    (tmp_path / "config.py").write_text("REMOTE_SERVER = 'local'\n")
    ip.run_line_magic("load_ext", "pystributed")
    assert ip.run_cell("%%save_for_remote\nx = 1\n").success
    assert ip.run_cell("%%remote --detach --out y\ny = 2\n").success
    assert ran == ["y = 2\n"]
    capsys.readouterr()
    assert magic.saved("user_code.py") == ("y = 2\n", {"out": "y"})
    assert capsys.readouterr().out == ""  # no "changed since this kernel saved it" note


def test_a_name_no_earlier_cell_defines_is_refused_before_saving(ip, tmp_path):
    from pystributed.features.deps import UnresolvedNames

    ip.run_line_magic("load_ext", "pystributed")
    with pytest.raises(UnresolvedNames, match="nowhere: read in this cell"):
        ip.run_cell_magic("save_for_remote", "", "print(nowhere)\n")
    assert not (tmp_path / "user_code.py").exists()
    ip.run_cell_magic("save_for_remote", "--no-deps", "print(nowhere)\n")
    assert (tmp_path / "user_code.py").read_text() == "print(nowhere)\n"


def test_nodes_is_a_run_option_kept_for_main(ip, tmp_path):
    from pystributed import magic

    ip.run_line_magic("load_ext", "pystributed")
    assert ip.run_cell("%%save_for_remote --nodes 2 --no-deps\nr = 1\n").success
    assert magic.saved("user_code.py")[1] == {"NODES": 2}
