"""The remote cell behaves like a local one, in a real Jupyter kernel against the sandbox: variables
in and out, the last expression, earlier cells brought along, cached reruns without the server."""
import json
import socket
import time

import pytest
from kernel import Kernel, error_of, stream_text
from test_faults_e2e import Server


@pytest.fixture
def kernel(sandbox, tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.close()


def ok(kernel, code):
    messages, reply = kernel.execute(code)
    assert reply["status"] == "ok", (error_of(messages), stream_text(messages),
                                     stream_text(messages, "stderr"))
    return messages


def result_of(messages):
    return next(m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result")


def runs(tmp_path):
    return sorted(p.stem for p in (tmp_path / "results" / ".runs").glob("*.json"))


def test_values_come_back_equal_and_the_last_expression_is_the_cell_value(kernel, sandbox, tmp_path):
    started = time.time()
    ok(kernel, "import pystributed.main as runner")
    ok(kernel, "import dataclasses\n\n@dataclasses.dataclass\nclass Point:\n    x: int\n    tags: list\n")
    ok(kernel, "seed = 7\nrows = [{'k': i} for i in range(3)]")
    messages = ok(kernel, (
        "%%remote --in seed,rows --out nested,point,blob\n"
        "nested = {'a': {'b': [1, 2.5, {'c': (3, 'x')}]}, 's': {1, 2}, 'rows': rows}\n"
        "point = Point(seed, ['t'])\n"
        "blob = bytes(range(256)) * 1000\n"
        "len(blob)\n"))
    assert result_of(messages) == "256000"  # shown and returned, as locally
    ok(kernel, (
        "assert nested == {'a': {'b': [1, 2.5, {'c': (3, 'x')}]}, 's': {1, 2}, 'rows': rows}, nested\n"
        "assert type(point) is Point and point == Point(7, ['t']), point\n"
        "assert blob == bytes(range(256)) * 1000\n"))
    [run_id] = runs(tmp_path)
    sandbox.assert_ran_remotely(tmp_path / "results" / run_id, started)
    # Through %%save_for_remote + runner.main(out=[...]) too; the value is kept on the result.
    ok(kernel, "%%save_for_remote --in seed\nanswer = seed * 6\nanswer\n")
    messages = ok(kernel, "r = runner.main(out=['answer'])\nassert answer == 42 and r.value == 42")
    assert "42" in "".join(m["content"]["data"]["text/plain"]
                           for m in messages if m["msg_type"] == "display_data")


def test_an_unpicklable_or_unassigned_out_variable_is_named(kernel, tmp_path):
    ok(kernel, "import pystributed.main as runner")
    messages, reply = kernel.execute(
        "%%remote --out lock,fine,never\nimport threading\nlock = threading.Lock()\nfine = 'yes'\n")
    assert reply["status"] == "error"
    error = error_of(messages)["evalue"]
    assert "--out: lock could not be pickled (TypeError: cannot pickle '_thread.lock' object)" in error
    assert "never was never assigned" in error and "fine came back" in error
    ok(kernel, "assert fine == 'yes'\nassert 'lock' not in globals()")


def test_a_detached_run_hands_its_out_variables_to_whoever_attaches(kernel, tmp_path):
    ok(kernel, "import pystributed.main as runner")
    ok(kernel, "%%remote --detach --out answer\nimport time\ntime.sleep(2)\nanswer = 6 * 7\n")
    [run_id] = runs(tmp_path)
    other = Kernel(tmp_path)
    try:
        ok(other, f"import pystributed.main as runner\nr = runner.attach({run_id!r})\nassert answer == 42")
    finally:
        other.close()


def test_earlier_cells_come_along_and_the_cell_runs_untouched(kernel, tmp_path):
    ok(kernel, "import pystributed.main as runner")
    ok(kernel, "import math\n\ndef scale(x):\n    return math.floor(x * FACTOR)\n")
    ok(kernel, "FACTOR = 3\nunrelated = sorted([3, 1, 2])\n%ls\n")
    cell = "print('scaled', scale(14))\n"
    messages = ok(kernel, "%%save_for_remote\n" + cell)
    assert "with what it uses from In[2], In[3]" in stream_text(messages)
    saved = (tmp_path / "user_code.py").read_text()
    assert saved.endswith("# --- the cell ---\n" + cell)  # the cell itself, unchanged
    assert "def scale(x):" in saved and "FACTOR = 3\n" in saved and "import math\n" in saved
    assert "unrelated" not in saved and "get_ipython" not in saved
    messages = ok(kernel, "r = runner.main()")
    assert "scaled 42\n" in stream_text(messages)
    # A remote error inside a brought-along function shows where it is, and the cell's own line.
    messages, reply = kernel.execute("%%remote\nx = 1\nscale('a' * 3)\n")
    error = error_of(messages)["evalue"]
    assert reply["status"] == "error" and 'File "user_code.py", line 2, in <module>' in error
    assert 'File "<earlier cells>"' in error and "in scale" in error


def test_names_the_run_would_lack_are_reported_before_any_build(kernel, tmp_path):
    ok(kernel, "import pystributed.main as runner")
    ok(kernel, "data = sorted([3, 1, 2])")
    messages, reply = kernel.execute("%%remote\nprint(data, not_defined_anywhere)\n")
    assert reply["status"] == "error"
    error = error_of(messages)["evalue"]
    assert "not_defined_anywhere: read in this cell (line 1); not defined in any earlier cell" in error
    assert "data: read in this cell (line 1); set in In[2] by `data = sorted([3, 1, 2])`" in error
    assert "--in data" in error
    assert not (tmp_path / "results").exists()  # nothing was built or run
    ok(kernel, "%%remote --in data\nprint(data)\n")
    assert ok(kernel, "%%remote --no-deps\nprint('no check')\n")


def refuses(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_a_cached_rerun_takes_under_a_second_without_the_server(sandbox, tmp_path, monkeypatch):
    # Our own sshd (not the shared one): stopping it stops every way to the server.
    server = Server(tmp_path / "server", sandbox.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"])
    tmp_path = tmp_path / "notebook"  # the folder that is built: the server's files change, and are not in it
    tmp_path.mkdir()
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "faulty")
    monkeypatch.setenv("PYSTRIBUTED_SSH_OPTIONS", f"-F {server.folder}/ssh_config")
    kernel = Kernel(tmp_path)  # started after the settings above: it inherits them
    try:
        ok(kernel, "import pystributed.main as runner\nx = 5")
        cell = ("%%remote --cache --in x --out total\nimport os\ntotal = sum(range(10)) * x\n"
                "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'f.txt'), 'w').write('file')\ntotal\n")
        assert result_of(ok(kernel, cell)) == "225"
        [first] = runs(tmp_path)
        ok(kernel, "del total")
        server.stop()
        for _ in range(100):
            if refuses(server.port):
                break
            time.sleep(0.05)
        assert refuses(server.port)
        began = time.monotonic()
        messages = ok(kernel, cell)
        took = time.monotonic() - began
        assert took < 1, f"the cached rerun took {took:.2f}s"
        assert result_of(messages) == "225"
        assert f"cached: reusing run {first}" in stream_text(messages)
        ok(kernel, "assert total == 225")
        assert runs(tmp_path) == [first]  # no new run
        assert (tmp_path / "results" / first / "f.txt").read_text() == "file"
        # Any change runs again: here that means the server, which is down.
        ok(kernel, "x = 6")
        messages, reply = kernel.execute(cell)
        assert reply["status"] == "error" and "connect failed" in error_of(messages)["evalue"]
        messages, reply = kernel.execute(cell.replace("* x", "* x  # changed"))
        assert reply["status"] == "error" and "connect failed" in error_of(messages)["evalue"]
    finally:
        kernel.close()
        if not refuses(server.port):
            server.stop()
    assert json.loads((tmp_path / "results" / first / "run.json").read_text())["status"] == "succeeded"
