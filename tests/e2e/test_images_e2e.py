"""Base images as they are in the field, on the sandbox: one rebuilt under the same tag (the run must
build again, on the new base, with either transport, and --cache must run again), one with python3
but no `python` (and no `pip`: Ubuntu's, CUDA images with Python added), one with no Python at all
(named before anything is pushed). Each image is made from the sandbox's base by a Dockerfile."""
import json
import os
import subprocess
import sys
import urllib.error
import uuid

import pytest
from wheels import make_wheel

from pystributed import config, features, pipeline
from pystributed import docker as docker_module

PYTHON3_ONLY = "pystributed-test/python3-only:1"
NO_PYTHON = "pystributed-test/no-python:1"
MOVING = "pystributed-test/moving-base:latest"
IMAGES = {
    PYTHON3_ONLY: "RUN rm -f /usr/bin/python /usr/bin/pip",  # python3 and pip3 stay
    NO_PYTHON: "RUN rm -f /usr/bin/python /usr/bin/python3* /usr/bin/pip*",
}
CELL = "print('base is', open('/base-version').read().strip())\n"


def docker(sandbox, engine, *args, stdin=None):
    host = (sandbox.env["DOCKER_HOST"]
            if engine == "local" else sandbox.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"])
    return subprocess.run(["docker", "-H", host, *args], input=stdin, capture_output=True, check=True)


def build_image(sandbox, engine, tag, step):
    """Build `tag` on an engine from the sandbox's base image and one Dockerfile step."""
    dockerfile = f"FROM {sandbox.env['PYSTRIBUTED_BASE_IMAGE']}\n{step}\n"
    docker(sandbox, engine, "build", "--quiet", "--tag", tag, "-", stdin=dockerfile.encode())
    return docker(sandbox, engine, "image", "inspect", "--format", "{{.Id}}", tag).stdout.decode().strip()


@pytest.fixture(scope="module")
def images(sandbox_env):
    """The images above on the local engine: made once, kept by tag for later sessions."""
    class Env:
        env = sandbox_env

    for tag, step in IMAGES.items():
        if subprocess.run(["docker", "-H", sandbox_env["DOCKER_HOST"], "image", "inspect", tag],
                          capture_output=True, check=False).returncode:
            build_image(Env, "local", tag, step)
    return IMAGES


def moved(sandbox, engine="local"):
    """Rebuild MOVING under the same tag, with new content; what /base-version says in it."""
    token = uuid.uuid4().hex[:8]
    build_image(sandbox, engine, MOVING, f"RUN echo {token} > /base-version")
    return token


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                          check=False, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def step_line(out, step):
    return next(line for line in out.splitlines() if line.startswith(f"{step:<8}"))


def test_a_base_rebuilt_under_its_tag_makes_an_unchanged_cell_build_again(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", MOVING)
    (tmp_path / "user_code.py").write_text(CELL)
    first = moved(sandbox)
    assert f"base is {first}\n" in cli("run").stdout
    second = moved(sandbox)  # the same tag, another image
    out = cli("run").stdout
    assert f"base is {second}\n" in out and not step_line(out, "build").endswith("(up to date)")
    out = cli("run").stdout  # nothing moved: nothing built
    assert f"base is {second}\n" in out and step_line(out, "build").endswith("(up to date)")


def test_with_remote_build_the_servers_base_counts(sandbox, tmp_path, monkeypatch):
    base = sandbox.env["PYSTRIBUTED_BASE_IMAGE"]
    if subprocess.run(["docker", "-H", sandbox.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"], "image",
                       "inspect",
                       base], capture_output=True, check=False).returncode:
        docker(sandbox, "remote", "load", stdin=docker(sandbox, "local", "save", base).stdout)
    monkeypatch.setenv("PYSTRIBUTED_TRANSPORT", "remote-build")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "")
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", MOVING)
    (tmp_path / "user_code.py").write_text(CELL)
    moved(sandbox)  # here: not what the server builds on
    first = moved(sandbox, "remote")
    assert f"base is {first}\n" in cli("run").stdout
    second = moved(sandbox, "remote")
    out = cli("run").stdout
    assert f"base is {second}\n" in out and not step_line(out, "build").endswith("(up to date)")


def test_cache_runs_again_on_a_moved_base(sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", MOVING)
    (tmp_path / "user_code.py").write_text(CELL)

    def cached_run():
        cfg = config.load()
        return pipeline.run(cfg, quiet=True, features=features.for_run(cfg, cache=True))

    moved(sandbox)
    first = cached_run()
    assert cached_run().run_id == first.run_id  # reused
    second = moved(sandbox)
    again = cached_run()
    assert again.run_id != first.run_id
    assert (again.local_path / "output.log").read_text() == f"base is {second}\n"


def test_an_image_with_python3_but_no_python_just_works(sandbox, images, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", PYTHON3_ONLY)
    wheel = make_wheel(tmp_path)
    (tmp_path / "requirements.txt").write_text(f"./{wheel.name}\n")
    monkeypatch.setenv("PYSTRIBUTED_REQUIREMENTS", "requirements.txt")
    (tmp_path / "user_code.py").write_text(
        "import shutil, sys, pystributed_demo_dep\n"
        "print('ran by', sys.executable, 'python on PATH:', shutil.which('python'), "
        "pystributed_demo_dep.VERSION)\n")
    out = cli("run").stdout
    assert "ran by /usr/bin/python3 python on PATH: None 1.2.3\n" in out


def test_an_image_with_python3_only_sends_values_back(sandbox, images, tmp_path, monkeypatch):
    from pystributed.features import values

    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", PYTHON3_ONLY)
    (tmp_path / "user_code.py").write_text("answer = seed * 6\nanswer\n")
    namespace = {"seed": 7}
    cfg = config.load()
    exchange = values.Exchange(inputs="seed", out="answer", namespace=namespace)
    result = pipeline.run(cfg, quiet=True, features=features.for_run(cfg, exchange=exchange))
    assert namespace["answer"] == 42 and result.value == 42


def test_an_image_without_python_is_named_before_anything_is_pushed(sandbox, images, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", NO_PYTHON)
    # An image name of its own: the registry's other names are other tests' to push to meanwhile.
    name = f"pystributed-test-no-python-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_IMAGE_NAME", name)
    (tmp_path / "user_code.py").write_text(f"print('never runs {uuid.uuid4().hex}')\n")
    proc = cli("run", check=False)
    assert proc.returncode == 1
    assert (f"BASE_IMAGE {NO_PYTHON} has neither python3 nor python on its PATH" in proc.stderr
            and "apt-get install -y python3" in proc.stderr), proc.stdout + proc.stderr
    assert step_line(proc.stdout, "build").startswith("build   here ... failed")
    assert "push" not in proc.stdout and "never runs" not in proc.stdout + proc.stderr
    with pytest.raises(urllib.error.HTTPError, match="404"):  # nothing pushed: no such image in the registry
        sandbox.registry_tags(name)


def test_a_base_here_of_another_platform_is_built_for_the_servers(sandbox, tmp_path, monkeypatch):
    """A laptop whose engine is another architecture than the server's (an Apple Silicon Mac, an
    x86_64 GPU server): BASE_IMAGE, published for both in its registry, is here as the laptop's
    variant. That variant is a file on `scratch` (nothing of it can run: no shell); the server's is
    the sandbox's base. The image must be built, pushed and run as the server's platform."""
    server = docker_module.platform_of(os.uname().machine)  # the sandbox's server is this machine
    other = "linux/arm64" if server == "linux/amd64" else "linux/amd64"
    multi = f"{sandbox.env['PYSTRIBUTED_DOCKER_REGISTRY']}/pystributed-test/multi-platform:latest"
    variants = {server: f"FROM {sandbox.env['PYSTRIBUTED_BASE_IMAGE']}\nRUN echo {server} > /base-version\n",
                other: "FROM scratch\nCOPY Dockerfile /base-version\n"}
    for platform, dockerfile in variants.items():
        tag = f"{multi}-{platform.replace('/', '-')}"
        docker(sandbox, "local", "build", "--quiet", "--platform", platform, "--tag", tag, "-",
               stdin=dockerfile.encode())
        docker(sandbox, "local", "push", "--quiet", tag)
    tags = [f"{multi}-{p.replace('/', '-')}" for p in variants]
    docker(sandbox, "local", "manifest", "create", "--insecure", "--amend", multi, *tags)
    docker(sandbox, "local", "manifest", "push", "--insecure", "--purge", multi)
    docker(sandbox, "local", "pull", "--quiet", "--platform", other, multi)  # what the laptop has

    def platform_of(engine, ref):
        return docker(sandbox, engine, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}",
                      ref).stdout.decode().strip()

    assert platform_of("local", multi) == other
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", multi)
    (tmp_path / "user_code.py").write_text(CELL)
    out = cli("run").stdout
    assert f"base is {server}\n" in out
    image = next(json.loads(p.read_text())["image"] for p in (tmp_path / "results" / ".runs").glob("*.json"))
    assert platform_of("remote", image) == server and platform_of("local", image) == server
    out = cli("run").stdout  # the base here is now the server's variant: the same image, up to date
    assert f"base is {server}\n" in out and step_line(out, "build").endswith("(up to date)")
