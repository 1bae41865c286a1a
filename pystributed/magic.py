"""%%save_for_remote: save the cell for a remote run instead of running it here."""
import os
import tempfile

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from pystributed import config as configuration
from pystributed.errors import PystributedError


@magics_class
class RemoteMagics(Magics):
    @magic_arguments()
    @argument("path", nargs="?", help="where to save the cell (default: USER_CODE_PATH, user_code.py)")
    @cell_magic
    def save_for_remote(self, line, cell):
        """Save this cell's code for a remote run, without running it here.

        Then `runner.main()` builds it into a Docker image, runs it on REMOTE_SERVER and
        fetches its results. A cell that does not compile is refused.
        """
        args = parse_argstring(self.save_for_remote, line)
        path = args.path or _code_path()
        save(cell, path)
        lines = len(cell.strip("\n").splitlines())
        print(f"Saved the cell ({lines} line{'s' * (lines != 1)}) to {path}; run it remotely with runner.main() "
              f"or `python -m pystributed run {path}`.")


def save(source, path):
    if not source.strip():
        raise UsageError("the cell is empty: nothing to save")
    try:
        compile(source, path, "exec")
    except SyntaxError as e:
        raise UsageError(f"the cell does not compile: {e.msg} (line {e.lineno}); nothing was saved") from None
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Write then rename: a reader never sees half a cell.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".user_code.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(source if source.endswith("\n") else source + "\n")
    os.replace(tmp, path)


def _code_path():
    try:
        return configuration.load(require_server=False).USER_CODE_PATH
    except PystributedError as e:
        raise UsageError(str(e)) from None


def _show_message_only(shell, etype, value, tb, tb_offset=None):
    # Our errors are for the user to act on: show the message, not our stack.
    shell.showtraceback((etype, value, tb), exception_only=True)


def register(ip=None):
    """Register the magics in `ip` (default: the running IPython, if any)."""
    if ip is None:
        from IPython import get_ipython

        ip = get_ipython()
    if ip is None:
        return
    ip.register_magics(RemoteMagics)
    ip.set_custom_exc((PystributedError,), _show_message_only)
