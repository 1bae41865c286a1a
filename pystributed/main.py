"""The seed's entry point. In a notebook:

    import pystributed.main as runner   # registers %%save_for_remote and %%remote
    runner.main()                        # build, push, run remotely, fetch the results
"""
import sys

from IPython.display import display  # IPython: a dependency, imported with the magics anyway

from pystributed import clean as cleaning
from pystributed import config as configuration
from pystributed import features, jobs, lifecycle, listing, magic, pipeline, results
from pystributed.features import figures, values
from pystributed.magic import register as _register


def main(config_path=None, *, code_path=None, quiet=False, detach=False, on_interrupt=None, out=None,
         inputs=None,
         cache=None, nodes=None, **overrides):
    """Run the saved cell remotely and return a RunResult (run_id, exit_code, local_path, files).

    Settings come from config.py (or `config_path`, or $PYSTRIBUTED_CONFIG), then
    PYSTRIBUTED_<KEY> variables, then options given to %%save_for_remote, then keyword
    arguments such as REMOTE_SERVER="gpu-box". `detach=True` returns once the container has
    started (follow it with attach()); `on_interrupt` ("stop" or "detach") overrides ON_INTERRUPT.
    `out=["result"]` brings those variables back into the notebook, `inputs=["x"]` sends them
    (like --out and --in); the cell's last expression is shown and kept as `.value`. `cache=True`
    reuses an earlier run of the same code, inputs, image and data. `nodes=2` (CLUSTER = "slurm"): the
    cell once per node in one allocation (NODES), rank 0's result returned.
    """
    base = configuration.load(config_path, require_server=False)
    code_path = code_path or base.USER_CODE_PATH
    source, saved = magic.saved(code_path)
    detach = saved.pop("detach", False) or detach
    # The saved run options are taken out whether or not an argument overrides them: they are no config keys.
    saved_inputs, saved_out, saved_cache = (saved.pop("inputs", None), saved.pop("out", None),
                                            saved.pop("cache", False))
    exchange = values.Exchange(inputs=saved_inputs if inputs is None else inputs,
                               out=saved_out if out is None else out, namespace=_namespace())
    cache = saved_cache if cache is None else cache
    if nodes is not None:
        overrides["NODES"] = nodes
    config = configuration.load(config_path, **{**saved, **overrides})
    result = pipeline.run(config, code_path=code_path, source=source, quiet=quiet, detach=detach,
                          on_interrupt=on_interrupt, engine=lifecycle.on_cluster,
                          features=features.for_run(config, exchange=exchange, cache=cache) + figures.asked())
    if result.value is not None:
        display(result.value)  # outside IPython, IPython's display prints it
    return result


def sweep(config_path=None, *, params=None, code_path=None, quiet=False, detach=False, out=None, inputs=None,
          retries=0, follow=None, on_interrupt=None, **grid):
    """Run the saved cell once per combination of parameters, as variables defined before it:
    `sweep(lr=[0.1, 0.01], seed=[0, 1])` (4 tasks), or `sweep(params=[{"lr": 0.1}, ...])`. Keyword
    arguments that are config keys (REMOTE_SERVER=...) override the config. On a cluster
    (CLUSTER = "swarm") the tasks share its GPUs; on one server MAX_CONCURRENT run at a time. Return
    its Job (jobs.py); each --out name becomes a list of its values, in parameter order. `retries`: a
    failed task runs again up to that many times; `follow=INDEX` shows that task's output live.
    (Declare the parameters when saving the cell: `%%save_for_remote --sweep lr --sweep seed`.)"""
    from pystributed import sweep as sweeping

    overrides = {k: v for k, v in grid.items() if k in configuration.KEYS}
    grid = {k: v for k, v in grid.items() if k not in configuration.KEYS}
    base = configuration.load(config_path, require_server=False)
    code_path = code_path or base.USER_CODE_PATH
    source, saved = magic.saved(code_path)
    detach = saved.pop("detach", False) or detach
    saved.pop("cache", None)
    inputs = saved.pop("inputs", None) if inputs is None else inputs
    out = saved.pop("out", None) if out is None else out
    config = configuration.load(config_path, **{**saved, **overrides})
    return sweeping.run(config, params=sweeping.combinations(params, grid), code_path=code_path,
                        source=source, out=out, inputs=inputs, namespace=_namespace(), retries=retries,
                        detach=detach, quiet=quiet, follow=follow, on_interrupt=on_interrupt)


def submit(config_path=None, **kwargs):
    """Start the saved cell on the server and return at once with its RunResult (status running)."""
    return main(config_path, detach=True, **kwargs)


def attach(run_id, config_path=None, *, quiet=False, **overrides):
    """Follow a run started earlier, from any kernel: its output from the start, then live, then
    its results, and the --out variables it was started with. Interrupting leaves the run going."""
    return _after_start(run_id).attach(configuration.load(config_path, **overrides), run_id, quiet=quiet,
                                       namespace=_namespace())


def runs(config_path=None):
    """Past runs recorded in LOCAL_RESULTS_DIR, newest first."""
    config = configuration.load(config_path, require_server=False)
    return results.runs(config.LOCAL_RESULTS_DIR)


# Runs that outlive the notebook: each asks the server (one ssh connection) and takes the same
# config_path and keyword overrides as main().

def status(run_id, config_path=None, **overrides):
    """The run's state on the server (running, exited N, interrupted, cancelled ...); a sweep's, by its id."""
    return _after_start(run_id).status(configuration.load(config_path, **overrides), run_id)


def logs(run_id, config_path=None, *, follow=False, **overrides):
    """Print the run's output from its start; with `follow`, until it ends. "SWEEP_ID/INDEX": a sweep's
    task's."""
    _after_start(run_id).logs(configuration.load(config_path, **overrides), run_id, follow=follow)


def wait(run_id, config_path=None, **overrides):
    """Wait for the run to end; its state, with the cell's exit_code."""
    return _after_start(run_id).wait(configuration.load(config_path, **overrides), run_id)


def fetch(run_id, config_path=None, *, quiet=False, **overrides):
    """Copy the run's folder back to LOCAL_RESULTS_DIR/<run-id>/ (safe to repeat); a RunResult."""
    return _after_start(run_id).fetch(configuration.load(config_path, **overrides), run_id, quiet=quiet)


def cancel(run_id, config_path=None, **overrides):
    """Stop the run and remove its container; its log and results stay on the server. A sweep's id
    stops all its tasks and fetches what they wrote."""
    return _after_start(run_id).cancel(configuration.load(config_path, **overrides), run_id)


def list_runs(config_path=None, **overrides):
    """The runs on the server with state, start, duration, image; the local index if offline."""
    return listing.list_runs(configuration.load(config_path, **overrides))


def clean(config_path=None, *, older_than=None, yes=False, **overrides):
    """What `python -m pystributed clean` removes (ended containers; with `older_than`, e.g. "7d",
    run folders; unused images and their registry tags). Only shown, unless `yes=True`."""
    age = None if older_than is None else lifecycle.parse_age(older_than)
    return cleaning.clean(configuration.load(config_path, **overrides), older_than=age, apply=yes)


def _after_start(run_id):
    """What looks after `run_id` once it started, with the same functions (attach, status, logs,
    wait, fetch, cancel): lifecycle.py for a run, sweep.py for a sweep (its tasks: SWEEP/INDEX)."""
    if jobs.SWEEP_ID.fullmatch(run_id.partition("/")[0]):
        from pystributed import sweep

        return sweep
    return lifecycle


def _namespace():
    """The notebook's variables: IPython's user namespace, or the script's own globals."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else vars(sys.modules["__main__"])


_register()
