"""Variables in and out of a run: `--in x,y` pickles notebook variables into the build context,
`--out a,b` brings variables back into the notebook, and the cell's last expression comes back
as its value. The image side is cell_runner.py; this is the notebook side."""
import json
import keyword
import pickle
import sys
from pathlib import Path

from pystributed import cell_runner, docker, results
from pystributed.errors import PystributedError
from pystributed.features import Feature

# The image's Python, by image id (an id names one content, so the answer never goes stale).
_pythons: dict[str, str] = {}


def names(value, option):
    """A list of variable names from "a,b" or ["a", "b"]; refuse anything that is not one."""
    if value is None:
        return []
    words = value.split(",") if isinstance(value, str) else list(value)
    words = [w.strip() for w in words if w.strip()]
    for word in words:
        if not word.isidentifier() or keyword.iskeyword(word):
            raise PystributedError(f"{option} {word!r}: not a variable name (give names separated by commas, "
                                   f"e.g. {option} result,model)")
    return list(dict.fromkeys(words))


class Exchange(Feature):
    """What one run takes in and hands back. `namespace`: the notebook's variables (IPython's
    user namespace), where --in values are read and --out values land."""

    def before_pack(self, run):
        run.runner_files.update(self.runner_files())

    def before_build(self, run):
        if not (self.inputs or self.out):
            return  # nothing is pickled: the image's Python does not matter
        on_server = run.config.TRANSPORT == "remote-build"
        self.check_python(run.config, run.place.docker if on_server else docker.here, on_server=on_server)

    def finished(self, run):
        self.collect(run.result)

    def __init__(self, *, inputs=None, out=None, namespace=None):
        self.inputs, self.out = names(inputs, "--in"), names(out, "--out")
        self.namespace = namespace

    @classmethod
    def of_run(cls, result, *, namespace=None):
        """The exchange a fetched run was started with (for attach: its --out names)."""
        report, _ = _read(Path(result.local_path) / cell_runner.VALUES_DIR)
        return cls(out=list(report["out"]) if report else [], namespace=namespace)

    def runner_files(self):
        """The files next to cell_runner.py in the image: which names to send back, and this kernel's
        Python and the versions of the packages the --in pickles need (named if one cannot be loaded
        there); the --in pickles."""
        pickles = self._pickled_inputs() if self.inputs else {}
        settings = {"out": self.out, "python": here_python(),
                    "modules": cell_runner.versions(pickles.values())}
        files = {"settings.json": json.dumps(settings).encode()}
        if self.inputs:
            files["inputs.pkl"] = pickle.dumps(pickles, cell_runner.PROTOCOL)
        return files

    def _pickled_inputs(self):
        pickles = {}
        for name in self.inputs:
            if self.namespace is None or name not in self.namespace:
                raise PystributedError(f"--in {name}: there is no variable {name} in the notebook; "
                                       "nothing was built")
            try:
                pickles[name] = pickle.dumps(self.namespace[name], cell_runner.PROTOCOL)
            except Exception as e:  # noqa: BLE001 (user objects raise anything)
                raise PystributedError(f"--in {name} could not be pickled ({type(e).__name__}: {e}); nothing "
                                       "was built. Send what it is made from instead, or build "
                                       "it in the cell.") from None
        return pickles

    def check_python(self, config, engine, *, on_server):
        """Warn, before building, when the image's Python is not this kernel's: plain values cross
        (pickle protocol 5, read by every Python 3.8+), an object of a module that differs between
        the two may not, and is then named with both versions (cell_runner.load_problem)."""
        here, there = here_python(), image_python(config, engine, on_server=on_server)
        if there != here:
            print(f"warning: --in/--out: this kernel runs Python {here} and BASE_IMAGE {config.BASE_IMAGE} "
                  f"Python {there}. Plain values (numbers, strings, lists, dicts, NumPy arrays, tensors) "
                  "cross; an object whose module differs between the two may not load, and is then named. "
                  f"The same Python on both sides avoids it (BASE_IMAGE = 'python:{here}-slim', or a kernel "
                  f"with Python {there}).",
                  file=sys.stderr)

    def collect(self, result):
        """Load what the run handed back into result.values and result.value, and the --out
        variables into the notebook. Raise naming each variable that did not come back."""
        folder = Path(result.local_path) / cell_runner.VALUES_DIR
        report, pickles = _read(folder)
        values, problems = {}, []
        for name in self.out:
            status = report["out"].get(name, "was not saved (did the cell call sys.exit()?)") if report else (
                "was not saved (did the cell call sys.exit()?)")
            if status != "ok":
                problems.append(f"{name} {status}")
                continue
            try:
                values[name] = pickle.loads(pickles[name])
            except Exception as e:  # noqa: BLE001 (user objects raise anything)
                problems.append(f"{name} could not be unpickled here ({_problem(e, pickles[name], report)}): "
                                "install what it needs here, in the image's version")
        result.values = values
        result.value = _last_value(report, pickles)
        if self.namespace is not None:
            self.namespace.update(values)
        if problems:
            loaded = f"; {', '.join(values)} came back" if values else ""
            raise PystributedError(f"--out: {'; '.join(problems)} (run {result.run_id}{loaded})")


def _read(folder):
    report_path, values_path = folder / "report.json", folder / "values.pkl"
    if not report_path.is_file() or not values_path.is_file():
        return None, {}
    with values_path.open("rb") as f:
        return json.loads(report_path.read_text(encoding="utf-8")), pickle.load(f)


def _last_value(report, pickles):
    shown = report and report.get("value")
    if not shown:
        return None
    if cell_runner.LAST in pickles:
        try:
            return pickle.loads(pickles[cell_runner.LAST])
        except Exception as e:  # noqa: BLE001 (user objects raise anything)
            return results.Shown(shown["repr"], _problem(e, pickles[cell_runner.LAST], report))
    return results.Shown(shown["repr"], shown.get("why", ""))


def here_python():
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _problem(error, data, report):
    """Why a pickle of the run's could not be loaded here, with what differs from the image."""
    return cell_runner.load_problem(error, data,
                                    made=("in the image", report.get("python"), report.get("modules")),
                                    here="here")


def image_python(config, engine, *, on_server):
    """The major.minor of BASE_IMAGE's Python, asked of the engine that builds (once per image)."""
    def image_id():
        try:
            return engine(docker.inspect_image(config.BASE_IMAGE), step="build").strip()
        except PystributedError:
            return ""

    known = image_id()
    if known and known in _pythons:
        return _pythons[known]
    hint = (f"BASE_IMAGE ({config.BASE_IMAGE}) must provide python3 (or python) on its PATH." if known else
            f"BASE_IMAGE ({config.BASE_IMAGE}) is not {'on the server' if on_server else 'here'} and could "
            f"not be pulled: check its name, or `docker pull {config.BASE_IMAGE}` (after `docker login` if "
            "it needs one).")
    out = engine(docker.python_version(config.BASE_IMAGE), step="build", hint=hint)
    version = out.strip().splitlines()[-1] if out.strip() else "unknown"
    known = known or image_id()
    if known:
        _pythons[known] = version
    return version
