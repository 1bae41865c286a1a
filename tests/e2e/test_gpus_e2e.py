"""`--gpus` on the sandbox, whose remote engine has no GPU, no `nvidia` runtime and no NVIDIA
Container Toolkit, and whose login users have a fake nvidia-smi on PATH (scripts/sandbox.sh,
fake_gpus) that answers from files these tests write.

What is proven here: a run with `--gpus` on such an engine stops before the push, saying so; with
the toolkit's hook put on the users' PATH (a fake one: the check passes, the engine still has
none), `--gpus free` asks nvidia-smi over ssh, takes the GPU no process uses, says so, and
`docker run` gets `--gpus device=UUID` (read back from the container Docker made, which then
fails to start, with Docker's own `could not select device driver`). That a container then
reaches that GPU is scripts/gpu_check.sh's to show, on a machine with one."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pystributed import config
from pystributed.features import gpus
from pystributed.places import ssh

UUIDS = [f"GPU-e2e00000-0000-4000-8000-00000000000{i}" for i in range(4)]


class FakeGpus:
    """The sandbox's fake nvidia-smi answers: set by a test, put back after it."""

    def __init__(self, folder):
        self.folder = folder

    def write(self, name, text, mode=0o644):
        path = self.folder / name
        part = path.with_name(f".{path.name}.{os.getpid()}")
        part.write_text(text)
        part.chmod(mode)
        part.replace(path)  # whole, at once: the fake may be read meanwhile

    def set(self, memory_used, apps):
        """memory_used: MiB per GPU; apps: (GPU index, MiB) of each compute process."""
        self.write("gpus.csv", "".join(f"{i}, {UUIDS[i]}, NVIDIA H200, 143771, {used}, 0\n"
                                       for i, used in enumerate(memory_used)))
        self.write("apps.csv", "".join(f"{UUIDS[i]}, "
                                       f"{4000 + n}, {used}\n" for n, (i, used) in enumerate(apps)))

    def hook(self, present):
        """The NVIDIA Container Toolkit's hook on the users' PATH (only that: the engine has none)."""
        path = self.folder / "bin" / "nvidia-container-runtime-hook"
        if present:
            self.write("bin/nvidia-container-runtime-hook", "#!/bin/sh\nexit 0\n", mode=0o755)
        else:
            path.unlink(missing_ok=True)


@pytest.fixture
def fake_gpus(sandbox):
    folder = Path(sandbox.env["DOCKER_HOST"].removeprefix("unix://")).parents[1] / "gpu"
    assert (folder / "bin" / "nvidia-smi").is_file(), ("the sandbox has no fake nvidia-smi: "
                                                       "scripts/sandbox.sh start")
    saved = {name: (folder / name).read_text() for name in ("gpus.csv", "apps.csv")}
    fake = FakeGpus(folder)
    yield fake
    fake.hook(False)
    for name, text in saved.items():
        fake.write(name, text)
    smi = folder / "bin" / "nvidia-smi"
    if not smi.exists() and smi.with_name("nvidia-smi.off").exists():
        smi.with_name("nvidia-smi.off").rename(smi)


def run_cli(tmp_path, docker_run_args, cell):
    (tmp_path / "user_code.py").write_text(cell)
    env = {**os.environ, "PYSTRIBUTED_DOCKER_RUN_ARGS": docker_run_args}
    return subprocess.run([sys.executable, "-m", "pystributed", "run"], cwd=tmp_path, env=env,
                          capture_output=True,
                          text=True, check=False, timeout=600)


def the_run(tmp_path):
    [record] = (tmp_path / "results" / ".runs").glob("*.json")
    return json.loads(record.read_text())


def a_cell(tmp_path):
    return f"print('on the GPU', {str(tmp_path)!r})\n"  # of its own: an image no run pushed before


def assert_nothing_pushed_or_started(sandbox, proc, run):
    """Only `connect` and a failed `build` were shown (no push, pull or start step), and nothing of
    the run is left on the server."""
    assert [line.split()[0] for line in proc.stdout.splitlines() if line.strip()] == ["connect", "build"]
    assert proc.stdout.splitlines()[-1].startswith("build   here ... failed")
    if run["image"]:  # the tag it would have had (set only once the build's checks passed)
        assert run["image"].rsplit(":", 1)[1] not in sandbox.registry_tags()
    assert sandbox.docker("remote", "ps", "-aq", "--filter",
                          f"label=pystributed.run={run['run_id']}").stdout == ""
    assert sandbox.remote_shell(f"ls pystributed-runs/{run['run_id']} 2>&1 || true").strip().endswith(
        "No such file or directory")


