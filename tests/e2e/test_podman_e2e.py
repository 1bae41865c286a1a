"""A server whose engine is rootless: the sandbox's login user pystributed-podman, whose `docker` is
rootless Podman (scripts/sandbox.sh: podman_user), as on RHEL-family GPU servers. There a container
run as the ssh user's uid runs as a subordinate uid that cannot write the run folder
(`PermissionError: [Errno 13] Permission denied: '/results/r.txt'`); server.sh's rundir sees the
rootless engine, and the container runs as its root, which is the ssh user. The seed path, submit
and fetch, and cancel, through the CLI."""
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import delete_from_registry

ROOT = Path(__file__).resolve().parents[2]
ALIAS, USER = "pystributed-sandbox-podman", "pystributed-podman"
RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")


class Podman:
    def __init__(self, sandbox, workdir, image_name):
        self.sandbox, self.workdir, self.image_name = sandbox, workdir, image_name
        self.ssh = ["ssh", *shlex.split(sandbox.env["PYSTRIBUTED_SSH_OPTIONS"]), ALIAS]
        self.env = {**os.environ, **sandbox.env, "PYSTRIBUTED_REMOTE_SERVER": ALIAS,
                    "PYSTRIBUTED_REMOTE_WORKDIR": workdir, "PYSTRIBUTED_DOCKER_IMAGE_NAME": image_name}

    def shell(self, script):
        return subprocess.run([*self.ssh, script], capture_output=True, text=True, check=True,
                              timeout=120).stdout

    def cli(self, *args, cwd, code=0):
        proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                              check=False, timeout=600, env=self.env, cwd=cwd)
        assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture
def podman(sandbox, tmp_path):
    """The podman login, each test in a REMOTE_WORKDIR and with an image name of its own (removed after)."""
    for tool in ("podman", "newuidmap"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False).returncode:
            message = (f"{tool} is not installed: run `scripts/sandbox.sh install --all`, then "
                       "`scripts/sandbox.sh start`")
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true and the Podman login of the sandbox is unavailable: {message}")
            pytest.skip(message)
    token = secrets.token_hex(3)
    place = Podman(sandbox, f"podman-runs-{token}", f"pystributed-test-podman-{token}")
    info = place.shell("command -v docker; docker info --format '{{.Host.Security.Rootless}}'")
    assert info.split() == [f"/home/{USER}/bin/docker", "true"], info
    yield place
    # Its images in Podman, on the local engine and in the registry; its run folders.
    repository = f"{sandbox.registry}/{place.image_name}"
    listing = f"image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {repository}"
    subprocess.run([*place.ssh, f"docker {listing} | xargs -r docker image rm -f; rm -rf {place.workdir}"],
                   capture_output=True, check=False, timeout=120)
    for ref in sandbox.docker("local", *shlex.split(listing)).stdout.split():
        sandbox.docker("local", "image", "rm", ref)
    delete_from_registry(sandbox.registry, place.image_name)


def only_run(cwd):
    (run_id,) = [name for name in os.listdir(cwd / "results") if not name.startswith(".")]
    return run_id


def test_the_seed_path_on_rootless_podman(podman, sandbox, tmp_path):
    (tmp_path / "cell.py").write_text(
        "import os\n"
        "print('uid in the container', os.getuid())\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'r.txt'), 'w').write('written')\n")
    started = time.time()
    proc = podman.cli("run", "cell.py", cwd=tmp_path)
    run_id = only_run(tmp_path)
    assert "uid in the container 0\n" in proc.stdout  # root there, which is the ssh user here
    assert (tmp_path / "results" / run_id / "r.txt").read_text() == "written"
    assert "uid in the container 0" in (tmp_path / "results" / run_id / "output.log").read_text()
    # On the server, the run folder and what the cell wrote are the ssh user's, to read and delete.
    owners = podman.shell(f"cd {podman.workdir}/{run_id} && stat -c '%U %n' . r.txt output.log "
                          ".pystributed-state.json")
    assert owners.split() == [USER, ".", USER, "r.txt", USER, "output.log", USER, ".pystributed-state.json"]
    # It ran in Podman, not in the sandbox's Docker engine, and no container is left.
    assert sandbox.container_events("remote", run_id, started) == []
    assert podman.shell(f"docker ps -a -q --filter label=pystributed.run={run_id}") == ""
    image = json.loads((tmp_path / "results" / run_id / "run.json").read_text())["image"]
    assert image.startswith(f"{sandbox.registry}/{podman.image_name}:")
    # pulled from the registry
    assert podman.shell(f"docker image inspect --format ok {image}").strip() == "ok"
    # A change of the cell: its files are mounted over that image (features/cell_mount.py), by Podman too.
    (tmp_path / "cell.py").write_text("print('the cell as changed', "
                                      "open('/app/cell.py').read().count('changed'))\n")
    proc = podman.cli("run", "cell.py", cwd=tmp_path)
    assert "not needed: the cell's files go over" in proc.stdout and "the cell as changed 2\n" in proc.stdout


def test_submit_then_fetch_on_rootless_podman(podman, tmp_path):
    (tmp_path / "cell.py").write_text(
        "import os, time\n"
        "time.sleep(2)\n"
        "print('detached and done')\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'late.txt'), 'w').write('late')\n")
    run_id = podman.cli("submit", "cell.py", cwd=tmp_path).stdout.strip()
    assert RUN_ID.fullmatch(run_id)
    assert podman.cli("status", run_id, cwd=tmp_path).stdout.startswith(f"{run_id} running")
    assert "detached and done" in podman.cli("logs", "-f", run_id, cwd=tmp_path).stdout
    podman.cli("wait", run_id, cwd=tmp_path)
    podman.cli("fetch", run_id, cwd=tmp_path)
    folder = tmp_path / "results" / run_id
    assert (folder / "late.txt").read_text() == "late"
    assert "detached and done" in (folder / "output.log").read_text()
    state = json.loads((folder / ".pystributed-state.json").read_text())
    assert state["State"]["ExitCode"] == 0
    listing = podman.cli("list", cwd=tmp_path).stdout
    assert re.search(rf"^{run_id}\s+exited 0\s", listing, re.MULTILINE), listing


def test_cancel_on_rootless_podman(podman, tmp_path):
    (tmp_path / "cell.py").write_text(
        "import os, time\n"
        "print('started', flush=True)\n"
        "try:\n"
        "    time.sleep(120)\n"
        "finally:\n"
        "    open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'finally.txt'), 'w').write('ran')\n")
    run_id = podman.cli("submit", "cell.py", cwd=tmp_path).stdout.strip()
    deadline = time.time() + 60
    while "started" not in podman.cli("logs", run_id, cwd=tmp_path).stdout:
        assert time.time() < deadline, "the cell never started"
        time.sleep(0.5)
    podman.cli("cancel", run_id, cwd=tmp_path)
    assert podman.cli("status", run_id, cwd=tmp_path).stdout.startswith(f"{run_id} cancelled")
    assert podman.shell(f"docker ps -a -q --filter label=pystributed.run={run_id}") == ""
    podman.cli("fetch", run_id, cwd=tmp_path)
    folder = tmp_path / "results" / run_id
    assert (folder / "finally.txt").read_text() == "ran"  # the cell's `finally:` ran, and could write
    assert "KeyboardInterrupt" in (folder / "output.log").read_text()
