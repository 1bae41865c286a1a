"""REMOTE_SERVER = "local": the same server.sh, run by `sh` here, in the home folder."""
import os

from pystributed import config
from pystributed.places import local, place_for, server

RUN_ID = "20261125-101502-3fa9c1"


def settings(**kwargs):
    return config.load(environ={}, REMOTE_SERVER="local", **kwargs)


def test_sh_runs_the_program_in_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    place = place_for(settings())
    assert isinstance(place, local.Local) and place.name == "the local engine"
    assert place.argv(99) == ["sh", "-c", server.LOADER.format(99)]
    assert place.cwd == str(tmp_path / "me")
    assert place.hint() == ""


def test_an_action_runs_through_sh_with_no_ssh(programs, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    programs.expect("server", "rundir", "pystributed-runs", RUN_ID, out=f"{tmp_path}/r\n1\n1\n")
    place = local.Local(settings())
    with place.connection() as same:  # nothing to share: the place itself
        assert same is place
        same.prepare(RUN_ID)
    call = programs.calls[0]
    assert call.argv == ["sh", "-c", server.LOADER.format(len(server.program("rundir", "pystributed-runs",
                                                                             RUN_ID)))]
    assert call.cwd == str(tmp_path)


def test_a_relative_workdir_is_the_homes_not_the_notebooks(monkeypatch, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "notebook").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "notebook")
    path, user = local.Local(settings(REMOTE_WORKDIR="my runs")).prepare(RUN_ID)
    assert path == str(tmp_path / "home" / "my runs" / RUN_ID) and os.path.isdir(path)
    assert user == f"{os.getuid()}:{os.getgid()}"
    assert not (tmp_path / "notebook" / "my runs").exists()
