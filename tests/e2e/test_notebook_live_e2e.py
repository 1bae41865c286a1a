"""What a user sees in a real Jupyter kernel: live output, errors, interrupts, the run record."""
import json
import time

import pytest
from kernel import Kernel, error_of, stream_text
from wheels import require_tqdm


@pytest.fixture
def kernel(sandbox, tmp_path):
    k = Kernel(tmp_path)
    messages, reply = k.execute("import pystributed.main as runner")
    assert reply["status"] == "ok", messages
    yield k
    k.close()


def run_id_from(tmp_path):
    runs = list((tmp_path / "results" / ".runs").glob("*.json"))
    assert len(runs) == 1, runs
    return json.loads(runs[0].read_text())


def test_output_arrives_while_the_remote_code_runs(kernel, tmp_path):
    messages, reply = kernel.execute(
        "%%remote\n"
        "import time\n"
        "print('first', time.time())\n"  # no flush=True: the container's Python is unbuffered
        "time.sleep(10)\n"
        "print('last')\n")
    assert reply["status"] == "ok"
    first = next(m for m in messages if m["msg_type"] == "stream" and "first" in m["content"]["text"])
    printed_at = float(first["content"]["text"].split("first ")[1].split()[0])
    delay = first["received"].timestamp() - printed_at
    assert delay < 2, f"the first line took {delay:.1f}s to arrive"
    last = next(m for m in messages if m["msg_type"] == "stream" and "last" in m["content"]["text"])
    assert (last["received"] - first["received"]).total_seconds() > 8
    # The result shows as a table: status, files with sizes and links.
    result = next(m for m in messages if m["msg_type"] == "execute_result")
    assert "succeeded" in result["content"]["data"]["text/plain"]
    assert "output.log" in result["content"]["data"]["text/html"]


def test_stdout_and_stderr_stay_apart_and_progress_bars_stay_small(kernel, tmp_path):
    messages, reply = kernel.execute(
        "%%remote\n"
        "import sys\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "for i in range(10000):\n"
        "    print(f'\\r{i / 100:.0f}%|' + '#' * (i // 500), end='', file=sys.stderr)\n"
        "print(file=sys.stderr)\n")
    assert reply["status"] == "ok"
    stdout, stderr = stream_text(messages, "stdout"), stream_text(messages, "stderr")
    assert "to stdout\n" in stdout and "to stderr" not in stdout
    assert "to stderr\n" in stderr and "to stdout" not in stderr
    assert stderr.count("\r") < 100 and len(stderr) < 10000
    assert stderr.rstrip().endswith("100%|" + "#" * 19)


def test_a_real_tqdm_bar_of_10000_steps_stays_one_line(kernel, tmp_path):
    # The real tqdm, as users run it, shipped as a wheel: the container has no network.
    require_tqdm(tmp_path)
    messages, reply = kernel.execute(
        "%%remote\n"
        "from tqdm import tqdm\n"
        "for i in tqdm(range(10000), mininterval=0, miniters=1):\n"
        "    pass\n"
        "print('done')\n", timeout=600)
    assert reply["status"] == "ok", error_of(messages)
    stderr = stream_text(messages, "stderr")
    assert stderr.count("\r") < 100 and len(stderr) < 20000, len(stderr)
    assert "10000/10000" in stderr.splitlines()[-1]
    assert "done\n" in stream_text(messages)
    log = (tmp_path / "results" / run_id_from(tmp_path)["run_id"] / "output.log").read_bytes()
    assert log.count(b"\r") > 5000  # tqdm did redraw thousands of times; the notebook got a few


