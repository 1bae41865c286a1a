"""The seed's entry point. In a notebook:

    import pystributed.main as runner   # registers %%save_for_remote and %%remote
    runner.main()                        # build, push, run remotely, fetch the results
"""
from pystributed import config as configuration
from pystributed import magic, pipeline, record
from pystributed.magic import register as _register


def main(config_path=None, *, code_path=None, quiet=False, detach=False, on_interrupt=None, **overrides):
    """Run the saved cell remotely and return a RunResult (run_id, exit_code, local_path, files).

    Settings come from config.py (or `config_path`, or $PYSTRIBUTED_CONFIG), then
    PYSTRIBUTED_<KEY> variables, then options given to %%save_for_remote, then keyword
    arguments such as REMOTE_SERVER="gpu-box". `detach=True` returns once the container has
    started (follow it with attach()); `on_interrupt` ("stop" or "detach") overrides ON_INTERRUPT.
    """
    base = configuration.load(config_path, require_server=False)
    code_path = code_path or base.USER_CODE_PATH
    source, saved = magic.saved(code_path)
    detach = saved.pop("detach", False) or detach
    config = configuration.load(config_path, **{**saved, **overrides})
    return pipeline.run(config, code_path=code_path, source=source, quiet=quiet, detach=detach,
                        on_interrupt=on_interrupt)


def submit(config_path=None, **kwargs):
    """Start the saved cell on the server and return at once with its RunResult (status running)."""
    return main(config_path, detach=True, **kwargs)


def attach(run_id, config_path=None, *, quiet=False, **overrides):
    """Follow a run started earlier, from any kernel: its output from the start, then live, then
    its results. Interrupting leaves the run going."""
    return pipeline.attach(configuration.load(config_path, **overrides), run_id, quiet=quiet)


def runs(config_path=None):
    """Past runs recorded in LOCAL_RESULTS_DIR, newest first."""
    config = configuration.load(config_path, require_server=False)
    return record.runs(config.LOCAL_RESULTS_DIR)


_register()
