"""The build context: the Dockerfile, the requirements and the notebook's folder, as one tar stream.

We write the tar ourselves (and give it to `docker build -`) so that the Dockerfile and the saved
cell never have to be written into the user's folder, and so that default exclusions apply even
when the folder has no .dockerignore.
"""
import hashlib
import io
import json
import shlex
import tarfile
from pathlib import Path
from typing import NamedTuple

from pystributed import dockerignore
from pystributed.dockerignore import Matcher
from pystributed.errors import PystributedError

RESULTS_IN_CONTAINER = "/results"
APP_DIR = "/app"
# cell_runner.py (its own layer), and the run's settings and --in pickles (the cell's)
RUNNER_DIR = "/pystributed"
RUNNER = Path(__file__).with_name("cell_runner.py")
_MTIME = 946684800  # 2000-01-01, for every file: the hash of the context must not depend on times
PIP_OPTIONS = "--no-cache-dir --disable-pip-version-check"
# Left out of every context: each file or folder of these names, wherever it is.
LEFT_OUT_NAMES = frozenset({".git", ".ipynb_checkpoints", "__pycache__"})
# And each whose name ends so: the notebooks themselves. Jupyter saves the notebook as its cell is
# edited, and the cell is sent on its own (the top layer); were they in the folder's layer, every
# save would build, push and pull it again. A cell that reads one: `!NAME.ipynb` in .dockerignore.
LEFT_OUT_SUFFIX = ".ipynb"
# The same as .dockerignore patterns (`**/x` also matches x at the top), for a folder that has one; its
# own patterns come after these, so its `!` exceptions bring any of them back.
DEFAULT_EXCLUDES = ([f"**/{name}" for name in sorted(LEFT_OUT_NAMES)] + [f"**/*{LEFT_OUT_SUFFIX}"]
                    + [".dockerignore"])
# The image's Python: `python3`, else `python` (Ubuntu's, Debian's and CUDA images with Python added
# have no `python`). `sh -c RUN_PYTHON sh ARGS...` runs it with ARGS, as itself (exec).
FIND_PYTHON = "command -v python3 || command -v python"
RUN_PYTHON = f'exec "$({FIND_PYTHON})" "$@"'


def task_command(*args):
    """A task's command: task_runner.py (with `--cell`, the cell itself) by the image's Python."""
    return ["sh", "-c", RUN_PYTHON, "sh", f"{RUNNER_DIR}/task_runner.py", *args]


def dockerfile(base_image, entry_point, requirements_name=None):
    lines = [
        f"FROM {base_image}",
        # Unbuffered, so that prints reach the notebook as they happen.
        f"ENV PYTHONUNBUFFERED=1 PYSTRIBUTED_RESULTS={RESULTS_IN_CONTAINER}",
        f"WORKDIR {APP_DIR}",
        python_check(base_image),
    ]
    if requirements_name:
        # Its own layer before the code: a code change does not reinstall the requirements.
        lines += [
            "COPY requirements/ /tmp/pystributed-requirements/",
            # The pip of the Python that runs the cell (a `pip` on the PATH may be another's, or none).
            (f'RUN cd /tmp/pystributed-requirements && "$({FIND_PYTHON})" -m pip install {PIP_OPTIONS} '
             f"-r {shlex.quote(requirements_name)}"),
        ]
    lines += [
        # Before the copies: a step after the cell's would be built again at every change of it.
        f"CMD {json.dumps(['sh', '-c', RUN_PYTHON, 'sh', f'{RUNNER_DIR}/{RUNNER.name}', entry_point])}",
        f"COPY runner/ {RUNNER_DIR}/",
        f"COPY context/ {APP_DIR}/",
        # The cell (with its --in values) last and alone: a change of the cell rebuilds, pushes and
        # pulls only this layer. It holds cell{APP_DIR}/ and cell{RUNNER_DIR}/, so it is copied to /.
        "COPY cell/ /",
    ]
    return "\n".join(lines) + "\n"


def python_check(base_image):
    """A build step that stops the build, before anything is pushed, when the base image has no
    Python: it names the image and what to do. Docker's layer cache runs it once per base image."""
    message = (f"pystributed: BASE_IMAGE {base_image} has neither python3 nor python on its PATH, and the "
               "cell runs with Python. Use a base image with Python (e.g. python:3.12-slim, pytorch/pytorch, "
               "or a CUDA image with Python), or install Python in it (Debian, Ubuntu: apt-get install -y "
               "python3; Alpine: apk add python3; RHEL, Fedora: dnf install -y python3).")
    return f"RUN ({FIND_PYTHON}) >/dev/null || {{ echo {shlex.quote(message)} >&2; exit 1; }}"


def entry_point(context_dir, code_path):
    """The saved cell's path inside the image: where it lies in the context, else its name."""
    code, context = Path(code_path).resolve(), Path(context_dir).resolve()
    try:
        return code.relative_to(context).as_posix()
    except ValueError:
        return code.name


class Packed(NamedTuple):
    digest: str  # the sha256 of the whole context
    lower: str  # of all but the cell layer's contents (its files' names included)
    cell: str  # of the cell layer's part of the context