def test_a_remote_value_error_is_a_value_error_with_the_remote_traceback(kernel, tmp_path):
    messages, reply = kernel.execute(
        "%%remote\n"
        "def check(x):\n"
        "    raise ValueError(f'x must be positive, not {x}')\n"
        "check(-1)\n")
    error = error_of(messages)
    assert reply["status"] == "error" and error["ename"] == "RemoteValueError"
    assert error["evalue"].startswith("ValueError: x must be positive, not -1\n(run ")
    assert 'File "user_code.py", line 3, in <module>' in error["evalue"]
    assert 'File "user_code.py", line 2, in check' in error["evalue"]
    messages, _ = kernel.execute(
        "try:\n    runner.main()\nexcept ValueError as e:\n    print('caught', e.remote_type)")
    assert "caught ValueError" in stream_text(messages)


def test_interrupt_stops_the_container_and_marks_the_run(kernel, sandbox, tmp_path):
    def interrupt_once_started(msg):
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
            kernel.interrupt()

    _messages, reply = kernel.execute(
        "%%remote\n"
        "import os, time\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'partial.txt'), 'w').write('so far')\n"
        "print('started')\n"
        "time.sleep(60)\n", on_message=interrupt_once_started)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    record = run_id_from(tmp_path)
    assert record["status"] == "interrupted"
    run_id = record["run_id"]
    assert sandbox.docker("remote", "ps", "-aq", "--filter", f"label=pystributed.run={run_id}").stdout == ""
    assert (tmp_path / "results" / run_id / "partial.txt").read_text() == "so far"
    # The cell itself got a KeyboardInterrupt, as it would locally: its traceback is in the log.
    assert "KeyboardInterrupt" in (tmp_path / "results" / run_id / "output.log").read_text()
    assert json.loads((tmp_path / "results" / run_id / "run.json").read_text())["status"] == "interrupted"


def test_run_json_is_complete_and_runs_lists_it(kernel, sandbox, tmp_path):
    started = time.time()
    messages, reply = kernel.execute("%%remote --gpus 0\nprint('hi')\n")
    # --gpus reaches the run: the sandbox engine has no GPU support, so the run fails before the push,
    # clearly.
    assert reply["status"] == "error"
    assert ("gpus failed" in error_of(messages)["evalue"]
            and "no `nvidia` runtime" in error_of(messages)["evalue"])
    (tmp_path / "results" / ".runs").rename(tmp_path / "failed-runs")
    messages, reply = kernel.execute("%%remote\nprint('hi')\n")
    assert reply["status"] == "ok"
    record = run_id_from(tmp_path)
    saved = json.loads((tmp_path / "results" / record["run_id"] / "run.json").read_text())
    for key in ("run_id", "started", "ended", "server", "image", "image_digest", "config", "exit_code",
                "status", "source_sha256", "files"):
        assert saved[key] not in ("", None), key
    assert saved["status"] == "succeeded" and saved["exit_code"] == 0
    assert (saved["image_digest"].startswith("sha256:")
            and saved["config"]["REMOTE_SERVER"] == "pystributed-sandbox")
    assert saved["started"] < saved["ended"] and saved["started"] > time.strftime("%Y", time.gmtime(started))
    messages, _ = kernel.execute("print(runner.runs())")
    assert record["run_id"] in stream_text(messages) and "succeeded" in stream_text(messages)


def test_detach_then_attach_from_a_new_kernel(sandbox, tmp_path, kernel):
    messages, reply = kernel.execute("%%remote --detach\nimport "
                                     "time\nprint('one')\ntime.sleep(3)\nprint('two')\n")
    assert reply["status"] == "ok"
    run_id = run_id_from(tmp_path)["run_id"]
    assert "runner.attach(" in stream_text(messages)
    other = Kernel(tmp_path)
    try:
        messages, reply = other.execute("import pystributed.main as runner\nr = "
                                        f"runner.attach({run_id!r})\nr.files")
    finally:
        other.close()
    assert reply["status"] == "ok"
    assert "one\n" in stream_text(messages) and "two\n" in stream_text(messages)
    assert (tmp_path / "results" / run_id / "output.log").read_text() == "one\ntwo\n"
