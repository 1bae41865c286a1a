"""Runs the saved cell inside the image as a notebook would, and hands its values back.

This file is copied into every image as /pystributed/cell_runner.py and run there by the image's
own Python (3.8 or newer), so it imports nothing from pystributed. It

- runs the definitions brought along from earlier cells (the part of the saved script above
  MARKER), then loads the `--in` variables (inputs.pkl next to this file), then the cell itself,
  compiled with the cell's own line numbers, in a module named __main__ (so that classes defined
  there pickle as they do in the notebook);
- keeps the value of the cell's last expression, as Jupyter shows it;
- pickles the `--out` variables and that value into $PYSTRIBUTED_RESULTS/.pystributed/, with
  report.json saying, for each name, whether it could be pickled;
- shows figures (saved in $PYSTRIBUTED_RESULTS/figures/) and display(obj) with markers on stdout (Shown).
"""
import ast
import base64
import builtins
import importlib.machinery
import importlib.util
import io
import json
import linecache
import os
import pathlib
import pickle
import pickletools
import re
import sys
import threading
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
# The saved script is HEAD, the earlier cells' definitions, MARKER, then the cell (see deps.py).
HEAD = "# Earlier cells this cell needs, brought along by pystributed (--no-deps leaves them out):\n"
MARKER = "# --- the cell ---\n"
EARLIER = "<earlier cells>"
VALUES_DIR = ".pystributed"
LAST = "<last expression>"  # its key in values.pkl: never a variable name
# 5 is read by every Python 3.8+ (the kernel's and the image's may differ: 3.12 and 3.11), and takes NumPy
# arrays and tensors without a copy; an image's Python 3.7 writes 4.
PROTOCOL = min(5, pickle.HIGHEST_PROTOCOL)
VALUE_LIMIT = 200 * 1000 * 1000  # a bigger last value is only shown, not sent back
_this = None
# Docker passes a container's output on a line at a time: a line left open (a progress bar that
# redraws itself with \r, a print(end="")) would show only once it ends. So a line left open for
# a moment is ended with PARTIAL, which pystributed takes out again where it shows the output.
PARTIAL = "\x1b]pystributed\x07\n"
# What the cell shows: MARK, JSON {"data": MIME bundle, "metadata", "file": "figures/NNN.png"}, END; with at
# most SHOW_LIMIT characters (else only its text), none in a sweep's task (shown at the end from its folder).
MARK, END = "\x1b]pystributed;", "\x07\n"
SHOW_LIMIT = 10 * 1000 * 1000
BACKEND = "pystributed_figures"  # a module made here (Shown), not a file: nothing is installed
REPRS = [("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_"), ("text/latex", "_repr_latex_"),
         ("image/svg+xml", "_repr_svg_"), ("image/png", "_repr_png_"), ("image/jpeg", "_repr_jpeg_"),
         ("application/json", "_repr_json_"), ("application/pdf", "_repr_pdf_")]
FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "jpeg": "image/jpeg"}


def split(text):
    """(definitions from earlier cells, the cell) of a saved script."""
    if text.startswith(HEAD) and "\n" + MARKER in text:
        head, cell = text.split("\n" + MARKER, 1)
        return head + "\n", cell
    return "", text


class OpenLines:
    """A text stream that ends a line left open for `wait` seconds with PARTIAL. Only a line open
    that long: print() writes its text and its newline apart, and the mark between them would
    split that line in two wherever the output is read raw."""

    def __init__(self, stream, wait=0.1):
        self._stream, self._lock, self._open_since = stream, threading.Lock(), None
        threading.Thread(target=self._end_open_line, args=(wait,), daemon=True).start()

    def write(self, text):
        with self._lock:
            written = self._stream.write(text)
            if text.endswith("\n"):
                self._open_since = None
            elif text and (self._open_since is None or "\n" in text):  # a new line opened
                self._open_since = time.monotonic()
        return written

    def _end_open_line(self, wait):
        while True:
            time.sleep(wait / 2)
            with self._lock:
                if self._open_since is not None and time.monotonic() - self._open_since >= wait:
                    self._stream.write(PARTIAL)
                    self._stream.flush()
                    self._open_since = None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv):
    sys.stdout, sys.stderr = OpenLines(sys.stdout), OpenLines(sys.stderr)
    builtins.display, sys.meta_path[:0] = display, [Shown]  # display() needs no import, as in a notebook
    path = os.path.abspath(argv[1])
    with open(path, encoding="utf-8") as f:
        head, cell = split(f.read())
    saved = pathlib.Path(HERE, "settings.json")  # (values.py's, for a notebook's run)
    settings = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else {}
    global _this
    _this = sys.modules["__main__"]  # this file's own module stays alive once the cell's takes its name
    module = types.ModuleType("__main__")
    module.__file__, module.__builtins__ = path, builtins
    sys.modules["__main__"] = module
    sys.argv = [path] + argv[2:]
    # the cell imports the notebook folder's modules, as `python cell.py` would
    sys.path[0] = os.path.dirname(path)
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
        load_inputs(pending, namespace, strict=True, sender=settings)
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


