"""A real notebook in a real Jupyter kernel: mark a cell, runner.main(), results back."""
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REMOTE_CELL = """%%save_for_remote
import os
print("hello from the remote", os.environ.get("PYSTRIBUTED_RUN_ID") is not None)
data = open("inputs/data.txt").read()
with open(os.path.join(os.environ["PYSTRIBUTED_RESULTS"], "answer.txt"), "w") as f:
    f.write(data.upper())
"""


def run_notebook(folder, *cells, allow_errors=False):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return nb


def text_of(cell, name="stdout"):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_notebook_runs_a_cell_remotely(sandbox, tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "data.txt").write_text("from the notebook folder\n")
    started = time.time()
    nb = run_notebook(tmp_path, "import pystributed.main as runner", REMOTE_CELL,
                      "result = runner.main()\nprint('RUN', result.run_id, result.exit_code, result.files)")
    saved, ran = nb.cells[1], nb.cells[2]
    assert text_of(saved).startswith("Saved the cell (5 lines) to user_code.py")
    assert "hello from the remote True\n" in text_of(ran)
    run_id, exit_code, files = text_of(ran).split("RUN ")[1].split(" ", 2)
    assert (exit_code == "0" and files.strip() == "['.pystributed-state.json', 'answer.txt', "
                                                  "'output.log', 'run.json']")
    assert (tmp_path / "results" / run_id / "answer.txt").read_text() == "FROM THE NOTEBOOK FOLDER\n"
    sandbox.assert_ran_remotely(tmp_path / "results" / run_id, started)


def test_a_failing_remote_cell_raises_in_the_notebook(sandbox, tmp_path):
    nb = run_notebook(tmp_path, "import pystributed.main as runner",
                      "%%save_for_remote\nimport json\njson.loads('{not json')\n",
                      "runner.main()", allow_errors=True)
    error = next(o for o in nb.cells[2].outputs if o.output_type == "error")
    assert error.ename == "RemoteCellError"  # JSONDecodeError is not a built-in: the base class
    assert error.evalue.startswith("json.decoder.JSONDecodeError: Expecting property name")
    assert 'File "user_code.py", line 2, in <module>' in error.evalue


def test_a_cell_that_does_not_compile_is_refused_in_the_notebook(sandbox, tmp_path):
    with pytest.raises(CellExecutionError, match=r"the cell does not compile: .*\(line 2\)"):
        run_notebook(tmp_path, "import pystributed.main as runner", "%%save_for_remote\nx = 1\nfor\n")
    assert not (tmp_path / "user_code.py").exists()
