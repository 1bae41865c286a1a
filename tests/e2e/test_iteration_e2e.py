"""Reruns cost little: nothing rebuilt, pushed or pulled that is there (a changed cell's files go over the
image of before); one ssh connection."""
import hashlib
import json
import subprocess
import sys

import pytest

from pystributed import context


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


def records(project):
    """The runs' records in the order they started: by `started` (UTC, to the millisecond), not by run id,
    whose clock steps by a second (two runs of one second would sort by their ids' random part)."""
    found = [json.loads(p.read_text()) for p in (project / "results" / ".runs").glob("*.json")]
    return sorted(found, key=lambda r: (r["started"], r["run_id"]))


SEES_ITSELF = ("import hashlib\n"
               "print('version {n}', hashlib.sha256(open('/app/user_code.py', 'rb').read()).hexdigest())\n")


def test_a_code_change_builds_nothing_the_cells_files_go_over_the_earlier_image(project, sandbox,
                                                                                 monkeypatch):
    # A folder and an image name of its own: clean's survey sees no other test's run starting, and
    # what clean removes is this test's alone.
    workdir = f"pystributed-runs/{project.name}"
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", workdir)
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_IMAGE_NAME", "pystributed-cells-test")
    run()
    (project / "user_code.py").write_text(SEES_ITSELF.format(n=2))
    out = run()
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert "not needed: the cell's files go over" in lines["build"]
    assert "push" not in lines and "pull" not in lines
    # The container read the new cell at its place in the image, and only the new one.
    sha = hashlib.sha256((project / "user_code.py").read_bytes()).hexdigest()
    assert f"version 2 {sha}" in out, out
    first, second = records(project)
    assert second["image"] == first["image"] and second["image_digest"] == first["image_digest"]
    files = context.cell_layer("user_code.py", (project / "user_code.py").read_text())
    assert second["cell_archive"] == hashlib.sha256(context.cell_archive(files)).hexdigest() != ""
    kept = sandbox.remote_shell(f"cat {workdir}/.cells/{second['cell_archive']}/app/user_code.py")
    assert kept == (project / "user_code.py").read_text()  # kept by its hash on the server: run.json names it
    assert first["cell_archive"] == ""  # the first run built its image
    # clean leaves the cell's files while a run used them within the hour, then removes them; the
    # next run of the same cell sends them again.
    folder = f"{workdir}/.cells/{second['cell_archive']}"
    assert "cell files" not in clean()
    sandbox.remote_shell(f"touch -d '2 hours ago' {folder}")
    assert f"/{folder}  (unused for an hour; a rerun sends them again)" in clean()
    assert sandbox.remote_shell(f"test -d {folder} || echo gone") == "gone\n"
    assert f"version 2 {sha}" in run()
    assert sandbox.remote_shell(f"cat {folder}/app/user_code.py") == (project / "user_code.py").read_text()


NOTEBOOK = '{{"cells": [{{"cell_type": "code", "source": ["{source}"]}}], "nbformat": 4}}\n'
SEES_THE_NOTEBOOK = "import os\nprint('version {n}', os.path.exists('/app/sweep.ipynb'))\n"


def test_a_code_change_with_the_notebook_re_saved_beside_it_builds_pushes_and_pulls_nothing(project):
    # As people work: Jupyter saves the notebook (autosave, Ctrl-S) as its cell changes. The notebook is
    # not in the image, so the folder's layer stays the same and the rerun takes the no-build path.
    (project / "sweep.ipynb").write_text(NOTEBOOK.format(source="version 1"))
    (project / "user_code.py").write_text(SEES_THE_NOTEBOOK.format(n=1))
    assert "version 1 False" in run()
    (project / "sweep.ipynb").write_text(NOTEBOOK.format(source="version 2, saved"))
    (project / "user_code.py").write_text(SEES_THE_NOTEBOOK.format(n=2))
    out = run()
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert "not needed: the cell's files go over" in lines["build"], out
    assert "push" not in lines and "pull" not in lines and "version 2 False" in out
    first, second = records(project)
    assert second["image"] == first["image"] and second["cell_archive"] != ""
    # A cell that reads a notebook names it in .dockerignore: the folder changed, so that run builds.
    (project / ".dockerignore").write_text("!sweep.ipynb\n")
    out = run()
    assert "version 2 True" in out and "not needed" not in out


def clean():
    proc = subprocess.run([sys.executable, "-m", "pystributed", "clean", "--yes"], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_code_change_whose_earlier_image_is_gone_builds_one_sharing_all_but_the_top_layer(project, sandbox):
    run()
    first = records(project)[0]["image"]
    assert sandbox.docker("remote", "image", "rm", first).returncode == 0  # `clean` on the server, say
    (project / "user_code.py").write_text("print('version 2')\n")
    out = run()
    assert "version 2" in out and "not needed" not in out and "pull" in out
    images = [r["image"] for r in records(project)]
    assert images[0] != images[1] and images[0].split(":")[1][:16] == images[1].split(":")[1][:16]
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
        saved = subprocess.run(["docker", "-H", sandbox.env["DOCKER_HOST"], "save", base],
                               capture_output=True, check=True).stdout
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
    # a change: nothing built on the server either
    (project / "user_code.py").write_text(SEES_ITSELF.format(n=3))
    out = run()
    assert "not needed: the cell's files go over" in out and "version 3" in out
    assert [r["image"] for r in records(project)] == [image, image]
