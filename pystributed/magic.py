"""%%save_for_remote saves the cell for a remote run instead of running it here; %%remote saves
and runs it in one step. Both take options that override the config for that run."""
import os
import weakref
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from pystributed import config as configuration
from pystributed import features, record
from pystributed.errors import PystributedError
from pystributed.features import deps, figures, values

# code path -> (source, overrides) as %%save_for_remote saved them in this kernel. main() runs
# this copy: another kernel in the same folder may have saved its own cell to the same file since.
_saved: dict[str, str] = {}


def run_options(func):
    for decorator in reversed([
        argument("--server", help="REMOTE_SERVER for this run"),
        argument("--image", help="BASE_IMAGE for this run"),
        argument("--gpus", help="GPUs for this run, as `docker run --gpus` takes them (e.g. all), "
                                "or free: one GPU of the server's that no process uses"),
        argument("--detach", action="store_true",
                 help="start the run and return at once; follow it later with runner.attach(RUN_ID)"),
        argument("--out", metavar="NAMES", help="variables to bring back into the notebook, e.g. "
                 "result,model"),
        argument("--in", dest="inputs", metavar="NAMES", help="notebook variables to send into "
                                                              "the run, e.g. x,y"),
        argument("--no-deps", action="store_true",
                 help="do not bring along the definitions this cell uses from earlier cells"),
        argument("--cache", action="store_true",
                 help="reuse an earlier run of the same code, inputs, image and data, without "
                      "running it again"),
        argument("--sweep", action="append", metavar="NAME=V1,V2",
                 help="run the cell once per value (per combination, with several --sweep), NAME a variable "
                      "defined before the cell; %%%%save_for_remote --sweep NAME only declares it, for "
                      "runner.sweep()"),
        argument("--retries", type=int, default=0, metavar="N", help="a sweep's failed task runs again, "
                                                                     "N times at most"),
        argument("--follow", type=int, metavar="INDEX", help="a sweep: show this task's output live"),
        argument("--nodes", type=int, metavar="N", help="CLUSTER = 'slurm': run the cell once per node on N "
                                                        "nodes (MASTER_ADDR, MASTER_PORT, RANK, "
                                                        "WORLD_SIZE set)"),
    ]):
        func = decorator(func)
    return func


@magics_class
class RemoteMagics(Magics):
    @magic_arguments()
    @argument("path", nargs="?", help="where to save the cell (default: USER_CODE_PATH, user_code.py)")
    @run_options
    @cell_magic
    def save_for_remote(self, line, cell):
        """Save this cell's code for a remote run, without running it here.

        Then `runner.main()` builds it into a Docker image, runs it on REMOTE_SERVER and
        fetches its results. A cell that does not compile is refused. The options apply to
        that next run.
        """
        args = parse_argstring(self.save_for_remote, line)
        base = _config()
        path = args.path or base.USER_CODE_PATH
        script, earlier = with_earlier_cells(self.shell, cell, args)
        save(script, path)
        _saved[os.path.abspath(path)] = (script, overrides(args, base))
        lines = len(cell.strip("\n").splitlines())
        along = f", with what it uses from {', '.join(earlier)}" if earlier else ""
        print(f"Saved the cell ({lines} line{'s' * (lines != 1)}) to {path}{along}; run it remotely with "
              f"runner.main() or `python -m pystributed run {path}`.")

    @magic_arguments()
    @run_options
    @argument("-q", "--quiet", action="store_true", help="no step display, only the cell's output")
    @cell_magic
    def remote(self, line, cell):
        """Run this cell on REMOTE_SERVER in one step (save, build, push, run, fetch); the
        RunResult is the cell's result."""
        from pystributed import lifecycle, pipeline

        args = parse_argstring(self.remote, line)
        if args.sweep:  # the cell once per combination of parameters (sweep.py)
            return sweep_cell(self.shell, cell, args)
        base = _config()
        script, _ = with_earlier_cells(self.shell, cell, args)
        save(script, base.USER_CODE_PATH)
        options = overrides(args, base)
        # Saved like %%save_for_remote: a later runner.main() reruns this cell, not an older one.
        _saved[os.path.abspath(base.USER_CODE_PATH)] = (script,
                                                        {k: v for k, v in options.items() if k != "detach"})
        detach, cache = options.pop("detach", False), options.pop("cache", False)
        exchange = values.Exchange(inputs=options.pop("inputs", None), out=options.pop("out", None),
                                      namespace=self.shell.user_ns)
        config = configuration.load(**options)
        result = pipeline.run(config, source=script, quiet=args.quiet, detach=detach,
                              engine=lifecycle.on_cluster,
                              features=features.for_run(config, exchange=exchange, cache=cache)
                              + figures.asked())
        return result if result.value is None else result.value  # the cell's own value, as locally


