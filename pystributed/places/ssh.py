"""One server over ssh. The login shell there is given one fixed line, `sh -c '…'`, which bash,
dash, zsh, fish and tcsh read alike; all else goes to sh on stdin (see server.py). The commands
of one run share one connection."""
import contextlib
import dataclasses
import os
import random
import re
import shutil
import sys
import tempfile
import time

from pystributed import util
from pystributed.errors import StepError
from pystributed.places import server

# BatchMode: a notebook has no terminal to type a password into, so fail instead of hanging.
# ServerAlive: notice a dead connection during a long run instead of waiting forever.
# -T: never a terminal there, whatever the user's ssh config says (`RequestTTY force`, for tmux): a
# terminal would echo and rewrite what we send and what comes back (the program, tar streams).
SSH_DEFAULTS = ["-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
# sshd closes new connections beyond its MaxStartups (10 unauthenticated ones at once, by default)
# before they say who they are; ssh then exits 255 with `kex_exchange_identification: …` (older
# clients: `ssh_exchange_identification: …`), and nothing ran on the server. Such a connection is
# tried again after these pauses, each drawn between half and one and a half times its value (runs
# refused together do not come back together): about six seconds in all. Only what opens a
# connection is: the shared one's start, or a command that has none to share (`Shared`).
RETRY_DELAYS = (0.2, 0.4, 0.8, 1.6, 3.2)
REFUSED = re.compile(r"^(kex|ssh)_exchange_identification: ", re.MULTILINE)
# What a client that cannot share a connection says when asked to: Windows' own OpenSSH
# (`getsockname failed: Not a socket`; older builds `muxclient socket(): Unknown error`), or a
# socket path too long for its system (`unix_listener: path "…" too long for Unix domain socket`).
NO_SHARING = re.compile(r"getsockname failed|mux_?client|muxserver|unix_listener|control "
                        r"?(master|path|socket)",
                        re.IGNORECASE)
# A Unix socket's path has at most 103 bytes on macOS (104 with its NUL; 108 on Linux): ours is
# FOLDER/%C (40 characters), and ssh adds 17 more while it binds it.
SOCKET_MAX = 103


class Ssh(server.Server):
    def __init__(self, config):
        super().__init__(config)
        self.name = config.REMOTE_SERVER

    def argv(self, size):
        # Options given first win in ssh, so the user's SSH_OPTIONS come before our defaults;
        # "--" keeps the destination from ever being read as an option.
        return ["ssh", *self.config.SSH_OPTIONS, *SSH_DEFAULTS, "--", self.config.REMOTE_SERVER,
                f"sh -c '{server.LOADER.format(size)}'"]

    def hint(self):
        return (f"Check that `ssh {self.name}` works from a terminal here without a password "
                f"prompt (a key, or ssh-agent), and that the server's host key is in known_hosts.")

    def call(self, *args, **kwargs):
        return _retried(lambda: super(Ssh, self).call(*args, **kwargs), self.name)

    def stream(self, *args, **kwargs):
        return _stream_retried(super().stream, self.name, *args, **kwargs)

    @contextlib.contextmanager
    def connection(self):
        """This place, with its ssh commands sharing one connection (an OpenSSH ControlMaster with
        its socket in a private folder), unless the user's ssh config multiplexes already.

        The master is started explicitly (-M -N -f) with its output away from any pipe of ours: one
        started implicitly would inherit our pipes and keep a reader waiting until it exits. It
        lives for one run only, so it never holds on to the server's old view of the user's
        groups; ControlPersist ends it even if this process dies. A client that cannot share a
        connection (Windows' own OpenSSH) makes one per command instead (`_unshared`)."""
        settings = self.settings()
        place = self
        if settings.get("remotecommand", "none") != "none":  # the user's, for logging in (`tmux attach`)
            place = Ssh(dataclasses.replace(self.config, SSH_OPTIONS=[*self.config.SSH_OPTIONS,
                                                                      "-o", "RemoteCommand=none"]))
        if multiplexed(settings):
            yield place
            return
        folder, why = _socket_folder()
        if not folder:
            yield _unshared(place, why)
            return
        shared = Shared(dataclasses.replace(
            place.config, SSH_OPTIONS=[*place.config.SSH_OPTIONS, "-o", f"ControlPath={folder}/%C"]))
        try:
            yield shared if _start_master(shared, place) else place
        finally:
            util.succeeds(["ssh", *shared.config.SSH_OPTIONS, "-O", "exit", "--", self.name])
            shutil.rmtree(folder, ignore_errors=True)

    def settings(self):
        """ssh's settings for this server, as the user's ssh config makes them (`ssh -G`)."""
        out = util.output(["ssh", "-G", *self.config.SSH_OPTIONS, "--", self.name])
        return dict(line.partition(" ")[::2] for line in out.splitlines())


class Shared(Ssh):
    """This place over its running shared connection: each command is a new session on that
    connection, not a new connection, so MaxStartups never refuses it and it runs once."""
    call = server.Server.call
    stream = server.Server.stream


def multiplexed(settings):
    """Whether the user's ssh config shares connections already."""
    return settings.get("controlmaster", "false") != "false" and settings.get("controlpath", "none") != "none"


def _short_tmp():
    """A folder whose path leaves room for the socket: a Unix socket's path has at most 104 bytes
    on macOS (108 on Linux), and macOS's TMPDIR alone is about 50."""
    return "/tmp" if os.access("/tmp", os.W_OK) else None


def _socket_folder():
    """(A new private folder for the shared connection's socket, whose path leaves room for it
    (SOCKET_MAX): under /tmp, else /var/tmp, ~/.ssh, or where tempfile says, whichever is writable
    and short enough (macOS's TMPDIR alone is about 50 characters); or None, and why not.)"""
    ssh = shutil.which("ssh") or ""
    if sys.platform == "win32" and os.path.basename(os.path.dirname(ssh)).lower() == "openssh":
        return None, ("Windows' own OpenSSH cannot share one connection between commands (it has no "
                      "ControlMaster)")
    room = SOCKET_MAX - len("/pst-XXXXXXXX/") - 40 - 17
    for parent in (_short_tmp(), "/var/tmp", os.path.expanduser("~/.ssh"), tempfile.gettempdir()):
        if parent and len(os.fsencode(parent)) <= room and os.access(parent, os.W_OK | os.X_OK):
            with contextlib.suppress(OSError):
                return tempfile.mkdtemp(prefix="pst-", dir=parent), ""
    return None, (f"no writable folder here has a path short enough for ssh's shared connection's socket "
                  f"(/tmp, /var/tmp, ~/.ssh, {tempfile.gettempdir()})")


def _start_master(shared, place):
    """Start the shared connection (again while the server refuses new ones); False if this client
    cannot share one (then each command opens its own)."""
    argv = ["ssh", *shared.config.SSH_OPTIONS, *SSH_DEFAULTS, "-o", "ControlMaster=yes", "-o",
            "ControlPersist=120",
            "-N", "-f", "--", place.name]
    try:
        _retried(lambda: util.run(argv, step="connect", hint=place.hint()), place.name)
    except StepError as e:
        if e.code != 255 or not NO_SHARING.search(e.output):
            raise
        _unshared(place, "this ssh client cannot share one connection between commands (`ssh -o "
                         f"ControlMaster=yes`: {' '.join(e.output.split())[:200]})")
        return False
    return True


_NOTED: list[bool] = []  # the note on one connection per command is given once per process


def _unshared(place, why):
    """`place` as it is, each command with its own connection; said once, on stderr."""
    if not _NOTED:
        _NOTED.append(why)
        print(f"note: {why}: each ssh command to {place.name} opens its own connection, so a run takes "
              f"a little longer.", file=sys.stderr)
    return place


def refused_hint(name):
    return (f"{name} refused new ssh connections: sshd drops new ones while too many are being opened at "
            f"once (its MaxStartups, 10 by default), and it still did after {len(RETRY_DELAYS)} more tries "
            "over several seconds. Start fewer runs (or ssh sessions) at the same moment, or raise "
            "MaxStartups in the server's sshd_config (e.g. `MaxStartups 100:30:200`). Keys and passwords are "
            "not the problem.")


def _retried(attempt, name):
    """attempt(), tried again after a pause (RETRY_DELAYS) while the server refuses new connections
    (it ran nothing then); if it never gets through, its error with a hint that says so."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return attempt()
        except StepError as e:
            if e.code != 255 or not REFUSED.search(e.output):
                raise
            if delay is None:
                raise StepError(e.step, f"{e.message} (refused by the server {len(RETRY_DELAYS) + 1} times)",
                                output=e.output, hint=refused_hint(name), code=e.code) from None
        time.sleep(delay * random.uniform(0.5, 1.5))


def _stream_retried(stream, name, *args, on_stderr, **kwargs):
    """Server.stream, tried again while the server refuses new connections: ssh's own complaint
    about that is held back from `on_stderr`. One never let through is a `connect` failure (the
    command never ran there: a container it should have started was not)."""
    def attempt():
        held = _HeldBack(on_stderr)
        code = stream(*args, on_stderr=held, **kwargs)
        if code == 255 and held.refused():
            raise StepError("connect", f"ssh could not open a connection to {name}", output=held.text,
                            code=255)
        held.release()
        return code

    try:
        return _retried(attempt, name)
    except StepError as e:
        if e.step != "connect" or e.code != 255:
            raise
        raise StepError(e.step, e.message, output=e.output, hint=e.hint) from None


class _HeldBack:
    """A stderr callback that holds its text while it may still be ssh's own `…_exchange_identification:`
    (which comes first, before anything of the server's), then lets everything through."""
    PREFIXES = ("kex_exchange_identification: ", "ssh_exchange_identification: ")

    def __init__(self, callback):
        self.callback, self.text, self.passing = callback, "", False

    def __call__(self, text):
        if self.passing:
            self.callback(text)
            return
        self.text += text
        if not any(p.startswith(self.text) or self.text.startswith(p) for p in self.PREFIXES):
            self.release()

    def refused(self):
        return not self.passing and bool(REFUSED.search(self.text))

    def release(self):
        if not self.passing:
            self.passing = True
            if self.text:
                self.callback(self.text)


class Deferred:
    """A connection entered later (`open()`) than it is put on an ExitStack (a swarm's, one per node):
    the stack's lock is not held while a connection opens."""

    def __init__(self, manager):
        self.manager, self.entered = manager, False

    def __enter__(self):
        return self

    def open(self):
        value = self.manager.__enter__()
        self.entered = True
        return value

    def __exit__(self, *exc):
        return self.manager.__exit__(*exc) if self.entered else False
