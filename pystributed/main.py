"""The seed's entry point. In a notebook:

    import pystributed.main as runner   # registers %%save_for_remote
    runner.main()                        # build, push, run remotely, fetch the results
"""
from pystributed import config as configuration
from pystributed import pipeline
from pystributed.magic import register as _register


def main(config_path=None, *, code_path=None, quiet=False, **overrides):
    """Run the saved cell remotely and return a RunResult (run_id, exit_code, local_path, files).

    Settings come from config.py (or `config_path`, or $PYSTRIBUTED_CONFIG), then
    PYSTRIBUTED_<KEY> variables, then keyword arguments such as REMOTE_SERVER="gpu-box".
    """
    config = configuration.load(config_path, **overrides)
    return pipeline.run(config, code_path=code_path, quiet=quiet)


_register()
