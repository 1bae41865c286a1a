"""Warnings before the build, for what would make the run fail or crawl there although it works
here: files the cell opens that the image will not have, a build context too large to send on
every change, and packages whose version here is not the one the image gets."""
import ast
import os
import sys
from pathlib import Path

from pystributed import context, results
from pystributed.features import Feature, data, requirements

# Calls whose first argument is a file the cell reads: open(), torch.load, pd.read_csv, np.load...
_READERS = {"open", "load", "loadtxt", "genfromtxt", "fromfile", "imread", "read_csv", "read_table",
            "read_json",
            "read_parquet", "read_excel", "read_feather", "read_pickle", "load_file"}
# A Path(...) may well be something the cell writes: it is only checked against the context.
_PATHS = {"Path", "PurePath", "PosixPath"}
_LARGEST = 5


class Checks(Feature):
    def check(self, run):
        """Print the warnings (on stderr, also when quiet: they explain a failure to come)."""
        for line in warnings_for(run.config, run.source, run.excludes):
            print(f"warning: {line}", file=sys.stderr)


def warnings_for(config, source, excludes, folder="."):
    """The warning lines (without 'warning: ') for this cell and config."""
    found = list(opened_files(config, source, excludes, folder))
    found += context_size(config, excludes, folder)
    found += version_differences(config, source, folder)
    return found


def read_paths(source):
    """(path, checked only if it exists) of each string literal the cell passes as a file to read:
    open('x'), torch.load('x'), Path('x').read_text(). A bare Path('x') may be a file it writes."""
    read = set()  # the Path(...) calls that are read from
    for node in ast.walk(ast.parse(source)):  # outer calls come before the calls inside them
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):  # Path('x').open('w')
            if name in ("read_text", "read_bytes") or name == "open" and not _writes(node, 0):
                read.add(id(func.value))
            continue
        first = node.args[0] if node.args else None
        if name not in _READERS | _PATHS or not (isinstance(first, ast.Constant)
                                                 and isinstance(first.value, str)):
            continue
        if name == "open" and _writes(node, 1):
            continue
        path = first.value
        if path and not os.path.isabs(path) and "://" not in path and not path.startswith("~"):
            yield path, name in _PATHS and id(node) not in read


def _writes(call, position):
    """Whether the mode given at `position` (or as mode=) writes."""
    mode = call.args[position] if len(call.args) > position else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    return (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
            and any(c in mode.value for c in "wax+"))


def opened_files(config, source, excludes, folder="."):
    ignored = context.matcher(Path(folder), excludes)
    mounted = data.excluded(config)
    # REMOTE_DATA is on the server only: nothing here to check a path under it against.
    on_server = [data.in_container(target) for target in config.REMOTE_DATA.values()]
    for path, only_if_present in read_paths(source):
        rel = os.path.normpath(path).replace(os.sep, "/")
        if any(p == data.in_container(rel) or data.in_container(rel).startswith(p + "/") for p in on_server):
            continue
        if rel.startswith("../"):
            yield f"the cell opens {path!r}, outside the notebook's folder: the image has only that folder"
        elif any(rel == m or rel.startswith(m + "/") for m in mounted):
            if not Path(folder, rel).exists():
                yield f"the cell opens {path!r}, which is not in DATA's {rel.split('/')[0]}/ here"
        elif not Path(folder, rel).exists():
            if not only_if_present:
                yield (f"the cell opens {path!r}, which does not exist in the notebook's folder "
                       f"(the container starts in /app, the folder's copy)")
        elif ignored(rel) and rel.endswith(context.LEFT_OUT_SUFFIX):
            yield (f"the cell opens {path!r}, a notebook: notebooks are left out of the image (Jupyter "
                   f"saves them as you edit; each save would build): a line `!{rel}` in .dockerignore "
                   "brings it back")
        elif ignored(rel):
            yield (f"the cell opens {path!r}, which is left out of the image (.dockerignore or the results "
                   f"folder): add it to DATA to have it mounted, or remove it from .dockerignore")


def context_size(config, excludes, folder="."):
    limit = config.CONTEXT_WARN_MB * 1_000_000
    sizes = []
    for path, rel in context.context_files(folder, excludes):
        if path.is_file() and not path.is_symlink():
            sizes.append((path.stat().st_size, rel))
    total = sum(size for size, _ in sizes)
    if not limit or total <= limit:
        return []
    largest = ", ".join(f"{rel} ({results.human_size(size)})"
                        for size, rel in sorted(sizes, reverse=True)[:_LARGEST])
    return [(f"the build context is {results.human_size(total)} (over CONTEXT_WARN_MB = "
             f"{config.CONTEXT_WARN_MB:g}), sent to the image builder on every change; the largest files: "
             f"{largest}. Put data in DATA (synced once, mounted read-only) or leave files out "
             "with .dockerignore")]


def version_differences(config, source, folder="."):
    if not config.REQUIREMENTS:
        return []
    if config.REQUIREMENTS == requirements.AUTO:
        return requirements.resolve(source, folder)[1]  # what could not be pinned
    if not Path(config.REQUIREMENTS).is_file():
        return []  # the build says so, as an error
    # The pinned distributions are looked up by name, and what each provides compared with the cell's
    # imports: a lookup of everything installed would cost a fresh process (`python -m pystributed
    # run`) about half a second on every run.
    imported = requirements.imported(source)
    found = []
    for name, wanted in requirements.pinned(config.REQUIREMENTS).items():
        dist = requirements.installed(name)
        if dist is None or requirements.public(wanted) == requirements.public(dist.version):
            continue
        found += [f"the cell imports {module}: {dist.metadata['Name']} is {dist.version} here but {wanted} "
                  f"in {config.REQUIREMENTS}" for module in imported if module in requirements.provided(dist)]
    return found
