"""python -m pystributed run [FILE]"""
import argparse
import sys

from pystributed import config as configuration
from pystributed import pipeline
from pystributed.errors import PystributedError, RemoteCellError


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pystributed",
        description="Run a saved notebook cell on a remote server inside a Docker image.")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $PYSTRIBUTED_CONFIG or ./config.py)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="build, push, run remotely and fetch the results",
                              description="Build FILE into an image, run it on REMOTE_SERVER and "
                                          "fetch its results to LOCAL_RESULTS_DIR/<run-id>/.")
    run.add_argument("file", nargs="?", metavar="FILE", help="the code to run (default: USER_CODE_PATH)")
    run.add_argument("-q", "--quiet", action="store_true", help="no step lines, only the code's output")
    args = parser.parse_args(argv)
    try:
        config = configuration.load(args.config)
        result = pipeline.run(config, code_path=args.file, quiet=args.quiet)
    except RemoteCellError as e:
        print(f"error: {e}", file=sys.stderr)
        return min(e.result.exit_code, 255) or 1  # the cell's own exit code, for scripts
    except PystributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if result.local_path:
        print(f"{result.run_id}: {len(result.files)} file(s) in {result.local_path}")
    return 0
