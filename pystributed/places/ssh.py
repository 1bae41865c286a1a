"""One server over ssh. The login shell there is given one fixed line, `sh -c '…'`, which bash,
dash, zsh, fish and tcsh read alike; all else goes to sh on stdin (see server.py). The commands
of one run share one connection."""
import contextlib
import dataclasses
import os
import shutil
import tempfile

from pystributed import util
from pystributed.places import server

# BatchMode: a notebook has no terminal to type a password into, so fail instead of hanging.
# ServerAlive: notice a dead connection during a long run instead of waiting forever.
SSH_DEFAULTS = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]


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

    @contextlib.contextmanager
    def connection(self):
        """This place, with its ssh commands sharing one connection (an OpenSSH ControlMaster with
        its socket in a private folder), unless the user's ssh config multiplexes already.

        The master is started explicitly (-M -N -f) with its output away from any pipe of ours: one
        started implicitly would inherit our pipes and keep a reader waiting until it exits. It
        lives for one run only, so it never holds on to the server's old view of the user's
        groups; ControlPersist ends it even if this process dies."""
        if self.multiplexed_already():
            yield self
            return
        folder = tempfile.mkdtemp(prefix="pst-", dir=_short_tmp())
        shared = Ssh(dataclasses.replace(
            self.config, SSH_OPTIONS=[*self.config.SSH_OPTIONS, "-o", f"ControlPath={folder}/%C"]))
        try:
            util.run(["ssh", *shared.config.SSH_OPTIONS, *SSH_DEFAULTS, "-o", "ControlMaster=yes",
                      "-o", "ControlPersist=120", "-N", "-f", "--", self.name], step="connect", hint=self.hint())
            yield shared
        finally:
            util.succeeds(["ssh", *shared.config.SSH_OPTIONS, "-O", "exit", "--", self.name])
            shutil.rmtree(folder, ignore_errors=True)

    def multiplexed_already(self):
        out = util.output(["ssh", "-G", *self.config.SSH_OPTIONS, "--", self.name])
        settings = dict(line.partition(" ")[::2] for line in out.splitlines())
        return settings.get("controlmaster", "false") != "false" and settings.get("controlpath", "none") != "none"


def _short_tmp():
    """A folder whose path leaves room for the socket: a Unix socket's path has at most 104 bytes
    on macOS (108 on Linux), and macOS's TMPDIR alone is about 50."""
    return "/tmp" if os.access("/tmp", os.W_OK) else None
