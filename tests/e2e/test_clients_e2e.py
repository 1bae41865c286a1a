"""Laptops as users have them, against the sandbox. macOS: TMPDIR is a folder of 49 characters
(/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/), too long for a socket made under it; the run's
shared connection must work all the same, also where /tmp is not writable. Windows' own OpenSSH has no
connection sharing: with an `ssh` on PATH that refuses it as that client does, a run makes one
connection per command and says so once. An ssh config made for logging in by hand (a terminal, a
command of its own) is set aside."""
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pystributed import cli
from pystributed.places import ssh

ROOT = Path(__file__).resolve().parents[2]
MACOS_TMPDIR = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/"
CELL = "import os\nprint('ran here')\nopen(os.environ['PYSTRIBUTED_RESULTS'] + '/r.txt', 'w').write('ok')\n"
# Windows' own OpenSSH, as it answers connection sharing (PowerShell/Win32-OpenSSH#405, #1328):
# `-S`/ControlPath fail with "getsockname failed: Not a socket"; it cannot background either (-f).
WINDOWS_SSH = """#!/bin/sh
echo "$*" >>"$(dirname "$0")/calls.log"
for arg in "$@"; do
    case $arg in
    -V) echo "OpenSSH_for_Windows_9.5p1, LibreSSL 3.8.2" >&2; exit 0 ;;
    -S | -O | -M | -f | ControlMaster=* | ControlPath=* | -oControl*)
        echo "getsockname failed: Not a socket" >&2; exit 255 ;;
    esac
done
exec {real} "$@"
"""


@pytest.fixture
def macos_tmpdir(tmp_path, monkeypatch):
    """A TMPDIR as long as macOS's (49 characters), made."""
    folder = Path("/tmp") / ("macos-" + "x" * (len(MACOS_TMPDIR) - len("/tmp/macos-") - 1))
    assert len(str(folder)) + 1 == len(MACOS_TMPDIR) == 49
    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(folder) + "/")
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def pystributed(*args, env=None, cwd=None):
    env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                          check=False, timeout=600, env=env, cwd=cwd)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def landed(folder):
    (run_id,) = [name for name in os.listdir(folder / "results") if not name.startswith(".")]
    assert (folder / "results" / run_id / "r.txt").read_text() == "ok"
    return run_id


def test_a_run_with_macos_tmpdir(sandbox, tmp_path, macos_tmpdir):
    # Under TMPDIR, the socket's path (FOLDER/%C, and 17 more while ssh binds it) would be too long.
    assert len(f"{macos_tmpdir}/pst-xxxxxxxx/{'c' * 40}.{'x' * 16}") > ssh.SOCKET_MAX
    (tmp_path / "cell.py").write_text(CELL)
    proc = pystributed("run", "cell.py", cwd=tmp_path)
    assert "ran here\n" in proc.stdout and "note:" not in proc.stderr
    landed(tmp_path)


def test_a_run_with_macos_tmpdir_and_no_writable_tmp(sandbox, tmp_path, macos_tmpdir, monkeypatch, capsys):
    """/tmp (and /var/tmp) not writable: the socket goes in a short folder elsewhere (~/.ssh), never under
    the long TMPDIR; where there is none, each command opens its own connection. Run here, in this
    process, to make /tmp unwritable to it alone (the tests run as root, who may write anywhere)."""
    monkeypatch.setattr(ssh, "_NOTED", [])
    real_access, made = os.access, []
    monkeypatch.setattr(ssh.os, "access", lambda path,
                        mode: path not in ("/tmp", "/var/tmp") and real_access(path, mode))
    real_folder = ssh._socket_folder
    monkeypatch.setattr(ssh, "_socket_folder", lambda: made.append(real_folder()) or made[-1])
    home = Path.home()
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    (tmp_path / "cell.py").write_text(CELL)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "cell.py"]) == 0
    landed(tmp_path)
    folder, _ = made[0]
    room = ssh.SOCKET_MAX - len("/pst-xxxxxxxx/") - 40 - 17
    if len(str(home / ".ssh")) <= room:
        assert os.path.dirname(folder) == str(home / ".ssh")
        assert len(f"{folder}/{'c' * 40}.{'x' * 16}") <= ssh.SOCKET_MAX
        assert "note:" not in capsys.readouterr().err
    else:  # a home too long for it: one connection per command
        assert folder is None and "note:" in capsys.readouterr().err