def sweep_cell(shell, cell, args):
    """%%remote --sweep NAME=V1,V2 ...: save the cell (its parameters count as defined), run the sweep."""
    from pystributed import sweep

    params = sweep.combinations(grid=sweep.grid_of(args.sweep))
    base = _config()
    script, _ = with_earlier_cells(shell, cell, args)
    save(script, base.USER_CODE_PATH)
    options = overrides(args, base)
    detach = options.pop("detach", False)
    if options.pop("cache", False):
        raise PystributedError("--cache is for single runs, not sweeps")
    inputs, out = options.pop("inputs", None), options.pop("out", None)
    config = configuration.load(**options)
    return sweep.run(config, params=params, source=script, out=out, inputs=inputs, namespace=shell.user_ns,
                     retries=args.retries, detach=detach, quiet=args.quiet, follow=args.follow)


def with_earlier_cells(shell, cell, args):
    """The script to save: the definitions the cell uses from earlier cells, then the cell; and
    the cells they came from. Names it would lack are reported here, before any build."""
    check_cell(cell, "the cell")
    if args.no_deps or shell is None:
        return cell, []
    given = values.names(args.inputs, "--in")
    # a sweep's parameters
    given += [spec.partition("=")[0].strip() for spec in getattr(args, "sweep", None) or []]
    return deps.script(cell, deps.history_of(shell), namespace=shell.user_ns, given=given)


# The options given on as they are, when given: option -> the config key it sets, or the run option
# (no config key) that main() takes.
_GIVEN_ON = {"server": "REMOTE_SERVER", "image": "BASE_IMAGE", "detach": "detach", "out": "out",
             "inputs": "inputs", "cache": "cache"}


def overrides(args, base):
    options = {key: getattr(args, option) for option, key in _GIVEN_ON.items() if getattr(args, option)}
    if args.gpus:
        options["DOCKER_RUN_ARGS"] = [*base.DOCKER_RUN_ARGS, "--gpus", args.gpus]
    if args.nodes is not None:  # 0 too: the config refuses it
        options["NODES"] = args.nodes
    return options


def saved(path):
    """(source, options) of the cell this kernel saved at `path`, or (None, {})."""
    source, options = _saved.get(os.path.abspath(path), (None, {}))
    if source is not None and _read(path) != _with_newline(source):
        print(f"note: {path} changed since this kernel saved the cell there (another kernel?); "
              "running the cell this kernel saved.")
    return source, dict(options)


def _read(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def _with_newline(source):
    return source if source.endswith("\n") else source + "\n"


def check_cell(source, path):
    if not source.strip():
        raise UsageError("the cell is empty: nothing to save")
    try:
        compile(source, path, "exec")
    except SyntaxError as e:
        raise UsageError(f"the cell does not compile: {e.msg} (line {e.lineno}); nothing was saved") from None


def save(source, path):
    check_cell(source, path)  # the script's one compile: a run takes the saved script as it is (pipeline)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record.write_atomically(path, _with_newline(source))  # a reader never sees half a cell


def _config():
    try:
        return configuration.load(require_server=False)
    except PystributedError as e:
        raise UsageError(str(e)) from None


def _show_message_only(shell, etype, value, tb, tb_offset=None):
    # Our errors are for the user to act on: show the message, not our stack (nor IPython's
    # "An exception has occurred, use %tb to see the full traceback.").
    shell._showtraceback(etype, value, shell.InteractiveTB.get_exception_only(etype, value))


def _ours(tb):
    """Whether an exception passed through pystributed: an interrupt of a run (what became of
    the run is said above it) is shown as one line, not as our stack."""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
            return True
        tb = tb.tb_next
    return False


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def register(ip=None):
    """Register the magics in `ip` (default: the running IPython, if any)."""
    if ip is None:
        from IPython import get_ipython

        ip = get_ipython()
    if ip is None:
        return
    ip.register_magics(RemoteMagics)
    _chain_custom_exc(ip)


# shell -> its CustomTB as we set it: registering again (import, then %load_ext) chains nothing.
_handlers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _chain_custom_exc(ip):
    """Show our errors as their message, and keep the custom exception handler set before ours
    (another extension's, the user's) for the exceptions it was set for: IPython has one handler
    (`set_custom_exc` replaces it), so ours passes the others on to it."""
    if _handlers.get(ip) is ip.CustomTB:
        return
    earlier, earlier_types = ip.CustomTB, tuple(ip.custom_exceptions)

    def handler(shell, etype, value, tb, tb_offset=None):
        if issubclass(etype, PystributedError) or issubclass(etype, KeyboardInterrupt) and _ours(tb):
            return _show_message_only(shell, etype, value, tb, tb_offset)
        if issubclass(etype, KeyboardInterrupt) and not issubclass(etype, earlier_types):
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)  # as without us
        try:
            return earlier(etype, value, tb, tb_offset=tb_offset)
        except Exception:  # noqa: BLE001 (it failed, and IPython's wrapper of it too, in IPython 8.12)
            # The exception is shown as it would be without any handler.
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        finally:
            # it failed, and IPython unregistered it, ours with it: not ours
            if shell.custom_exceptions == ():
                _handlers.pop(shell, None)
                _chain_custom_exc(shell)

    ip.set_custom_exc((PystributedError, KeyboardInterrupt, *earlier_types), handler)
    _handlers[ip] = ip.CustomTB
