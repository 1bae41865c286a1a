"""scripts/sandbox.sh's usage, and its `uninstall`, without touching this machine's sandbox: the
sandbox's folders point into a temporary one, and the programs that would change the machine
(userdel, groupdel, pkill, ip) are stand-ins first on PATH that only write down how they were
called; `id` and `getent` answer that every user and group exists."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "scripts" / "sandbox.sh"
MODES = ["install", "install --all", "start [--swarm|--slurm]", "env", "status", "stop", "clean", "uninstall"]
USERS = ["pystributed", "pystributed-fish", "pystributed-tcsh", "pystributed-noisy", "pystributed-podman",
         "pystributed-swarm", "pystributed-slurm"]


def test_help_names_every_mode():
    shown = subprocess.run([str(SANDBOX), "--help"], capture_output=True, text=True, check=True).stdout
    for mode in MODES:
        assert f"\n  {mode}" in shown, mode
    wrong = subprocess.run([str(SANDBOX), "nonsense"], capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage:") and "uninstall" in wrong.stderr


def test_the_demo_installs_the_sandbox_alone_and_the_tests_the_rest():
    shown = subprocess.run([str(SANDBOX), "--help"], capture_output=True, text=True, check=True).stdout
    demo = next(line for line in shown.splitlines() if line.startswith("  install  "))
    assert demo.split(": ")[1].split() == ["docker.io", "docker-registry", "openssh-server", "debootstrap"]
    tests = next(line for line in shown.splitlines() if line.startswith("  install --all"))
    for package in ("fish", "tcsh", "zsh", "podman", "slurmd", "munge", "chromium", "rsync", "shellcheck"):
        assert package in tests.split(": ")[1].split()
    # test.sh (CI: .ci/run) installs everything; the demo the sandbox alone.
    assert "scripts/sandbox.sh install --all\n" in (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/sandbox.sh install\n" in (ROOT / "scripts" / "demo.sh").read_text()


@pytest.fixture
def machine(tmp_path):
    """{env, calls (the stand-ins' log), sandbox, cache}: the sandbox's state folders made, as a
    started sandbox leaves them, with a record of two packages install added."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name in ("userdel", "groupdel", "pkill", "ip", "id", "getent"):
        answer = 'if [ "$1" = -u ]; then echo 0; fi\n' if name == "id" else ""
        (stubs / name).write_text(f'#!/bin/sh\n{answer}echo "{name} $*" >>{calls}\n')
        (stubs / name).chmod(0o755)
    sandbox, cache = tmp_path / "sandbox", tmp_path / "cache"
    for folder in (sandbox / "ssh", sandbox / "slurm" / "ctld", sandbox / "swarm", cache / "local-engine"):
        folder.mkdir(parents=True)
    (cache / "installed-packages").write_text("zsh\nfish\nzsh\n")
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PYSTRIBUTED_SANDBOX": str(sandbox),
           "PYSTRIBUTED_SANDBOX_CACHE": str(cache)}
    env.pop("PYSTRIBUTED_SANDBOX_USER", None)
    for name in ("userdel", "groupdel", "pkill", "ip"):  # the stand-ins, never the machine's
        where = subprocess.run(["sh", "-c", f"command -v {name}"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        assert where == str(stubs / name)
    return {"env": env, "calls": calls, "sandbox": sandbox, "cache": cache}


def changes(machine):
    """The calls of the stand-ins that change the machine (not id's, getent's questions)."""
    log = machine["calls"].read_text().splitlines() if machine["calls"].exists() else []
    return [line for line in log if not line.startswith(("id ", "getent "))]


def test_uninstall_dry_run_prints_its_plan_and_changes_nothing(machine):
    proc = subprocess.run([str(SANDBOX), "uninstall", "--dry-run"], env=machine["env"], capture_output=True,
                          text=True, check=True)
    plan = proc.stdout.splitlines()
    assert plan[:3] == [f"would run: {ROOT}/scripts/slurm_rig.sh clean",
                        f"would run: {ROOT}/scripts/swarm_rig.sh clean", "would run: stop"]
    for user in USERS:
        assert f"would run: pkill -KILL -u {user}" in plan and f"would run: userdel --remove {user}" in plan
    assert "would run: groupdel pystributed" in plan
    assert f"would run: rm -rf {machine['sandbox']} {machine['cache']}" in plan
    assert plan[-1] == "apt-get remove fish zsh"  # listed, never removed
    assert changes(machine) == []
    assert machine["sandbox"].is_dir() and (machine["cache"] / "installed-packages").is_file()


def test_uninstall_deletes_its_users_and_state_and_lists_the_packages(machine):
    proc = subprocess.run([str(SANDBOX), "uninstall"], env=machine["env"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    done = changes(machine)
    for user in USERS:
        assert done.index(f"pkill -KILL -u {user}") < done.index(f"userdel --remove {user}")
    assert {f"groupdel {group}" for group in ("pystributed", "pystributed-podman", "pystributed-swarm",
                                              "pystributed-slurm")} <= set(done)
    assert not machine["sandbox"].exists() and not machine["cache"].exists()
    assert proc.stdout == "apt-get remove fish zsh\n"
    assert "removes no package" in proc.stderr
