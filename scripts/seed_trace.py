"""Trace the seed path as it runs: what a newcomer reads to follow a plain run, measured, not chosen.

Each front door is traced on its own, against the server the environment names (the sandbox: `eval
"$(scripts/sandbox.sh env)"`), in a fresh temporary folder with no config.py and a new cell that writes a
file into $PYSTRIBUTED_RESULTS, in a Python process of its own that traces itself with sys.settrace and
threading.settrace (stdlib only):

  cli       `python -m pystributed run cell.py` as a rerun after a one-line change of the cell: a first
            run (not traced) builds, pushes and pulls the image; the cell's last line changes; the rerun
            is traced (the cell's files go over that image's, features/cell_mount.py; the script checks
            that it did)
  notebook  in an IPython InteractiveShell: `import pystributed.main as runner`, the cell under
            `%%save_for_remote`, then `runner.main()` (a first run: it builds, pushes and pulls)

What counts: statements, not physical lines. Each line executed inside a function of the traced package
(methods, lambdas and generator expressions included) stands for the innermost statement (`ast`) that
holds it, counted once wherever its lines are hit: a statement folded over three lines counts 1, as it
does unfolded, so no formatting changes the figure (ruff's E701/E702 keep two statements off one line).
A decorator counts as the def it decorates. A module's own statements and class bodies are not counted:
they run once, at import, and declare what the functions do. Nor are docstrings and comments (never
executed), nor what runs in the container (cell_runner.py, task_runner.py), nor server.sh. The package
is the one the traced Python imports, run outside any checkout with PYTHONSAFEPATH=1: the installed
wheel (`scripts/build_wheel.sh`, then pip install it), or a checkout on PYTHONPATH.

    eval "$(scripts/sandbox.sh env)"
    python3 scripts/seed_trace.py            # per door: per file, the total, its limit; exit 1 above one
    python3 scripts/seed_trace.py --lines    # also each counted statement's first line: FILE:LINE: text
    python3 scripts/seed_trace.py --functions    # also the statements executed in each function
    python3 scripts/seed_trace.py --json     # {"package", "doors": {DOOR: {"statements", "lines",
                                             #  "limit", "files": {FILE: [first lines]},
                                             #  "functions": {"FILE:FUNCTION": statements}}}}
"""
import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

# Issue #25's limits, in statements: the CLI's rerun after a change, the notebook's run.
LIMITS = {"cli": 700, "notebook": 800}
DOORS = {"cli": "`python -m pystributed run cell.py`, a rerun after a one-line change of the cell",
         "notebook": "%%save_for_remote, then runner.main(), in IPython"}
# A new cell each time (its first line), so that each traced first run builds, pushes and pulls an image of
# its own; the cli door's rerun changes its last line (VALUE).
CELL = ("# seed trace {}\nimport os\nopen(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), "
        "'w').write('{}')\n")

# Run as `python -c TRACER OUT MODE`: trace this process's package functions, run MODE, write OUT.
TRACER = r'''
import importlib.util, inspect, json, os, sys, threading

out, mode = sys.argv[1], sys.argv[2]
package = os.path.realpath(importlib.util.find_spec("pystributed").submodule_search_locations[0])
executed = set()


def lines(frame, event, arg):
    if event == "line":
        executed.add((frame.f_code.co_filename, frame.f_lineno))
    return lines


def calls(frame, event, arg):
    code = frame.f_code  # a function's frame (CO_NEWLOCALS): not a module's or a class body's
    if (code.co_flags & inspect.CO_NEWLOCALS
            and os.path.realpath(code.co_filename).startswith(package + os.sep)):
        return lines
    return None


def run_cli():
    import runpy
    sys.argv = ["-m", "run", "cell.py"]
    try:
        runpy.run_module("pystributed", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code:
            raise


def run_notebook():
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    for cell in ["import pystributed.main as runner", "%%save_for_remote\n" + CELL, "result = runner.main()"]:
        shell.run_cell(cell).raise_error()
    if shell.user_ns["result"].exit_code != 0:
        raise SystemExit(f"the run failed: {shell.user_ns['result']}")


CELL = sys.argv[3]
threading.settrace(calls)
sys.settrace(calls)
try:
    run_cli() if mode == "cli" else run_notebook()
finally:
    sys.settrace(None)
    threading.settrace(None)
    while True:
        try:
            found = sorted({(os.path.relpath(os.path.realpath(f), package), n) for f, n in list(executed)})
            break
        except RuntimeError:  # a thread still tracing added a line meanwhile
            pass
    with open(out, "w") as f:
        json.dump({"package": package, "lines": found}, f)
'''


