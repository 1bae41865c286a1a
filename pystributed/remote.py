"""Every command for the server goes through here: `ssh REMOTE_SERVER` or, when REMOTE_SERVER is
'local', `sh` on this machine, so that both take the same path."""
import os
import shlex

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