@pytest.fixture
def windows_ssh(tmp_path):
    """An `ssh` first on PATH that refuses connection sharing as Windows' own does, else the real one."""
    folder = tmp_path / "windows-bin"
    folder.mkdir()
    script = folder / "ssh"
    script.write_text(WINDOWS_SSH.format(real=subprocess.run(["sh", "-c", "command -v ssh"],
                                                             capture_output=True,
                                                             text=True, check=True).stdout.strip()))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_a_run_through_an_ssh_without_connection_sharing(sandbox, tmp_path, windows_ssh):
    env = {"PATH": f"{windows_ssh}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path / "project"
    work.mkdir()
    (work / "cell.py").write_text(CELL)
    proc = pystributed("run", "cell.py", env=env, cwd=work)
    assert "ran here\n" in proc.stdout
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, proc.stderr
    assert "cannot share one connection between commands" in notes[0] and "getsockname failed" in notes[0]
    assert "each ssh command to pystributed-sandbox opens its own connection" in notes[0]
    run_id = landed(work)
    calls = (windows_ssh / "calls.log").read_text().splitlines()
    refused = [c for c in calls if "ControlMaster=yes" in c or " -O " in c]
    assert len(refused) == 2  # the master, once, and its -O exit
    plain = [c for c in calls if c not in refused and not c.startswith("-G ")]
    assert len(plain) >= 4 and not any("ControlPath" in c for c in plain)  # one connection per command

    # The long-run commands too: submit, then wait and fetch, each its own ssh commands.
    (work / "cell.py").write_text(CELL.replace("ran here", "ran detached"))
    submitted = pystributed("submit", "cell.py", env=env, cwd=work).stdout.strip()
    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}", submitted) and submitted != run_id
    pystributed("wait", submitted, env=env, cwd=work)
    pystributed("fetch", submitted, env=env, cwd=work)
    assert (work / "results" / submitted / "r.txt").read_text() == "ok"
    assert "ran detached" in (work / "results" / submitted / "output.log").read_text()


def test_a_run_through_an_ssh_config_made_for_logging_in(sandbox, tmp_path):
    """The user's ssh config for the server, made for logging in by hand: always a terminal, and a
    command of its own (`RequestTTY force`, `RemoteCommand tmux new -A`). Runs, submit and fetch,
    and DATA by rsync, go as without them: no terminal, none of that command."""
    options = shlex.split(sandbox.env["PYSTRIBUTED_SSH_OPTIONS"])
    server = sandbox.env["PYSTRIBUTED_REMOTE_SERVER"]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {server}\n    RequestTTY force\n    RemoteCommand echo tmux would start here\n"
                      f"Include {options[options.index('-F') + 1]}\n")
    settings = subprocess.run(["ssh", "-F", str(config), "-G", server], capture_output=True, text=True,
                              check=True).stdout
    assert "requesttty force\n" in settings and "remotecommand echo tmux would start here\n" in settings
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    (work / "data" / "x.txt").write_text("data by rsync\n")
    (work / "cell.py").write_text("import os, sys\nprint(open('data/x.txt').read().strip(), "
                                  "sys.stdin.isatty())\nopen(os.environ['PYSTRIBUTED_RESULTS'] + '/r.txt', "
                                  "'w').write('ok')\n")
    env = {"PYSTRIBUTED_SSH_OPTIONS": f"-F {config}", "PYSTRIBUTED_DATA": "data",
           "PYSTRIBUTED_REMOTE_WORKDIR": f"pystributed-tty-{os.getpid()}"}
    try:
        proc = pystributed("run", "cell.py", env=env, cwd=work)
        assert "data by rsync False\n" in proc.stdout and "tmux" not in proc.stdout + proc.stderr
        assert re.search(r"^data .*moved", proc.stdout, re.MULTILINE), proc.stdout
        landed(work)
        submitted = pystributed("submit", "cell.py", env=env, cwd=work).stdout.strip()
        pystributed("wait", submitted, env=env, cwd=work)
        pystributed("fetch", submitted, env=env, cwd=work)
        assert (work / "results" / submitted / "r.txt").read_text() == "ok"
    finally:
        sandbox.remote_shell(f"rm -rf {env['PYSTRIBUTED_REMOTE_WORKDIR']}")
