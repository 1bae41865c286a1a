"""One server over ssh: the exact ssh argument lists, and the shared connection of one run."""
import os
import re
import tempfile

import pytest

from pystributed import config
from pystributed.errors import StepError
from pystributed.places import place_for, server, ssh

RUN_ID = "20261125-101502-3fa9c1"
DEFAULTS = ["-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                       SSH_OPTIONS=["-F", "/cfg", "-o", "Port=2222"])


def test_the_login_shell_gets_one_fixed_line_after_the_users_options_ours_and_dashdash(cfg):
    place = ssh.Ssh(cfg)
    assert place.name == "gpu-box" and isinstance(place_for(cfg), ssh.Ssh)
    assert place.argv(1234) == ["ssh", "-F", "/cfg", "-o", "Port=2222", *DEFAULTS, "--", "gpu-box",
                                f"sh -c '{server.LOADER.format(1234)}'"]


def test_an_action_goes_over_ssh(cfg, programs):
    programs.expect("server", "rundir", "runs", RUN_ID, out="/home/me/runs/r\n1000\n1000\n")
    assert ssh.Ssh(cfg).prepare(RUN_ID) == ("/home/me/runs/r", "1000:1000")
    program = server.program("rundir", "runs", RUN_ID)
    assert programs.calls[0].argv == ssh.Ssh(cfg).argv(len(program)) and programs.calls[0].cwd is None


def test_what_to_check_when_ssh_fails(cfg):
    assert ssh.Ssh(cfg).hint() == ("Check that `ssh gpu-box` works from a terminal here without a password "
                                   "prompt (a key, or ssh-agent), and that the server's host key is "
                                   "in known_hosts.")


def test_one_run_shares_one_connection_that_it_starts_and_ends(cfg, programs):
    programs.expect("ssh", "-G", "-F", "/cfg", "-o", "Port=2222", "--", "gpu-box",
                    out="controlmaster false\n")
    programs.expect("ssh", ...)
    programs.expect("server", "stop", RUN_ID)
    programs.expect("ssh", ...)
    with ssh.Ssh(cfg).connection() as shared:
        folder = re.fullmatch(r"ControlPath=(.*)/%C", shared.config.SSH_OPTIONS[-1]).group(1)
        assert os.path.isdir(folder) and os.stat(folder).st_mode & 0o777 == 0o700
        socket = ["-o", f"ControlPath={folder}/%C"]
        assert programs.calls[1].argv == ["ssh", "-F", "/cfg", "-o", "Port=2222", *socket, *DEFAULTS,
                                          "-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-N", "-f",
                                          "--",
                                          "gpu-box"]
        assert programs.calls[1].step == "connect"
        shared.stop(RUN_ID)
        assert programs.calls[2].argv[:-1] == ["ssh", "-F", "/cfg", "-o", "Port=2222", *socket, *DEFAULTS,
                                               "--",
                                               "gpu-box"]
    assert programs.calls[3].argv == ["ssh", "-F", "/cfg", "-o", "Port=2222", *socket, "-O", "exit", "--",
                                      "gpu-box"]
    assert not os.path.exists(folder)


def test_the_connection_ends_when_the_run_fails(cfg, programs):
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ...)
    programs.expect("server", "stop", RUN_ID, code=1)
    programs.expect("ssh", ...)
    with pytest.raises(StepError), ssh.Ssh(cfg).connection() as shared:
        shared.stop(RUN_ID)
    assert programs.calls[-1].argv[-4:] == ["-O", "exit", "--", "gpu-box"]


def test_a_master_that_cannot_start_fails_the_connect_step_and_leaves_nothing(cfg, programs, monkeypatch,
                                                                              tmp_path):
    monkeypatch.setattr(ssh, "_short_tmp", lambda: str(tmp_path))
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ..., code=255, stderr="ssh: connect to host gpu-box port 22: Connection refused")
    programs.expect("ssh", ...)
    with pytest.raises(StepError) as error, ssh.Ssh(cfg).connection():
        pytest.fail("no connection, nothing to run")
    assert error.value.step == "connect" and error.value.code == 255
    assert error.value.hint.startswith("Check that `ssh gpu-box` works from a terminal here")
    assert programs.calls[-1].argv[-4:] == ["-O", "exit", "--", "gpu-box"]
    assert list(tmp_path.iterdir()) == []


def test_a_users_own_multiplexing_is_used_as_it_is(cfg, programs):
    programs.expect("ssh", "-G", "-F", "/cfg", "-o", "Port=2222", "--", "gpu-box",
                    out="user me\ncontrolmaster auto\ncontrolpath /home/me/.ssh/cm-%C\n")
    programs.expect("server", "stop", RUN_ID)
    with ssh.Ssh(cfg).connection() as place:
        place.stop(RUN_ID)
    assert programs.calls[1].argv[:-1] == ["ssh", "-F", "/cfg", "-o", "Port=2222", *DEFAULTS, "--", "gpu-box"]


def test_a_remote_command_of_the_users_ssh_config_is_set_aside(cfg, programs):
    # `RemoteCommand tmux new -A` for logging in: ssh would refuse a command of ours besides it.
    programs.expect("ssh", "-G", "-F", "/cfg", "-o", "Port=2222", "--", "gpu-box",
                    out="requesttty force\nremotecommand tmux new -A -s main\ncontrolmaster auto\n"
                        "controlpath /home/me/.ssh/cm-%C\n")
    programs.expect("server", "stop", RUN_ID)
    with ssh.Ssh(cfg).connection() as place:
        place.stop(RUN_ID)
    assert programs.calls[1].argv[:-1] == ["ssh", "-F", "/cfg", "-o", "Port=2222", "-o", "RemoteCommand=none",
                                           *DEFAULTS, "--", "gpu-box"]  # and -T: never a terminal
    assert DEFAULTS[0] == "-T"


@pytest.mark.parametrize("settings", ["controlmaster false\ncontrolpath /x/%C\n", "controlmaster auto\n",
                                      "controlmaster auto\ncontrolpath none\n", ""])
def test_no_multiplexing_of_the_users_means_ours(cfg, programs, settings):
    programs.expect("ssh", "-G", ..., out=settings)
    assert not ssh.multiplexed(ssh.Ssh(cfg).settings())


def test_the_socket_folder_stays_short_where_tmpdir_is_long(cfg, programs, monkeypatch, tmp_path):
    # macOS's TMPDIR is about 50 characters: with the 40 of %C and the 17 ssh adds while it binds
    # the socket, a path there is longer than the 104 bytes a Unix socket's path may have.
    long_tmp = tmp_path / ("t" * max(1, 60 - len(str(tmp_path))))
    long_tmp.mkdir()
    assert len(str(long_tmp)) >= 49
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ...)
    programs.expect("ssh", ...)
    with ssh.Ssh(cfg).connection() as shared:
        path = re.fullmatch(r"ControlPath=(.*)", shared.config.SSH_OPTIONS[-1]).group(1)
    folder = path.removesuffix("/%C")
    assert os.path.dirname(folder) == "/tmp"
    assert len(f"{folder}/{'c' * 40}") + 17 < 104


def test_without_a_writable_tmp_the_socket_goes_where_tempfile_says(monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert ssh._short_tmp() is None
    monkeypatch.undo()
    assert ssh._short_tmp() == "/tmp"


def test_a_server_without_docker_on_an_ssh_commands_path_says_how_to_check(cfg, programs):
    programs.expect("server", "docker_command", "pull", "x:1", code=127, stderr="sh: 1: docker: not found\n")
    with pytest.raises(StepError) as error:
        ssh.Ssh(cfg).docker(["docker", "pull", "x:1"], step="pull", hint="the caller's hint")
    assert error.value.hint == (
        "`docker` is not installed on gpu-box, or not on the PATH a command over ssh gets there (`ssh "
        "gpu-box command -v docker` shows it): install Docker Engine (or Podman with its `docker` command), "
        "or put its folder on PATH in a startup file that non-interactive shells read.")
