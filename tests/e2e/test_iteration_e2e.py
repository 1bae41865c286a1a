"""Reruns cost little: nothing rebuilt, pushed or pulled that is there; one ssh connection."""
import json
import subprocess
import sys

import pytest


def run(*args):
    proc = subprocess.run([sys.executable, "-m", "pystributed", "run", *args], capture_output=True, text=True,
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def project(sandbox, tmp_path):
    (tmp_path / "user_code.py").write_text("print('version 1')\n")
    return tmp_path


def test_a_rerun_without_change_builds_pushes_and_pulls_nothing(project):
    assert "version 1" in run()
    second = run()
    assert "version 1" in second
    lines = {line.split()[0]: line for line in second.splitlines() if line[:1].isalpha()}
    assert lines["build"].endswith("(up to date)")
    assert lines["push"].endswith("(already there)") and lines["pull"].endswith("(already there)")
    images = [json.loads(p.read_text())["image"] for p in (project / "results" / ".runs").glob("*.json")]
    assert len(images) == 2 and images[0] == images[1]


def test_a_code_change_makes_a_new_image_sharing_all_but_the_top_layer(project, sandbox):
    run()
    (project / "user_code.py").write_text("print('version 2')\n")
    assert "version 2" in run()
    images = sorted(json.loads(p.read_text())["image"] for p in (project / "results" / ".runs").glob("*.json"))
    assert images[0] != images[1]
    layers = [sandbox.docker("local", "image", "inspect", "--format", "{{json .RootFS.Layers}}", i).stdout
              for i in images]
    first, second = (json.loads(x) for x in layers)
    assert first[:-1] == second[:-1] and first[-1] != second[-1]


def test_one_ssh_connection_per_run(project, sandbox, monkeypatch):
    logins = sandbox.counting_logins(monkeypatch)
    run()
    assert logins() == 1


def test_remote_build_needs_no_registry(project, sandbox, monkeypatch):
    # The base image comes from Docker Hub on a real server; the sandbox's has no network.
    base = sandbox.env["PYSTRIBUTED_BASE_IMAGE"]
    if sandbox.docker("remote", "image", "inspect", base).returncode:
        saved = subprocess.run(["docker", "-H", sandbox.env["DOCKER_HOST"], "save", base], capture_output=True,
                               check=True).stdout
        subprocess.run(["docker", "-H", sandbox.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"], "load"],
                       input=saved, capture_output=True, check=True)
    monkeypatch.setenv("PYSTRIBUTED_TRANSPORT", "remote-build")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "")
    (project / "user_code.py").write_text("print('built on the server')\n")
    out = run()
    assert "built on the server" in out and "push" not in out and "pull" not in out
    image = next(json.loads(p.read_text())["image"] for p in (project / "results" / ".runs").glob("*.json"))
    assert image.startswith("pystributed:")
    assert sandbox.docker("remote", "image", "inspect", image).returncode == 0
    assert sandbox.docker("local", "image", "inspect", image).returncode != 0
