"""Runs the saved cell inside the image as a notebook would, and hands its values back.

This file is copied into every image as /pystributed/cell_runner.py and run there by the image's
own Python (3.8 or newer), so it imports nothing from pystributed. It

- runs the definitions brought along from earlier cells (the part of the saved script above
  MARKER), then loads the `--in` variables (inputs.pkl next to this file), then the cell itself,
  compiled with the cell's own line numbers, in a module named __main__ (so that classes defined
  there pickle as they do in the notebook);
- keeps the value of the cell's last expression, as Jupyter shows it;
- pickles the `--out` variables and that value into $PYSTRIBUTED_RESULTS/.pystributed/, with
  report.json saying, for each name, whether it could be pickled.
"""
import ast
import builtins
import json
import linecache
import os
import pickle
import sys
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
# The saved script is HEAD, the earlier cells' definitions, MARKER, then the cell (see deps.py).
HEAD = "# Earlier cells this cell needs, brought along by pystributed (--no-deps leaves them out):\n"
MARKER = "# --- the cell ---\n"
EARLIER = "<earlier cells>"
VALUES_DIR = ".pystributed"
LAST = "<last expression>"  # its key in values.pkl: never a variable name
PROTOCOL = 4  # every Python 3.4+ reads it
VALUE_LIMIT = 200 * 1000 * 1000  # a bigger last value is only shown, not sent back
_this = None


def split(text):
    """(definitions from earlier cells, the cell) of a saved script."""
    if text.startswith(HEAD) and "\n" + MARKER in text:
        head, cell = text.split("\n" + MARKER, 1)
        return head + "\n", cell
    return "", text


def main(argv):
    path = os.path.abspath(argv[1])
    with open(path, encoding="utf-8") as f:
        head, cell = split(f.read())
    settings = _read_json(os.path.join(HERE, "settings.json")) or {}
    global _this
    _this = sys.modules["__main__"]  # this file's own module stays alive once the cell's takes its name
    module = types.ModuleType("__main__")
    module.__file__, module.__builtins__ = path, builtins
    sys.modules["__main__"] = module
    sys.argv = [path] + argv[2:]
    sys.path[0] = os.path.dirname(path)  # the cell imports the notebook folder's modules, as `python cell.py` would
    # Tracebacks show the cell's own lines, not the saved file's (which starts with the definitions).
    linecache.cache[path] = (len(cell), None, cell.splitlines(True), path)
    linecache.cache[EARLIER] = (len(head), None, head.splitlines(True), EARLIER)
    namespace = module.__dict__
    try:
        # The --in values first, since the definitions may read them (`def f(k=K)`); those whose
        # class is one of the definitions (a class defined in the notebook) once that exists.
        pending = load_inputs(read_inputs(os.path.join(HERE, "inputs.pkl")), namespace, strict=False)
        if head:
            exec(compile(head, EARLIER, "exec"), namespace)  # noqa: S102 (running the cell is the point)
        load_inputs(pending, namespace, strict=True)
        value = run_cell(cell, path, namespace)
    except Exception:  # noqa: BLE001 (whatever the cell raises is reported as its traceback)
        kind, error, tb = sys.exc_info()
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # the cell's traceback, without this file's frames
        traceback.print_exception(kind, error, tb)
        return 1
    if settings:  # a notebook is waiting for them (`python -m pystributed run` is not)
        results = os.path.join(os.environ.get("PYSTRIBUTED_RESULTS", "."), VALUES_DIR)
        save_values(results, namespace, settings["out"], value)
    return 0


def read_inputs(path):
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        return pickle.load(f)


def load_inputs(pickles, namespace, *, strict):
    """Unpickle {name: pickle} into `namespace`; return those that failed (or raise, if `strict`)."""
    failed = {}
    for name, data in pickles.items():
        try:
            namespace[name] = pickle.loads(data)
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            if strict:
                raise RuntimeError(f"--in {name} could not be unpickled in the image ({type(e).__name__}: {e}); "
                                   "its type's module must be installed in the image") from None
            failed[name] = data
    return failed


def run_cell(cell, path, namespace):
    """Run the cell; return its last expression's value, or None (also when it ends with `;`)."""
    tree = ast.parse(cell, path)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not cell.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, path, "exec"), namespace)  # noqa: S102 (running the cell is the point)
    return None if last is None else eval(compile(last, path, "eval"), namespace)


def save_values(folder, namespace, out, value):
    report = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "out": {}, "value": None}
    pickles = {}
    for name in out:
        if name not in namespace:
            report["out"][name] = "was never assigned"
            continue
        try:
            pickles[name] = pickle.dumps(namespace[name], PROTOCOL)
            report["out"][name] = "ok"
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            report["out"][name] = f"could not be pickled ({type(e).__name__}: {e})"
    if value is not None:
        report["value"] = {"type": type(value).__name__, "repr": _repr(value), "pickled": False}
        try:
            data = pickle.dumps(value, PROTOCOL)
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            report["value"]["why"] = f"{type(e).__name__}: {e}"
        else:
            if len(data) <= VALUE_LIMIT:
                pickles[LAST], report["value"]["pickled"] = data, True
            else:
                report["value"]["why"] = f"its pickle is {len(data)} bytes; use --out to bring it back"
    if not out and value is None:
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "values.pkl"), "wb") as f:
        pickle.dump(pickles, f, PROTOCOL)
    with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


def _repr(value, limit=10000):
    try:
        text = repr(value)
    except Exception as e:  # noqa: BLE001 (user objects raise anything)
        return f"<{type(value).__name__}: repr failed: {e}>"
    return text if len(text) <= limit else text[:limit] + " ..."


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