def load_inputs(pickles, namespace, *, strict, sender=None):
    """Unpickle {name: pickle} into `namespace`; return those that failed (or raise, if `strict`,
    naming what it needs and how the notebook that pickled it differs: `sender`, its settings.json)."""
    failed = {}
    for name, data in pickles.items():
        try:
            namespace[name] = pickle.loads(data)
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            if strict:
                sender = sender or {}
                problem = load_problem(e, data,
                                       made=("in the notebook", sender.get("python"), sender.get("modules")),
                                       here="in the image")
                raise RuntimeError(f"--in {name} could not be unpickled in the image ({problem}). Install "
                                   "what it needs in the image (REQUIREMENTS), in the notebook's version, or "
                                   "send what it is made from instead") from None
            failed[name] = data
    return failed


def modules_of(data, limit=None):
    """The modules whose classes and functions a pickle names, in order, read without loading it
    (not pickle's own: builtins, copyreg, _codecs, and their Python 2 names, always there); in its
    first `limit` bytes only, if given (a large array's data comes after the names it needs)."""
    found, last, memo = [], [None, None], {}
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(memoryview(data)[:limit] if limit else data)):
            kind = opcode.name
            if kind in ("GLOBAL", "INST"):  # "module name"
                found.append(arg.split(" ", 1)[0])
            elif kind == "STACK_GLOBAL" and isinstance(last[-2], str):
                found.append(last[-2])  # the module and the name were pushed just before
            if kind == "MEMOIZE":
                memo[len(memo)] = last[-1]
            elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = last[-1]
            elif kind in ("GET", "BINGET", "LONG_BINGET"):
                last.append(memo.get(arg))
            elif kind not in ("PROTO", "FRAME", "STOP"):
                last.append(arg if "UNICODE" in kind else None)
            del last[:-2]
    except Exception:  # noqa: BLE001, S110 (a truncated pickle: what was read so far)
        pass
    return [m for m in dict.fromkeys(found) if m not in ("builtins", "__builtin__", "copyreg", "copy_reg",
                                                         "_codecs")]


def versions(pickles):
    """{package: its version here} of the packages the pickles take classes from."""
    found = {}
    for data in pickles:
        for module in modules_of(data, limit=1 << 20):
            top = module.split(".")[0]
            version = getattr(sys.modules.get(top), "__version__", None)
            if isinstance(version, str):
                found[top] = version
    return found


def load_problem(error, data, *, made, here):
    """Why `data` could not be loaded `here` ("here", "in the image"): the error, the module it
    needs, and the Python and that module's version on each side. `made`: (where it was pickled,
    its Python, {package: version} there)."""
    where, python, their_versions = made
    module = error.name if isinstance(error, ImportError) and error.name else None
    if not module:  # AttributeError: Can't get attribute 'Thing' on <module 'lib' from ...>
        found = re.search(r"<module '([^']+)'", str(error))
        module = found.group(1) if found else None
    needs = [module] if module else modules_of(data)
    tops = list(dict.fromkeys(m.split(".")[0] for m in needs))
    theirs = [f"{top} {(their_versions or {})[top]}" for top in tops if top in (their_versions or {})]
    ours = [f"{top} {_version_here(top)}" for top in tops if _version_here(top)]
    text = f"{type(error).__name__}: {error}"
    if needs:
        text += f"; it needs module{'s' if len(needs) > 1 else ''} {', '.join(needs)}"
    text += f"; pickled {where} by Python {python or 'unknown'}" + (f" with {', '.join(theirs)}"
                                                                    if theirs else "")
    text += f", loaded {here} by Python {sys.version_info[0]}.{sys.version_info[1]}"
    return text + (f" with {', '.join(ours)}" if ours else "")


def _version_here(top):
    if top == "__main__":
        return ""
    if top not in sys.modules:
        return "not installed"
    version = getattr(sys.modules[top], "__version__", None)
    return version if isinstance(version, str) else ""


def run_cell(cell, path, namespace):
    """Run the cell; return its last expression's value, or None (also when it ends with `;`)."""
    tree = ast.parse(cell, path)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not cell.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    try:
        exec(compile(tree, path, "exec"), namespace)  # noqa: S102 (running the cell is the point)
        return None if last is None else eval(compile(last, path, "eval"), namespace)
    finally:
        Shown.figures()  # those left open, as a notebook shows them at the cell's end (also after an error)


def save_values(folder, namespace, out, value):
    report = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "out": {}, "value": None,
              "modules": {}}  # the version here of the packages the pickles take classes from
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
        if not report["value"]["pickled"] and len(bundle(value)[0]) > 1:  # a table, an image: shown as it is
            display(value)
    if not out and value is None:
        return
    report["modules"] = versions(pickles.values())
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


