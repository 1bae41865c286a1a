"""Trace the seed path as it runs: what a newcomer reads to follow a plain run, measured, not chosen.

Two real seed runs against the server the environment names (the sandbox: `eval "$(scripts/sandbox.sh
env)"`), each in a fresh temporary folder with no config.py and a new cell that writes a file into
$PYSTRIBUTED_RESULTS, each in a Python process of its own that traces itself with sys.settrace and
threading.settrace (stdlib only):

  cli     `python -m pystributed run cell.py`
  magic   in an IPython InteractiveShell: `import pystributed.main as runner`, the cell under
          `%%save_for_remote`, then `runner.main()`

What counts: the (file, line) pairs executed inside functions of the installed package (methods,
lambdas and generator expressions included). A module's own lines and class bodies are not counted:
they run once, at import, and declare what the functions do. Nor are blank lines and comments (never
executed), nor what runs in the container (cell_runner.py, task_runner.py), nor server.sh. The
package is the one the traced Python imports, run outside this checkout with PYTHONSAFEPATH=1: the
installed wheel (`scripts/build_wheel.sh`, then pip install it).

    eval "$(scripts/sandbox.sh env)"
    python3 scripts/seed_trace.py            # per file, the total, the number of files; exit 1 above --limit
    python3 scripts/seed_trace.py --lines    # also every executed line: FILE:LINE: text
    python3 scripts/seed_trace.py --functions    # also the lines executed in each function
    python3 scripts/seed_trace.py --json     # {"package", "total", "limit", "files": {FILE: [lines]},
                                             #  "functions": {"FILE:FUNCTION": lines}}
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

LIMIT = 600
# A new cell each time (its first line), so that each run builds, pushes and pulls an image of its own.
CELL = ("# seed trace {}\nimport os\nopen(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), "
        "'w').write('42')\n")

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


def run_magic():
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
    run_cli() if mode == "cli" else run_magic()
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


def traced_run(mode):
    """(the traced package's folder, {(file, line)}) of one seed run in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix=f"pystributed-seed-trace-{mode}-") as folder:
        cell = CELL.format(uuid.uuid4().hex)
        if mode == "cli":
            Path(folder, "cell.py").write_text(cell, encoding="utf-8")
        out = Path(folder, ".trace.json")
        env = {**os.environ, "PYTHONSAFEPATH": "1"}
        proc = subprocess.run([sys.executable, "-c", TRACER, str(out), mode, cell], cwd=folder, env=env,
                              capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode or not out.is_file():
            sys.exit(f"the {mode} run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        found = json.loads(out.read_text(encoding="utf-8"))
        return found["package"], {(file, line) for file, line in found["lines"]}


def code_lines(package, executed):
    """{file: {line: text}} of the executed lines that hold code (no blank or comment line)."""
    files = {}
    for file, line in sorted(executed):
        text = Path(package, file).read_text(encoding="utf-8").splitlines()[line - 1]
        if text.strip() and not text.strip().startswith("#"):
            files.setdefault(file, {})[line] = text
    return files


def definitions(node, prefix=""):
    """(first line, last line, qualified name) of every def below node, outer ones first."""
    for child in ast.iter_child_nodes(node):
        named = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if named and not isinstance(child, ast.ClassDef):
            yield child.lineno, child.end_lineno, prefix + child.name
        yield from definitions(child, f"{prefix}{child.name}." if named else prefix)


def functions(package, files):
    """{"FILE:QUALNAME": lines executed} of the innermost function around each executed line."""
    counts = {}
    for file, lines in files.items():
        spans = list(definitions(ast.parse(Path(package, file).read_text(encoding="utf-8"))))
        for line in lines:
            name = max((span for span in spans if span[0] <= line <= span[1]), default=(0, 0, "?"))[2]
            counts[f"{file}:{name}"] = counts.get(f"{file}:{name}", 0) + 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=LIMIT, help="exit 1 above this many lines "
                                                                 f"(default {LIMIT})")
    parser.add_argument("--lines", action="store_true", help="print every executed line, FILE:LINE: text")
    parser.add_argument("--functions", action="store_true", help="print the lines executed in each function")
    parser.add_argument("--json", action="store_true", help="print the traced lines as JSON")
    args = parser.parse_args()
    if not os.environ.get("PYSTRIBUTED_REMOTE_SERVER"):
        sys.exit("PYSTRIBUTED_REMOTE_SERVER is not set: eval \"$(scripts/sandbox.sh env)\" first (seed runs "
                 "against the sandbox)")
    packages, executed = set(), set()
    for mode in ("cli", "magic"):
        package, found = traced_run(mode)
        packages.add(package)
        executed |= found
    if len(packages) != 1:
        sys.exit(f"the two runs imported different packages: {sorted(packages)}")
    package = packages.pop()
    files = code_lines(package, executed)
    total = sum(len(lines) for lines in files.values())
    if args.json:
        print(json.dumps({"package": package, "total": total, "limit": args.limit,
                          "files": {file: sorted(lines) for file, lines in files.items()},
                          "functions": functions(package, files)}, indent=1))
    else:
        print(f"traced pystributed in {package}: `python -m pystributed run FILE` and runner.main() after "
              "%%save_for_remote, lines executed inside functions")
        if args.lines:
            for file, lines in files.items():
                for line, text in lines.items():
                    print(f"{file}:{line}: {text}")
            print()
        if args.functions:
            for name, count in sorted(functions(package, files).items(),
                                      key=lambda item: (-item[1], item[0])):
                print(f"{count:5}  {name}")
            print()
        for file, lines in sorted(files.items(), key=lambda item: (-len(item[1]), item[0])):
            print(f"{len(lines):5}  {file}")
        print(f"{total:5}  in all, in {len(files)} files (at most {args.limit})")
    return 0 if total <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
