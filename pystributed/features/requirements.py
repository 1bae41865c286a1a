"""REQUIREMENTS = "auto": pin the local versions of the distributions that the cell imports.

The cell's imports (ast), less the standard library and modules of the notebook's folder, are
mapped from import name to distribution (`numpy` -> numpy, `sklearn` -> scikit-learn) and pinned
as `name==version`. A distribution that pip installed here from a local wheel is pinned by shipping
that wheel, so that it installs without an index. What cannot be pinned is reported.
"""
import ast
import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from pystributed.features import Feature

AUTO = "auto"


def imported(source):
    """The top-level names of the modules the cell imports, anywhere in it, sorted."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(names)


def is_stdlib(name):
    if hasattr(sys, "stdlib_module_names"):  # Python 3.10+
        return name in sys.stdlib_module_names
    if name in sys.builtin_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) or ""
    stdlib = sysconfig.get_paths()["stdlib"]
    return origin.startswith(stdlib) and "site-packages" not in origin and "dist-packages" not in origin


def _import_names():
    """{import name: [distribution names]} of what is installed here: looked up again when the
    environment changed since (`%pip install` in the kernel adds to a folder of sys.path, which
    changes its mtime; a folder added to sys.path changes sys.path), not once for the kernel's life."""
    return _import_names_in(_environment())


def _environment():
    """sys.path, with the mtime of each of its folders (None for one that does not exist), but
    the working directory's: the notebook's folder changes with every saved cell, and the lookup
    takes a good part of a second (0.3 to 0.7 s for 180 distributions, measured)."""
    here, found = os.getcwd(), []
    for entry in sys.path:
        path = os.path.abspath(entry or ".")
        try:
            found.append((entry, None if path == here else os.stat(path).st_mtime_ns))
        except OSError:
            found.append((entry, None))
    return tuple(found)


@functools.lru_cache(maxsize=1)
def _import_names_in(environment):
    import importlib.metadata  # here, not at the top: `python -m pystributed run` starts sooner without it

    importlib.invalidate_caches()  # the import system's own caches of folders' contents, too
    if hasattr(importlib.metadata, "packages_distributions"):  # Python 3.10+
        return importlib.metadata.packages_distributions()
    mapping = {}
    for dist in importlib.metadata.distributions():  # Python 3.9
        for name in provided(dist):
            mapping.setdefault(name, []).append(dist.metadata["Name"])
    return mapping


def provided(dist):
    """The import names a distribution provides: its top_level.txt, else its files' first parts."""
    names = (dist.read_text("top_level.txt") or "").split()
    return names or list(dict.fromkeys(Path(f).parts[0].removesuffix(".py") for f in dist.files or ()
                                       if not str(f).startswith("..")))


def installed(name):
    """The installed distribution `name`, or None."""
    import importlib.metadata

    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# forget the lookup whatever changed
_import_names.cache_clear = _import_names_in.cache_clear  # type: ignore[attr-defined]


def distributions(name):
    """The installed distributions that provide the import `name`."""
    import importlib.metadata

    found = []
    for dist_name in dict.fromkeys(_import_names().get(name, [])):
        try:
            found.append(importlib.metadata.distribution(dist_name))
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def is_local_module(name, folder="."):
    """A module of the notebook's folder: it is in the build context already."""
    return Path(folder, f"{name}.py").is_file() or Path(folder, name).is_dir()


class Pin:
    """A distribution at the version installed here: from a local wheel, a VCS commit, or an index."""

    def __init__(self, name, version, wheel=None, url=None):
        self.name, self.version, self.wheel, self.url = name, version, wheel, url

    def line(self):
        if self.wheel:
            return (f"./wheels/{self.wheel.name}  # {self.name}=={self.version}, installed here from "
                    "this wheel")
        if self.url:
            return f"{self.name} @ {self.url}"
        # `torch==2.3.1` and not `==2.3.1+cpu`: an index has no local builds, and a base image's
        # 2.3.1+cu121 satisfies it as it is.
        return f"{self.name}=={public(self.version)}"

    def __repr__(self):
        return self.line()


def resolve(source, folder="."):
    """(pins, notes): a Pin per distribution the cell imports, and what could not be pinned."""
    pins, notes = {}, []
    for name in imported(source):
        if is_stdlib(name) or is_local_module(name, folder):
            continue
        found = distributions(name)
        if not found:
            notes.append(_not_a_distribution(name))
        for dist in found:
            key = normalize(dist.metadata["Name"])
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
            if "dir_info" in direct:  # pip install -e . / pip install ./folder: nothing an index has
                notes.append(f"{name} ({dist.metadata['Name']} {dist.version}) is installed here from the "
                             f"folder {_path(direct['url'])}: build a wheel of it and name it in a "
                             "REQUIREMENTS file")
                continue
            wheel, vcs = _path(direct.get("url", "")), direct.get("vcs_info", {})
            wheel = wheel if wheel and wheel.suffix == ".whl" and wheel.is_file() else None
            url = f"{vcs['vcs']}+{direct['url']}@{vcs['commit_id']}" if "commit_id" in vcs else None
            pins.setdefault(key, Pin(dist.metadata["Name"], dist.version, wheel, url))
    return list(pins.values()), notes


def _not_a_distribution(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"{name} is not installed here, so its version cannot be pinned"
    return (f"{name} is importable here ({spec.origin or 'a namespace package'}) but is not an installed "
            "distribution: put it in the notebook's folder or name it in a REQUIREMENTS file")


def _path(url):
    import urllib.parse
    import urllib.request

    if not url.startswith("file:"):
        return None
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


def public(version):
    """The version without its local label (`2.3.1+cpu` -> `2.3.1`)."""
    return version.split("+", 1)[0]


def normalize(name):
    """PEP 503: `Scikit_Learn` and `scikit-learn` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def text(pins):
    lines = ["# Made by pystributed (REQUIREMENTS = 'auto'): the versions installed where the notebook runs."]
    return "\n".join(lines + [pin.line() for pin in pins]) + "\n"


class Auto(Feature):
    """REQUIREMENTS = "auto": a requirements file made from the cell's imports, for the build."""

    def before_pack(self, run):
        run.requirements = run.cleanup.enter_context(prepared(AUTO, run.source))


@contextlib.contextmanager
def prepared(requirements, source, folder="."):
    """Yield the requirements file to build with: REQUIREMENTS itself, or for "auto" one made
    in a temporary folder (with the wheels it names), or None when nothing is to be installed."""
    if requirements != AUTO:
        yield requirements
        return
    pins, _ = resolve(source, folder)
    if not pins:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="pystributed-requirements-") as tmp:
        for pin in pins:
            if pin.wheel:
                Path(tmp, "wheels").mkdir(exist_ok=True)
                shutil.copyfile(pin.wheel, Path(tmp, "wheels", pin.wheel.name))
        path = Path(tmp, "requirements.txt")
        path.write_text(text(pins), encoding="utf-8")
        yield str(path)


def pinned(requirements):
    """{normalized name: version} of the `name==version` lines of a requirements file."""
    pins = {}
    for line in Path(requirements).read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#,]+)", line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins
