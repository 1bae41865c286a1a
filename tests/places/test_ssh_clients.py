"""Laptops as users have them. macOS: TMPDIR is about 50 characters, and a Unix socket's path may have
103 bytes there: the shared connection's socket (FOLDER/%C, and 17 more that ssh adds while it binds
it) must fit whatever TMPDIR is, and whether or not /tmp is writable. Windows' own OpenSSH cannot share
a connection (no ControlMaster): each command then opens its own, and a note says so once."""
import os
import re
import shutil
import tempfile

import pytest

from pystributed import config
from pystributed.places import ssh

RUN_ID = "20261125-101502-3fa9c1"
MACOS_TMPDIR_LENGTH = len("/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/")  # 49


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                       SSH_OPTIONS=["-F", "/cfg"])


@pytest.fixture(autouse=True)
def note_not_given_yet(monkeypatch):
    monkeypatch.setattr(ssh, "_NOTED", [])


@pytest.fixture
def short_home(monkeypatch):
    home = tempfile.mkdtemp(prefix="h", dir="/tmp")  # /tmp/hXXXXXXXX: short, as most homes are
    os.mkdir(os.path.join(home, ".ssh"), 0o700)
    monkeypatch.setenv("HOME", home)
    yield home
    shutil.rmtree(home)


@pytest.fixture
def long_tmpdir(monkeypatch, tmp_path):
    folder = tmp_path / ("T" * max(1, MACOS_TMPDIR_LENGTH - len(str(tmp_path)) - 1))
    folder.mkdir()
    assert len(str(folder)) >= MACOS_TMPDIR_LENGTH - 1
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    return str(folder)


def writable_only(monkeypatch, *allowed):
    real = os.access
    monkeypatch.setattr(ssh.os, "access", lambda path, mode: path in allowed and real(path, mode))


def socket_path(folder):
    """The longest path ssh makes for the socket: FOLDER/%C (40 hex digits), while binding 17 more."""
    return f"{folder}/{'c' * 40}.{'x' * 16}"


@pytest.mark.parametrize("writable, where", [
    (["/tmp", "/var/tmp", "~/.ssh", "TMPDIR"], "/tmp"),
    (["/var/tmp", "~/.ssh", "TMPDIR"], "/var/tmp"),
    (["~/.ssh", "TMPDIR"], "~/.ssh"),
    (["TMPDIR"], None),  # macOS's TMPDIR is too long for the socket: no folder, one connection per command
    ([], None),
])
def test_the_socket_path_always_fits_a_unix_socket(monkeypatch, short_home, long_tmpdir, writable, where):
    names = {"/tmp": "/tmp", "/var/tmp": "/var/tmp", "~/.ssh": f"{short_home}/.ssh", "TMPDIR": long_tmpdir}
    writable_only(monkeypatch, *(names[name] for name in writable))
    folder, why = ssh._socket_folder()
    try:
        if where is None:
            assert folder is None and "short enough" in why
        else:
            assert os.path.dirname(folder) == names[where] and why == ""
            assert os.stat(folder).st_mode & 0o777 == 0o700
            assert len(os.fsencode(socket_path(folder))) <= ssh.SOCKET_MAX < 104
    finally:
        if folder:
            os.rmdir(folder)


def test_a_long_home_is_passed_over_for_a_short_tmpdir(monkeypatch, tmp_path):
    home = tmp_path / ("h" * 60)
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    short = tempfile.mkdtemp(prefix="t", dir="/tmp")
    try:
        monkeypatch.setenv("TMPDIR", short)
        monkeypatch.setattr(tempfile, "tempdir", None)
        writable_only(monkeypatch, f"{home}/.ssh", short)
        folder, _ = ssh._socket_folder()
        assert os.path.dirname(folder) == short
        assert len(os.fsencode(socket_path(folder))) <= ssh.SOCKET_MAX
    finally:
        shutil.rmtree(short)