class Shown(importlib.machinery.PathFinder):
    """What the cell shows. An import hook (sys.meta_path): matplotlib's backend is BACKEND (unless MPLBACKEND
    names one; not set in os.environ, which a subprocess inherits), IPython's display() is ours."""

    count = 0  # figures saved so far
    formats = tuple(os.environ.get("PYSTRIBUTED_FIGURE_FORMATS", "png").split(","))  # the notebook's

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == BACKEND:
            return importlib.util.spec_from_loader(name, cls)
        patch = PATCHES.get(name)
        spec = super().find_spec(name, path, target) if patch else None  # the module's own file
        if spec is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module
            spec.loader.exec_module = lambda module: (run(module), patch(module))
        return spec

    create_module = staticmethod(lambda spec: None)

    @staticmethod
    def exec_module(module):  # BACKEND: Agg's canvas, our show()
        from matplotlib.backends import backend_agg  # type: ignore[import-not-found]  # (the image's)

        module.FigureCanvas, module.FigureManager = backend_agg.FigureCanvasAgg, backend_agg.FigureManagerBase
        module.show = lambda *args, **kwargs: Shown.figures()

    @classmethod
    def figures(cls):
        """Save and show each open figure, then close it (as the notebook's inline backend does)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or pyplot.get_backend() != "module://" + BACKEND:
            return  # no figure, or the cell chose its own backend
        for number in pyplot.get_fignums():
            cls.figure(pyplot.figure(number))
        pyplot.close("all")

    @classmethod
    def figure(cls, fig, **at):
        """Save `fig` as figures/NNN.png (and in the notebook's other figure formats, FORMATS); show it."""
        cls.count += 1
        name, folder = f"figures/{cls.count:03d}", os.environ.get("PYSTRIBUTED_RESULTS", ".")
        os.makedirs(os.path.join(folder, "figures"), exist_ok=True)
        data = {"text/plain": _repr(fig)}
        for fmt in dict.fromkeys(["png", *(f for f in cls.formats if f in FORMATS)]):
            fig.savefig(os.path.join(folder, f"{name}.{fmt}"), format=fmt, bbox_inches="tight")
            with open(os.path.join(folder, f"{name}.{fmt}"), "rb") as f:
                data[FORMATS[fmt]] = f.read().decode() if fmt == "svg" else f.read()  # (SVG is text)
        show(data, {}, file=name + ".png", **at)


# Changed as they load (Shown): matplotlib's backend (unless MPLBACKEND names one), IPython's display().
PATCHES = {"matplotlib": lambda m: "MPLBACKEND" in os.environ
           or m.rcParams.update(backend="module://" + BACKEND),
           **dict.fromkeys(["IPython.core.display_functions", "IPython.core.display"],
                           lambda m: setattr(m, "display", display))}


def display(*objs, raw=False, metadata=None, display_id=None, update=False, **kwargs):
    """IPython's display(), here: each object's MIME bundle goes to the notebook (show); with a
    display_id, a handle whose update() replaces it there (IPython's update_display too)."""
    at = {"display_id": os.urandom(8).hex() if display_id is True else display_id, "update": update}
    for obj in objs:
        if raw and isinstance(obj, dict):
            show(obj, metadata or {}, **at)
        elif type(obj).__module__ == "matplotlib.figure":  # saved and shown as plt.show() does
            Shown.figure(obj, **at)
        else:
            show(*bundle(obj), **at)
    return types.SimpleNamespace(display_id=at["display_id"], update=lambda obj, **kw: display(
        obj, display_id=at["display_id"], update=True, **kw)) if at["display_id"] else None


def bundle(obj):
    """({MIME type: data}, metadata) of `obj`, as Jupyter's formatters make it (near enough)."""
    data, metadata = {}, {}
    for mime, method in [(None, "_repr_mimebundle_")] + REPRS:
        try:
            got = getattr(obj, method)() if callable(getattr(obj, method, None)) else None
        except Exception:  # noqa: BLE001, S112 (a repr that fails is left out, as in a notebook)
            continue
        got, meta = got if isinstance(got, tuple) and len(got) == 2 else (got, None)
        if mime is None and isinstance(got, dict):
            data.update(got)
            metadata.update(meta or {})
        elif got is not None and mime not in data:
            data[mime] = got
            metadata.update({mime: meta} if meta else {})
    return {**data, "text/plain": data.get("text/plain") or _repr(obj)}, metadata


def show(data, metadata, file=None, **at):
    """Put a marker on stdout (MARK): pystributed shows `data` in the notebook, in order with the prints."""
    data = {mime: base64.b64encode(v).decode() if isinstance(v, bytes) else v for mime, v in data.items()}
    text = json.dumps({"data": data, "metadata": metadata, "file": file, **at}, default=str)
    in_sweep = os.path.exists(os.path.join(HERE, "sweep.pkl"))
    if in_sweep or len(text) > SHOW_LIMIT:
        why = "" if in_sweep else f" [too big to show here: {len(text)} characters, over {SHOW_LIMIT}]"
        plain = str(data.get("text/plain", ""))[:10000] + why
        text = json.dumps({"data": {"text/plain": plain}, "file": file, "dropped": True, **at})
    sys.stdout.write(MARK + text + END)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
