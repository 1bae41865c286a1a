import json
import os
import subprocess
import sys
import time

import pytest
from wheels import make_wheel

pytestmark = pytest.mark.usefixtures("sandbox")


def pystributed(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                          check=False, timeout=600)
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def only_run_folder(cwd="."):
    runs = [name for name in os.listdir(os.path.join(cwd, "results")) if not name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def test_remote_run_from_the_shell(sandbox, tmp_path):
    (tmp_path / "data.txt").write_text("some data\n")
    (tmp_path / "user_code.py").write_text(
        "import os, sys\n"
        "print('read', open('data.txt').read().strip())\n"
        "print('to stderr', file=sys.stderr)\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), 'w').write('42')\n")
    started = time.time()
    proc = pystributed("run")
    run_id = only_run_folder()
    assert "read some data\n" in proc.stdout
    assert "to stderr\n" in proc.stderr
    for step in ("build", "push", "connect", "pull", "run", "fetch"):
        assert f"\n{step:<8}" in "\n" + proc.stdout, step
    assert (tmp_path / "results" / run_id / "out.txt").read_text() == "42"
    log = (tmp_path / "results" / run_id / "output.log").read_text()
    assert "read some data" in log and "to stderr" in log
    # The image crossed the registry and ran on the remote engine only.
    sandbox.assert_ran_remotely(tmp_path / "results" / run_id, started)
    # The remote run folder is the ssh user's, and no container is left behind.
    owners = sandbox.remote_shell(f"stat -c %U pystributed-runs/{run_id} pystributed-runs/{run_id}/out.txt")
    assert owners.split() == ["pystributed", "pystributed"]
    assert sandbox.docker("remote", "ps", "-aq", "--filter", f"label=pystributed.run={run_id}").stdout == ""


def test_a_failing_cell_fails_the_command_with_the_remote_traceback(sandbox, tmp_path):
    (tmp_path / "cell.py").write_text("x = 1\nraise ValueError(f'bad value {x}')\n")
    proc = pystributed("run", "cell.py", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = only_run_folder()
    assert proc.returncode == 1
    assert (f"\nerror: ValueError: bad value 1\n(run {run_id} on "
            "pystributed-sandbox, exit code 1)" in proc.stderr)
    assert 'File "cell.py", line 2, in <module>' in proc.stderr
    assert "ValueError: bad value 1" in (tmp_path / "results" / run_id / "output.log").read_text()


def test_local_server_without_registry_runs_on_the_local_engine(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "local")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "")
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", str(tmp_path / "server side"))
    (tmp_path / "user_code.py").write_text(
        "import os\nopen(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'r.txt'), 'w').write('local')\n")
    started = time.time()
    proc = pystributed("run")
    run_id = only_run_folder()
    assert "\npush" not in proc.stdout and "\npull" not in proc.stdout
    assert (tmp_path / "results" / run_id / "r.txt").read_text() == "local"
    assert (tmp_path / "server side" / run_id / "r.txt").read_text() == "local"
    assert "start" in sandbox.container_events("local", run_id, started)
    image = json.loads((tmp_path / "results" / run_id / "run.json").read_text())["image"]
    assert image.startswith("pystributed:")  # no registry in the name: nothing to push it to


def test_requirements_are_installed_in_the_image(sandbox, tmp_path, monkeypatch):
    (tmp_path / "deps").mkdir()
    wheel = make_wheel(tmp_path / "deps")
    (tmp_path / "deps" / "requirements.txt").write_text(f"./{wheel.name}\n")
    monkeypatch.setenv("PYSTRIBUTED_REQUIREMENTS", "deps/requirements.txt")
    (tmp_path / "user_code.py").write_text("import pystributed_demo_dep\nprint('dep', "
                                           "pystributed_demo_dep.VERSION)\n")
    assert "dep 1.2.3\n" in pystributed("run").stdout


def test_shared_memory_holds_more_than_dockers_64_mb(tmp_path):
    # PyTorch's DataLoader workers hand batches over in /dev/shm: Docker's 64 MB kills them (bus error).
    (tmp_path / "user_code.py").write_text(
        "import os\n"
        "with open('/dev/shm/block', 'wb') as f:  # past 64 MB a tmpfs write fails: No space left on device\n"
        "    for _ in range(128):\n"
        "        f.write(b'x' * (1 << 20))\n"
        "stat = os.statvfs('/dev/shm')\n"
        "print('shm GiB', stat.f_blocks * stat.f_frsize // (1 << 30))\n")
    assert "shm GiB 8\n" in pystributed("run").stdout
