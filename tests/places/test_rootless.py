"""Rootless engines (rootless Docker, Podman run by a user): a container run as the ssh user's uid
runs there as a subordinate uid that cannot write the run folder. server.sh's rundir answers
`rootless` for such an engine, and the container then runs as its root, which is the ssh user."""
import json
import os
import stat

import pytest

from pystributed import config
from pystributed.places import local, ssh

RUN_ID = "20261125-101502-3fa9c1"
DOCKER_ROOTLESS = {"ID": "x", "SecurityOptions": ["name=seccomp,profile=default", "name=rootless",
                                                  "name=cgroupns"]}
DOCKER_ROOTFUL = {"ID": "x", "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"]}
PODMAN_ROOTLESS = {"host": {"security": {"rootless": True, "seccompEnabled": True}}}
PODMAN_ROOTFUL = {"host": {"security": {"rootless": False, "seccompEnabled": True}}}


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs")


@pytest.mark.parametrize("answer, user", [
    ("/home/me/runs/r\n1000\n1000\nrootless\n", "0:0"),
    ("/home/me/runs/r\n1000\n1000\n", "1000:1000"),  # a rootful engine (or the user is root)
])
def test_the_container_runs_as_root_on_a_rootless_engine(cfg, programs, answer, user):
    programs.expect("server", "rundir", "runs", RUN_ID, out=answer)
    assert ssh.Ssh(cfg).prepare(RUN_ID) == ("/home/me/runs/r", user)


def fake_bin(tmp_path, info, *, uid="1000", info_code=0):
    """`docker info --format '{{json .}}'` answering `info`, and `id` answering `uid`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (tmp_path / "info.json").write_text(json.dumps(info, indent=2 if "host" in info else None))
    scripts = {
        "docker": f'#!/bin/sh\necho "$*" >>{tmp_path}/docker.log\n'
                  f'[ "$1 $2 $3" = "info --format {{{{json .}}}}" ] || exit 2\ncat {tmp_path}/info.json\n'
                  f"exit {info_code}\n",
        "id": f'#!/bin/sh\ncase $1 in -u) echo {uid} ;; -g) echo 1000 ;; esac\n',
    }
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)
    return folder


@pytest.mark.parametrize("info, user", [
    (DOCKER_ROOTLESS, "0:0"), (PODMAN_ROOTLESS, "0:0"), (DOCKER_ROOTFUL, "1000:1000"),
    (PODMAN_ROOTFUL, "1000:1000"),
], ids=["docker-rootless", "podman-rootless", "docker", "podman-as-root"])
def test_server_sh_tells_a_rootless_engine(tmp_path, monkeypatch, info, user):
    monkeypatch.setenv("PATH", f"{fake_bin(tmp_path, info)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="runs")
    path, got = local.Local(cfg).prepare(RUN_ID)
    assert path == str(tmp_path / "runs" / RUN_ID) and os.path.isdir(path)
    assert got == user


def test_an_engine_that_does_not_answer_is_taken_as_rootful(tmp_path, monkeypatch):
    # Docker down: the run goes on to its pull, which says so with its own hint.
    monkeypatch.setenv("PATH", f"{fake_bin(tmp_path, {}, info_code=1)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="runs")
    assert local.Local(cfg).prepare(RUN_ID)[1] == "1000:1000"


def test_root_is_not_asked(tmp_path, monkeypatch):
    # As root the container runs as root anyway: no `docker info` on every run.
    monkeypatch.setenv("PATH",
                       f"{fake_bin(tmp_path, DOCKER_ROOTLESS, uid='0')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="runs")
    assert local.Local(cfg).prepare(RUN_ID)[1] == "0:1000"
    assert not (tmp_path / "docker.log").exists()
