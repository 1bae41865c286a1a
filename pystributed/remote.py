"""Every command for the server goes through here: `ssh REMOTE_SERVER` or, when REMOTE_SERVER is
'local', `sh` on this machine, so that both take the same path."""
import contextlib
import dataclasses
import os
import shlex
import shutil
import tempfile

from pystributed import util

# BatchMode: a notebook has no terminal to type a password into, so fail instead of hanging.
# ServerAlive: notice a dead connection during a long run instead of waiting forever.
SSH_DEFAULTS = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]


def command(config, *commands):
    """The argv that runs `commands` on the server, one after another, stopping at the first
    that fails. An argument list has every word quoted for the remote shell; a string is shell
    that we wrote (a redirection around quoted words), taken as it is."""
    script = " && ".join(c if isinstance(c, str) else shlex.join(c) for c in commands)
    if config.is_local:
        return ["sh", "-c", script]
    # Options given first win in ssh, so the user's SSH_OPTIONS come before our defaults;
    # "--" keeps the destination from ever being read as an option.
    return ["ssh", *config.SSH_OPTIONS, *SSH_DEFAULTS, "--", config.REMOTE_SERVER, script]


def cwd(config):
    """Where commands start: ssh starts in the remote home, so `local` starts in ours."""
    return os.path.expanduser("~") if config.is_local else None


def workdir(config):
    """REMOTE_WORKDIR as the remote shell should see it: `~/x` becomes `x` (the home is where
    commands start), since a quoted `~` would not be expanded."""
    path = config.REMOTE_WORKDIR
    if path == "~":
        return "."
    return path.removeprefix("~/")


def redirect(words, path, *, stderr=True):
    """`words >path 2>&1` (or without `2>&1`), quoted, for command()."""
    return f"{shlex.join(words)} >{shlex.quote(path)}" + (" 2>&1" if stderr else "")


@contextlib.contextmanager
def shared_connection(config):
    """Yield a config whose ssh commands all share one connection (an OpenSSH ControlMaster with
    its socket in a private folder), unless the user's ssh config multiplexes already.

    The master is started explicitly (-M -N -f) with its output away from any pipe of ours: one
    started implicitly would inherit our pipes and keep a reader waiting until it exits. It
    lives for one run only, so it never holds on to the server's old view of the user's groups;
    ControlPersist ends it even if this process dies."""
    if config.is_local or _multiplexed_already(config):
        yield config
        return
    folder = tempfile.mkdtemp(prefix="pystributed-ssh-")
    shared = dataclasses.replace(config, SSH_OPTIONS=[*config.SSH_OPTIONS, "-o", f"ControlPath={folder}/%C"])
    try:
        util.run(["ssh", *shared.SSH_OPTIONS, *SSH_DEFAULTS, "-o", "ControlMaster=yes",
                  "-o", "ControlPersist=120", "-N", "-f", "--", config.REMOTE_SERVER],
                 step="connect", hint=connect_hint(config))
        yield shared
    finally:
        util.succeeds(["ssh", *shared.SSH_OPTIONS, "-O", "exit", "--", config.REMOTE_SERVER])
        shutil.rmtree(folder, ignore_errors=True)


def _multiplexed_already(config):
    out = util.output(["ssh", "-G", *config.SSH_OPTIONS, "--", config.REMOTE_SERVER])
    settings = dict(line.partition(" ")[::2] for line in out.splitlines())
    return settings.get("controlmaster", "false") != "false" and settings.get("controlpath", "none") != "none"


def connect_hint(config):
    return (f"Check that `ssh {config.REMOTE_SERVER}` works from a terminal here without a password "
            f"prompt (a key, or ssh-agent), and that the server's host key is in known_hosts.")