def write(file, *, context_dir, code_path, source, base_image, requirements=None, excludes=(),
          runner_files=None):
    """Write the build context for the cell `source`, saved at `code_path`, to the binary `file`;
    return its hashes (Packed). Times are left out, so the same content gives the same hash.
    `runner_files` ({name: bytes}) go next to cell_runner.py (the --in pickles)."""
    entry = entry_point(context_dir, code_path)
    requirements_name = Path(requirements).name if requirements else None
    cell = cell_layer(entry, source, runner_files)
    file = _Hashing(file)
    with tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:  # "w": nothing held back
        _add_bytes(tar, "Dockerfile", dockerfile(base_image, entry, requirements_name).encode())
        _add_folder(tar, "context")  # COPY needs it, even when the cell is all there is
        if requirements:
            for path, name in requirement_files(requirements):
                tar.add(path, f"requirements/{name}", filter=_normalize)
        for path, name in context_files(context_dir, excludes):
            if name != entry:
                tar.add(path, f"context/{name}", recursive=False, filter=_normalize)
        _add_bytes(tar, f"runner/{RUNNER.name}", RUNNER.read_bytes())
        below = file.hashes[0].copy()
        below.update("\n".join(cell).encode())
        file.hashes.append(hashlib.sha256())
        for name, data in cell.items():
            _add_bytes(tar, f"cell/{name}", data)
    return Packed(*(h.hexdigest() for h in (file.hashes[0], below, file.hashes[1])))


def cell_layer(entry, source, runner_files=None):
    """{path in the image, without its leading '/': bytes} of the cell layer, the image's top one:
    the cell, and the files next to cell_runner.py that came with it."""
    files = {f"{APP_DIR[1:]}/{entry}": source.encode()}
    files.update((f"{RUNNER_DIR[1:]}/{name}", data) for name, data in sorted((runner_files or {}).items()))
    return files


def cell_archive(files):
    """The cell layer's files as a tar of their own (the same content, the same bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            _add_bytes(tar, name, data)
    return out.getvalue()


class _Hashing:
    def __init__(self, file):
        self.file, self.hashes = file, [hashlib.sha256()]

    def write(self, data):
        for sha256 in self.hashes:  # the whole context's; from the cell layer on, also the cell layer's
            sha256.update(data)
        return self.file.write(data)

    def tell(self):
        return self.file.tell()


def context_files(context_dir, excludes=()):
    """(path, relative name) of each file and folder in the context, honouring .dockerignore as
    Docker does (dockerignore.py)."""
    return dockerignore.walk(Path(context_dir), matcher(context_dir, excludes))


def matcher(root, excludes=()):
    """Whether a relative path is left out of the context: Docker's matcher for the folder's
    .dockerignore, else (no file, or no pattern in it) the plain filter of the same defaults."""
    patterns = read_dockerignore(Path(root) / ".dockerignore")
    if not patterns:
        return LeftOut(excludes)
    return Matcher(DEFAULT_EXCLUDES + list(excludes) + patterns)


class LeftOut:
    """What a context without .dockerignore patterns leaves out, as a Matcher of DEFAULT_EXCLUDES and
    `excludes` would (test_context checks that it does): a path with one of LEFT_OUT_NAMES, or a name
    ending in LEFT_OUT_SUFFIX, among its parts, and a path that is, or is inside, .dockerignore or one
    of `excludes` (the results folder and DATA: relative paths, taken as they are; the Matcher reads
    them as patterns)."""

    def __init__(self, excludes=()):
        # .dockerignore too: one without patterns, or a folder of that name, is never sent either.
        self.paths = [".dockerignore", *excludes]

    def __call__(self, path):
        return (any(part in LEFT_OUT_NAMES or part.endswith(LEFT_OUT_SUFFIX) for part in path.split("/"))
                or any(path == p or path.startswith(p + "/") for p in self.paths))

    def match(self, path, above=None):
        """dockerignore.walk's question: no results to hand down, the answer does not need them."""
        return self(path), None

    def may_enter(self, folder):
        return False  # no `!` exception can bring back anything inside a left-out folder


def requirement_files(requirements):
    """The requirements file, plus the local files it names by relative path (wheels,
    --find-links folders, -r includes), so that pip finds them in the image."""
    req = Path(requirements)
    if not req.is_file():
        raise PystributedError(f"REQUIREMENTS file {requirements} does not exist")
    yield req, req.name
    folder = req.parent.resolve()
    for line in req.read_text(encoding="utf-8").splitlines():
        for word in line.split("#")[0].split():
            word = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
            path = (folder / word).resolve()
            if word and not word.startswith("-") and path.exists() and folder in path.parents:
                yield path, path.relative_to(folder).as_posix()


read_dockerignore = dockerignore.read


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_folder(tar, name):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
    tar.addfile(info)


def _normalize(info):
    # Owned by root and readable by all: the container runs as the ssh user's uid.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = _MTIME
    info.pax_headers = {}
    info.mode |= 0o555 if info.isdir() else 0o444
    return info
