"""python -m pystributed run|submit|logs|status|wait|fetch|cancel|list|clean"""
import argparse
import contextlib
import os
import sys

from pystributed import config as configuration
from pystributed import features, pipeline, results
from pystributed.errors import PystributedError, RemoteCellError, StepError, UnknownRun

# The commands after a run's start import what they use when called: `run` (a rerun, the command
# run most) then starts sooner.

# Exit codes a shell script can use (sysexits.h for the last two). `run` and `wait` exit with the
# cell's own code when it failed, so these can also be a cell's: the message on stderr tells.
EXIT_ERROR = 1  # a step failed, a bad config
EXIT_USAGE = 2  # bad arguments (argparse)
EXIT_UNKNOWN_RUN = 66  # no such run in REMOTE_WORKDIR on the server
# (not run, submit) the server or its engine could not be reached; `list` shows the index
EXIT_UNREACHABLE = 69
EXIT_INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    done (wait: the run exited 0)
  1    a step failed, or a bad config
  2    bad arguments
  66   unknown run: no such run in REMOTE_WORKDIR on the server
  69   the server or its Docker engine could not be reached (not run, submit: 1);
       list then shows the local index
  130  interrupted here (a submitted run goes on)
  run, wait: the cell's own exit code when it failed"""


def _run_id(text):
    if results.SWEEP_ID.fullmatch(text.split("/")[0]):  # a sweep's id, or SWEEP/INDEX (sweep.py)
        return text
    try:
        return results.check_run_id(text)
    except PystributedError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _age(text):
    from pystributed import lifecycle

    try:
        return lifecycle.parse_age(text)
    except PystributedError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# The commands' options as data, each (names, add_argument's keywords), in the order --help shows them;
# one loop in _parser adds them. An option whose dest is a config key (NODES) overrides it.
_FILE = (("file",), {"nargs": "?", "metavar": "FILE", "help": "the code to run (default: USER_CODE_PATH)"})
_QUIET = (("-q", "--quiet"), {"action": "store_true", "help": "no step lines"})
_RUN = (("run_id",), {"metavar": "RUN", "type": _run_id, "help": "the run id, e.g. 20261125-101502-3fa9c1"})
_START = (_FILE, _QUIET, (("--nodes",), {
    "dest": "NODES", "type": int, "metavar": "N",
    "help": "CLUSTER = 'slurm': the code once per node on N nodes, in one allocation (NODES)"}))