def test_gpus_on_an_engine_without_the_toolkit_is_refused_before_the_push(sandbox, fake_gpus, tmp_path):
    proc = run_cli(tmp_path, "--gpus all", a_cell(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: gpus failed: `--gpus all` cannot work on pystributed-sandbox: its Docker engine has no " \
           "`nvidia` runtime" in proc.stderr
    assert "Nothing was pushed." in proc.stderr and "nvidia-ctk runtime configure" in proc.stderr
    assert "could not select device driver" not in proc.stderr
    run = the_run(tmp_path)
    assert run["status"] == "failed"
    assert_nothing_pushed_or_started(sandbox, proc, run)


def test_free_takes_the_gpu_no_process_uses_and_docker_run_gets_it(sandbox, fake_gpus, tmp_path):
    # GPU 0 holds a process that just started (14 MiB), 1 has memory used but no process, 2 and 3 are busy.
    fake_gpus.set([14, 500, 80000, 300], [(0, 14), (2, 79000), (3, 290)])
    fake_gpus.hook(True)
    proc = run_cli(tmp_path, "--shm-size 64m --gpus free", a_cell(tmp_path))
    run = the_run(tmp_path)
    name = f"pystributed-{run['run_id']}"
    try:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        steps = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
        assert steps[:6] == ["connect", "build", "push", "pull", "gpus", "run"], proc.stdout
        gpus_line = next(line for line in proc.stdout.splitlines() if line.startswith("gpus "))
        assert f"(took GPU 1 {UUIDS[1]}: no compute process, 500 MiB used)" in gpus_line
        # The sandbox's engine has no hook of its own: Docker fails to start the container it made.
        assert 'could not select device driver "" with capabilities: [[gpu]]' in proc.stderr
        inspect = sandbox.docker("remote", "container", "inspect", "--format",
                                 "{{json .HostConfig.DeviceRequests}}",
                                 name)
        assert json.loads(inspect.stdout) == [{"Driver": "", "Count": 0, "DeviceIDs": [UUIDS[1]],
                                               "Capabilities": [["gpu"]], "Options": {}}]
        assert run["config"]["DOCKER_RUN_ARGS"] == ["--shm-size", "64m", "--gpus", f"device={UUIDS[1]}"]
    finally:
        sandbox.docker("remote", "rm", "--force", name)


def test_the_pick_through_each_login_shell(login, fake_gpus):  # `login`: each of the sandbox's users in turn
    fake_gpus.set([7027, 1200, 300, 900], [(0, 7018), (1, 1100), (2, 280), (2, 10), (3, 800)])  # all busy
    place = ssh.Ssh(config.load())
    with place.connection() as place:
        found = place.call("gpus", step="gpus")
        gpu, why = gpus.choose(place)
    assert found.startswith("@@pystributed@@ toolkit\n") and "/gpu/bin/nvidia-smi\n" in found
    assert gpu.uuid == UUIDS[2]
    assert why == (f"took GPU 2 {UUIDS[2]}: all 4 GPUs have compute processes, this one uses the least "
                   "memory, 300 MiB (2 processes)")
    fake_gpus.set([0, 0], [])  # no compute process at all: nvidia-smi prints nothing, the first is taken
    with place.connection() as place:
        assert gpus.choose(place)[0].uuid == UUIDS[0]


def test_free_on_a_server_without_nvidia_smi_is_named_before_the_push(sandbox, fake_gpus, tmp_path):
    fake_gpus.hook(True)
    smi = fake_gpus.folder / "bin" / "nvidia-smi"
    smi.rename(smi.with_name("nvidia-smi.off"))  # put back by the fixture
    proc = run_cli(tmp_path, "--gpus free", a_cell(tmp_path))
    smi.with_name("nvidia-smi.off").rename(smi)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("error: gpus failed: `--gpus free` needs nvidia-smi on pystributed-sandbox, to see which GPUs "
            "are in use, and it is not on PATH there. Nothing was pushed.") in proc.stderr
    assert "--gpus '\"device=1\"'" in proc.stderr
    assert_nothing_pushed_or_started(sandbox, proc, the_run(tmp_path))
    # what the hint's shell words give
    assert shlex.split("--gpus '\"device=1\"'") == ["--gpus", '"device=1"']