def test_the_socket_is_under_tmp_even_with_macos_tmpdir(cfg, programs, long_tmpdir):
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ...)  # the master
    programs.expect("ssh", ...)  # -O exit
    with ssh.Ssh(cfg).connection() as shared:
        path = re.fullmatch(r"ControlPath=(.*)", shared.config.SSH_OPTIONS[-1]).group(1)
    assert path.startswith("/tmp/pst-") and path.endswith("/%C")
    assert len(socket_path(path.removesuffix("/%C"))) <= ssh.SOCKET_MAX
    # where tempfile alone would put it
    assert len(socket_path(f"{long_tmpdir}/pst-xxxxxxxx")) > ssh.SOCKET_MAX


def test_with_no_folder_for_a_socket_each_command_connects_and_a_note_says_so_once(cfg, programs, monkeypatch,
                                                                                  capsys):
    monkeypatch.setattr(ssh, "_socket_folder", lambda: (None, "no writable folder here is short enough"))
    for _ in range(2):
        programs.expect("ssh", "-G", ..., out="")
        programs.expect("server", "stop", RUN_ID)
        with ssh.Ssh(cfg).connection() as place:
            place.stop(RUN_ID)
        assert programs.calls[-1].argv[:-1] == ["ssh", "-F", "/cfg", *ssh.SSH_DEFAULTS, "--", "gpu-box"]
    err = capsys.readouterr().err
    assert err.count("note: ") == 1
    assert ("no writable folder here is short enough: each ssh command to gpu-box opens its "
            "own connection" in err)


@pytest.mark.parametrize("refusal", [
    "getsockname failed: Not a socket",  # Windows' own OpenSSH, 7.6 and later
    "getsockname failed: Bad file descriptor\r\nchannel_send_open: channel 0: unexpected internal error",
    "muxclient socket(): Unknown error",  # its first builds
    'unix_listener: path "/x/y.abcdefghijklmnop" too long for Unix domain socket',
])
def test_a_client_that_cannot_share_a_connection_runs_one_per_command(cfg, programs, capsys, refusal):
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("ssh", ..., code=255, stderr=refusal)  # the master
    programs.expect("server", "stop", RUN_ID)
    programs.expect("server", "stop", RUN_ID)
    # -O exit: nothing to end
    programs.expect("ssh", ..., code=255, stderr="getsockname failed: Not a socket")
    with ssh.Ssh(cfg).connection() as place:
        place.stop(RUN_ID)
        place.stop(RUN_ID)
    for call in programs.calls[2:4]:
        assert call.argv[:-1] == ["ssh", "-F", "/cfg", *ssh.SSH_DEFAULTS, "--", "gpu-box"]  # no ControlPath
    folder = re.fullmatch(r"ControlPath=(.*)/%C", programs.calls[1].argv[4]).group(1)
    assert not os.path.exists(folder)
    err = capsys.readouterr().err
    assert err.count("note: ") == 1
    assert "this ssh client cannot share one connection between commands" in err
    assert refusal.splitlines()[0] in err


def test_windows_own_openssh_is_known_without_trying(cfg, programs, monkeypatch, capsys):
    monkeypatch.setattr(ssh.sys, "platform", "win32")
    monkeypatch.setattr(ssh.shutil, "which", lambda name: "C:/Windows/System32/OpenSSH/ssh.exe")
    programs.expect("ssh", "-G", ..., out="")
    programs.expect("server", "stop", RUN_ID)
    with ssh.Ssh(cfg).connection() as place:
        place.stop(RUN_ID)
    assert "Windows' own OpenSSH cannot share one connection" in capsys.readouterr().err


def test_an_ssh_on_windows_that_can_share_shares(monkeypatch):
    # Git for Windows' (MSYS) ssh is not Windows' own.
    monkeypatch.setattr(ssh.sys, "platform", "win32")
    monkeypatch.setattr(ssh.shutil, "which", lambda name: "C:/Program Files/Git/usr/bin/ssh.exe")
    folder, why = ssh._socket_folder()
    assert folder and why == ""
    os.rmdir(folder)