# Each command: (name, its help in the list of commands, its description, its options).
_COMMANDS = (
    ("run", "build, push, run remotely and fetch the results",
     ("Build FILE into an image, run it on REMOTE_SERVER and fetch its results to "
      "LOCAL_RESULTS_DIR/<run-id>/."),
     _START),
    ("submit", "start a run and print its id at once (the run goes on without us)",
     ("Build FILE into an image and start it on REMOTE_SERVER; print the run id on stdout (the steps go to "
      "stderr) and return. Follow it with `logs -f RUN`, `wait RUN`, `fetch RUN`."),
     _START),
    ("logs", "print a run's output from the start",
     "Print the output of RUN from its start; with -f, follow it live until the run ends.",
     (_RUN, (("-f", "--follow"), {"action": "store_true", "help": "keep printing until the run ends"}))),
    ("status", "show a run's state",
     ("Show the state of RUN on the server (running, exited N, interrupted, cancelled ...), its start, "
      "duration, image and folder."),
     (_RUN,)),
    ("wait", "wait for a run to end; exit with its exit code",
     ("Wait until RUN ends, put its container away (its log and state stay in the run folder), and exit "
      "with the run's own exit code."),
     (_RUN,)),
    ("fetch", "copy a run's results here (again: safe)",
     ("Copy the run folder of RUN to LOCAL_RESULTS_DIR/<run-id>/; an earlier copy is replaced whole, only "
      "once the new one is complete. A run still going gives what it has written so far."),
     (_RUN, _QUIET)),
    ("cancel", "stop a run and remove its container",
     ("Stop RUN (its code gets a KeyboardInterrupt first, so `finally:` blocks run) and remove its "
      "container; its log and results stay in the run folder, for `fetch`."),
     (_RUN,)),
    ("list", "list the runs (and sweeps) on the server",
     ("List the runs in REMOTE_WORKDIR on the server with state, start, duration, image, and where their "
      "results are here; each sweep as one row, its state the count of its tasks' states. If the server "
      "cannot be reached, the local index is shown, marked offline, and the exit code is 69."),
     ((("--json",), {"action": "store_true", "help": "as JSON"}),)),
    ("clean", "remove ended containers, old run folders, unused images and tags",
     ("Show, then remove: ended containers (their log and state saved in the run folder first), run "
      "folders of ended runs unchanged for more than AGE, the server's images of DOCKER_IMAGE_NAME that no "
      "container or remaining run uses, and their tags in DOCKER_REGISTRY; the files of cells "
      "(REMOTE_WORKDIR/.cells) no run used for an hour; of an ended sweep, its tasks' containers (or Swarm "
      "services), and with --older-than its folder. Runs and sweeps that go on are never touched. Removes "
      "only with --yes (or a 'y' at the prompt in a terminal)."),
     ((("--older-than",), {
         "metavar": "AGE", "type": _age,
         "help": "also remove the folders of ended runs unchanged for AGE: 90s, 30m, 12h, 7d, 2w"}),)),
    ("sweep", "run a script once per combination of parameters",
     ("Run FILE once per combination of the --param values (each a variable defined before the script, "
      "and PYSTRIBUTED_TASK its index): on a cluster (CLUSTER = 'swarm' or 'slurm') as one job sharing its "
      "GPUs, on one server MAX_CONCURRENT at a time. Each task's folder lands in "
      "LOCAL_RESULTS_DIR/<sweep-id>/<index>/. Exits 0 if every task succeeded, 1 otherwise."),
     (_FILE,
      (("--param",), {
          "action": "append", "required": True, "metavar": "NAME=V1,V2",
          "help": "a parameter and its values (Python literals, else strings); give one per parameter"}),
      (("--retries",), {"type": int, "default": 0, "metavar": "N",
                        "help": "run a failed task again, N times at most"}),
      (("--detach",), {"action": "store_true", "help": "start the sweep, print its id and return"}),
      (("--follow",), {"type": int, "metavar": "INDEX", "help": "show this task's output live"}),
      (("--tasks-per-container",), {
          "dest": "TASKS_PER_CONTAINER", "type": int, "metavar": "K",
          "help": "on a cluster: K tasks one after another in each container, for short tasks "
                  "(TASKS_PER_CONTAINER)"}),
      _QUIET)),
    ("attach", "follow a sweep (or a run) to its end and fetch its results",
     "Follow SWEEP (or RUN) started earlier: each task's state as it changes, then its results.",
     ((("run_id",), {"metavar": "SWEEP"}), _QUIET)),
    ("cluster", "make a Docker Swarm of ssh hosts, or show it",
     ("cluster init HOST1 HOST2 ...: make a Docker Swarm of these ssh hosts (the first its manager), and "
      "say what each host's Docker daemon needs for Swarm to count its GPUs. cluster status: the nodes of "
      "the swarm REMOTE_SERVER manages, their GPUs, and the tasks on them."),
     ()),
)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m pystributed", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a saved notebook cell on a remote server inside a Docker image, and "
                    "look after runs.")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $PYSTRIBUTED_CONFIG "
                                                         "or ./config.py)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, description, options in _COMMANDS:
        sub = commands.add_parser(name, help=help, description=f"{description}\n\n{EXIT_CODES}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        for names, keywords in options:
            sub.add_argument(*names, **keywords)
    # clean's --yes and --dry-run exclude each other; they come after its --older-than.
    choice = commands.choices["clean"].add_mutually_exclusive_group()
    choice.add_argument("--yes", action="store_true", help="remove without asking")
    choice.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    actions = commands.choices["cluster"].add_subparsers(dest="cluster_command", required=True,
                                                         metavar="ACTION")
    init_parser = actions.add_parser("init", help="swarm init on the first host, join on the others")
    init_parser.add_argument("hosts", nargs="+", metavar="HOST", help="ssh destinations; the first "
                                                                      "becomes the manager")
    init_parser.add_argument("--default-addr-pool", metavar="CIDR",
                             help="the swarm's address pool for overlay networks (docker swarm init's "
                                  "option), if 10.0.0.0/8 is taken where the hosts are")
    actions.add_parser("status", help="nodes, their GPUs, and the tasks on them")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        options = {key: value
                   for key, value in vars(args).items() if key in configuration.KEYS and value is not None}
        config = configuration.load(args.config, require_server=args.command != "cluster", **options)
        if (args.command == "sweep"
                or results.SWEEP_ID.fullmatch(str(getattr(args, "run_id", "")).split("/")[0])):
            from pystributed import sweep  # (a sweep, and what comes after its start)

            return sweep.command(config, args)
        return COMMANDS[args.command](config, args)
    except RemoteCellError as e:
        print(f"error: {e}", file=sys.stderr)
        return min(e.result.exit_code, 255) or EXIT_ERROR  # the cell's own exit code, for scripts
    except UnknownRun as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNKNOWN_RUN
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        # run and submit keep 1 for any failed step, as they always did.
        unreachable = args.command not in ("run", "submit") and _unreachable(e)
        return EXIT_UNREACHABLE if unreachable else EXIT_ERROR
    except PystributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _cluster():
    from pystributed import cluster

    return cluster


def _unreachable(error):
    text = error.output.lower()
    return (error.step == "connect" or error.code == 255 or "cannot connect to the docker daemon" in text
            or "permission denied while trying to connect" in text)


def _script(path):
    """FILE as given on the command line; the default (USER_CODE_PATH) is checked by the pipeline."""
    if path is not None and not os.path.isfile(path):
        raise PystributedError(f"{path}: no such file (FILE is the script to run; without it, the cell "
                               "%%save_for_remote saved to USER_CODE_PATH)")
    return path


def run(config, args):
    result = pipeline.run(config, code_path=_script(args.file), quiet=args.quiet,
                          features=features.for_run(config), engine=_lifecycle().on_cluster)
    if result.local_path:
        print(f"{result.run_id}: {len(result.shown_files)} file(s) in {result.local_path}")
    return 0


def submit(config, args):
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the run id alone: RUN=$(... submit)
        result = pipeline.run(config, code_path=_script(args.file), quiet=args.quiet, detach=True,
                              features=features.for_run(config), engine=_lifecycle().on_cluster)
    print(result.run_id)
    return 0


def logs(config, args):
    from pystributed import lifecycle

    lifecycle.logs(config, args.run_id, follow=args.follow)
    return 0


def status(config, args):
    from pystributed import lifecycle

    print(lifecycle.status(config, args.run_id))
    return 0


def wait(config, args):
    from pystributed import lifecycle

    run = lifecycle.wait(config, args.run_id)
    print(f"{run.run_id} {run.state}", file=sys.stderr)
    return EXIT_ERROR if run.exit_code is None else min(run.exit_code, 255)


def fetch(config, args):
    from pystributed import lifecycle

    result = lifecycle.fetch(config, args.run_id, quiet=args.quiet)
    print(f"{result.run_id}: {len(result.shown_files)} file(s) in {result.local_path}")
    return 0


def cancel(config, args):
    from pystributed import lifecycle

    run = lifecycle.cancel(config, args.run_id)
    print(f"{run.run_id} {run.state}")
    return 0


def list_runs(config, args):
    from pystributed import listing

    table = listing.list_runs(config)
    print(table.to_json() if args.json else table)
    return EXIT_UNREACHABLE if table.offline else 0


def clean(config, args):
    from pystributed import clean as cleaning

    def ask(plan):
        print(plan)
        if args.yes:
            return True
        if args.dry_run or not sys.stdin.isatty():
            return False
        return input("Remove these? [y/N] ").strip().lower() in ("y", "yes")

    plan = cleaning.clean(config, older_than=args.older_than, confirm=ask)
    if plan.empty:
        print(plan)
    elif plan.done:
        print("Removed.")
    else:
        print("Nothing removed" + ("" if args.dry_run else ": run again with --yes to remove these") + ".")
    return 0


COMMANDS = {"run": run, "submit": submit, "logs": logs, "status": status, "wait": wait, "fetch": fetch,
            "cancel": cancel, "list": list_runs, "clean": clean}
COMMANDS["cluster"] = lambda config, args: _cluster().command(config, args)
COMMANDS["attach"] = lambda config, args: print(_lifecycle().attach(config, args.run_id,
                                                                    quiet=args.quiet)) or 0


def _lifecycle():
    from pystributed import lifecycle

    return lifecycle