def run(folder, env, *args):
    """The process of `python ARGS` in FOLDER, exited 0 (or the script exits, saying why)."""
    proc = subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    if proc.returncode:
        sys.exit(f"{args[:2]} in {folder} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def traced_run(door):
    """(the traced package's folder, {(file, line)} executed) of one door's seed run in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix=f"pystributed-seed-trace-{door}-") as folder:
        tag = uuid.uuid4().hex
        cell = CELL.format(tag, "42")
        env = {**os.environ, "PYTHONSAFEPATH": "1"}
        if door == "cli":
            Path(folder, "cell.py").write_text(cell, encoding="utf-8")
            run(folder, env, "-m", "pystributed", "run", "cell.py")  # the first run, not traced
            cell = CELL.format(tag, "43")  # the one-line change
            Path(folder, "cell.py").write_text(cell, encoding="utf-8")
        out = Path(folder, ".trace.json")
        run(folder, env, "-c", TRACER, str(out), door, cell)
        if door == "cli":
            runs = [json.loads(path.read_text(encoding="utf-8"))
                    for path in Path(folder, "results", ".runs").glob("*.json")]
            if len(runs) != 2 or sum(bool(r.get("cell_archive")) for r in runs) != 1:
                sys.exit(f"the cli door's rerun was not a rerun over the first run's image: {runs}")
        found = json.loads(out.read_text(encoding="utf-8"))
        return found["package"], {(file, line) for file, line in found["lines"]}


def statement_starts(tree):
    """{line: the first line of the innermost statement that holds it} over a module (a decorator's lines
    are its def's)."""
    starts = {}

    def visit(node):  # an outer statement first, so that the statements inside it take their own lines
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                first = min([child.lineno] + [d.lineno for d in getattr(child, "decorator_list", [])])
                starts.update(dict.fromkeys(range(first, child.end_lineno + 1), child.lineno))
            visit(child)

    visit(tree)
    return starts


def counted(package, executed):
    """{file: {first line: its text}} of the statements the executed lines belong to."""
    files, trees = {}, {}
    for file, line in sorted(executed):
        if file not in trees:
            source = Path(package, file).read_text(encoding="utf-8")
            trees[file] = source.splitlines(), statement_starts(ast.parse(source))
        text, starts = trees[file]
        if line in starts:  # not, for a line outside every statement (none holds code)
            files.setdefault(file, {})[starts[line]] = text[starts[line] - 1]
    return {file: dict(sorted(lines.items())) for file, lines in files.items()}


def physical(package, executed):
    """How many executed lines hold code (no blank or comment line): the figure before statements, to
    compare."""
    texts = {file: Path(package, file).read_text(encoding="utf-8").splitlines() for file, _ in executed}
    return sum(1 for file, line in executed if texts[file][line - 1].strip()
               and not texts[file][line - 1].strip().startswith("#"))


def definitions(node, prefix=""):
    """(first line, last line, qualified name) of every def below node, outer ones first."""
    for child in ast.iter_child_nodes(node):
        named = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if named and not isinstance(child, ast.ClassDef):
            yield child.lineno, child.end_lineno, prefix + child.name
        yield from definitions(child, f"{prefix}{child.name}." if named else prefix)


def functions(package, files):
    """{"FILE:QUALNAME": statements executed} of the innermost function around each counted statement."""
    counts = {}
    for file, lines in files.items():
        spans = list(definitions(ast.parse(Path(package, file).read_text(encoding="utf-8"))))
        for line in lines:
            name = max((span for span in spans if span[0] <= line <= span[1]), default=(0, 0, "?"))[2]
            counts[f"{file}:{name}"] = counts.get(f"{file}:{name}", 0) + 1
    return counts


def measure(package, executed, limit):
    files = counted(package, executed)
    return {"statements": sum(len(lines) for lines in files.values()), "lines": physical(package, executed),
            "limit": limit, "files": files, "functions": functions(package, files)}


def show(door, figures, args):
    print(f"{door}: {DOORS[door]}")
    if args.lines:
        for file, lines in figures["files"].items():
            for line, text in lines.items():
                print(f"{file}:{line}: {text}")
        print()
    if args.functions:
        for name, count in sorted(figures["functions"].items(), key=lambda item: (-item[1], item[0])):
            print(f"{count:5}  {name}")
        print()
    for file, lines in sorted(figures["files"].items(), key=lambda item: (-len(item[1]), item[0])):
        print(f"{len(lines):5}  {file}")
    over = "  OVER" if figures["statements"] > figures["limit"] else ""
    print(f"{figures['statements']:5}  statements in all, in {len(figures['files'])} files, at most "
          f"{figures['limit']}{over} ({figures['lines']} physical lines)\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for door, limit in LIMITS.items():
        parser.add_argument(f"--{door}-limit", type=int, default=limit,
                            help=f"exit 1 above this many statements on the {door} door (default {limit})")
    parser.add_argument("--lines", action="store_true", help="print each counted statement's first line")
    parser.add_argument("--functions", action="store_true", help="print the statements of each function")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not os.environ.get("PYSTRIBUTED_REMOTE_SERVER"):
        sys.exit("PYSTRIBUTED_REMOTE_SERVER is not set: eval \"$(scripts/sandbox.sh env)\" first (seed runs "
                 "against the sandbox)")
    packages, doors = set(), {}
    for door in LIMITS:
        package, executed = traced_run(door)
        packages.add(package)
        doors[door] = measure(package, executed, getattr(args, f"{door}_limit"))
    if len(packages) != 1:
        sys.exit(f"the doors' runs imported different packages: {sorted(packages)}")
    package = packages.pop()
    if args.json:
        for figures in doors.values():
            figures["files"] = {file: sorted(lines) for file, lines in figures["files"].items()}
        print(json.dumps({"package": package, "doors": doors}, indent=1))
    else:
        print(f"traced pystributed in {package}: the statements executed inside its functions, per door\n")
        for door, figures in doors.items():
            show(door, figures, args)
    return 1 if any(figures["statements"] > figures["limit"] for figures in doors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
