"""Run ids, the result object, and landing a run folder's tar stream safely on this machine."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import html
import json
import os
import re
import secrets
import shutil
import tarfile
import time
import types
from pathlib import Path, PurePosixPath

from pystributed import record
from pystributed.errors import PystributedError

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
SWEEP_ID = re.compile(r"sweep-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # a job of many (jobs.py)
LOG_NAME = "output.log"
STATE_NAME = ".pystributed-state.json"  # the container's final state, written on the server as it is removed


class State(str, enum.Enum):
    """A run's state in the local record, for pipeline and lifecycle alike."""

    STARTING = "starting"  # being built, pushed, pulled; no container yet
    RUNNING = "running"
    # goes on without us (an interrupt with ON_INTERRUPT = "detach", a dropped connection)
    DETACHED = "detached"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    def __str__(self):
        return self.value

    @property
    def ended(self):
        return self in (State.SUCCEEDED, State.FAILED, State.INTERRUPTED, State.CANCELLED)


def docker_time(text):
    """Docker's '2026-11-25T13:20:01.123456789Z' (nanoseconds) as a datetime; None for its zero time."""
    match = re.match(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?Z", text or "")
    if not match or text.startswith("0001-"):
        return None
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment + datetime.timedelta(seconds=float(match.group(2) or 0))


class Shown:
    """A value that could not come back as itself: it shows as the server showed it."""

    def __init__(self, text, why):
        self.text, self.why = text, why

    def __repr__(self):
        return self.text


def new_run_id():
    """Unique across kernels: 20261125-101502-3fa9c1 (this machine's local time, then random). Sorted, ids
    follow their start to the second only: sort runs with start_order."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def start_order(run_id, started=None):
    """A key that sorts runs (and sweeps) in the order they started: their start time (a datetime, or a
    record's ISO text, to the millisecond), else the clock in their id; the id breaks ties. Not the id
    alone: its clock steps by a second, and the random part would order two runs of one second."""
    run_id = run_id.removeprefix("sweep-")  # a sweep's id is a run id after its prefix
    if isinstance(started, str):
        try:
            started = datetime.datetime.fromisoformat(started) if started else None
        except ValueError:  # (a record written by hand): its id's clock is the next best
            started = None
    if started is None:
        try:
            started = datetime.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S")  # local time, as new_run_id's
        except ValueError:
            return 0.0, run_id
    return started.timestamp(), run_id


def check_run_id(run_id):
    if not RUN_ID.fullmatch(run_id):
        raise PystributedError(f"{run_id!r} is not a run id (they look like 20261125-101502-3fa9c1)")
    return run_id


def own_file(name):
    """Whether NAME (a path in a run folder) is pystributed's bookkeeping: .pystributed*, hidden."""
    return PurePosixPath(name).name.startswith(".pystributed")


@dataclasses.dataclass
class RunResult:
    """What a run did; saved as run.json in its folder and in LOCAL_RESULTS_DIR/.runs/."""

    run_id: str
    exit_code: int | None = None
    local_path: Path | None = None  # LOCAL_RESULTS_DIR/<run-id>, once fetched
    files: list[str] = dataclasses.field(default_factory=list)
    status: str = State.STARTING
    server: str = ""
    image: str = ""
    image_digest: str = ""
    # The sha256 of the cell's files, when they were mounted over the image's own (a rerun of a
    # changed cell, features/cell_mount.py): kept on the server in REMOTE_WORKDIR/.cells/<sha256>/.
    cell_archive: str = ""
    remote_dir: str = ""
    started: str = ""
    ended: str = ""
    source_sha256: str = ""
    config: dict = dataclasses.field(default_factory=dict)
    # Not fields, not in run.json: what the cell handed back (see features/values.py), once fetched.
    values = types.MappingProxyType[str, object]({})  # the --out variables
    value = None  # the cell's last expression

    @property
    def ok(self):
        return self.exit_code == 0

    @property
    def log(self):
        return self.local_path / LOG_NAME if self.local_path else None

    @property
    def shown_files(self):
        """The files a user is shown and counted ("3 file(s)", the result table): `files` less
        pystributed's own hidden bookkeeping (.pystributed-state.json and the like, in any folder),
        which `ls` does not show either. A dotfile the cell wrote is its output, and counts."""
        return [name for name in self.files if not own_file(name)]

    @property
    def duration(self):
        if not self.started:
            return None
        end = datetime.datetime.fromisoformat(self.ended) if self.ended else _now()
        return (end - datetime.datetime.fromisoformat(self.started)).total_seconds()

    def to_json(self):
        data = dataclasses.asdict(self)
        data["local_path"] = str(self.local_path) if self.local_path else None
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        data["local_path"] = Path(data["local_path"]) if data.get("local_path") else None
        data["status"] = State(data.get("status", State.STARTING))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __str__(self):
        took = f"{self.duration:.1f}s" if self.duration is not None else "-"
        lines = [f"run {self.run_id}: {self.status} (exit code {self.exit_code}) in {took} on {self.server}"]
        lines += [f"  {size:>10}  {path}" for path, size in self._file_rows()]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        took = f"{self.duration:.1f}s" if self.duration is not None else "-"
        rows = "".join(
            f"<tr><td style='text-align:left'><a href='{html.escape(path)}' target='_blank'>"
            f"{html.escape(path)}</a>"
            f"</td><td style='text-align:right'>{size}</td></tr>" for path, size in self._file_rows())
        # JupyterLab centres tables: this one stays under its heading.
        return (f"<b>run {html.escape(self.run_id)}</b>: {html.escape(self.status)} "
                f"(exit code {self.exit_code}) in {took} on {html.escape(self.server)}"
                f"<table style='margin:0'>{rows}</table>")

    def _file_rows(self):
        """The files to show: the cell's and the log, not pystributed's own (.pystributed*)."""
        for name in self.shown_files:
            path = self.local_path / name
            size = human_size(path.stat().st_size) if path.exists() else "missing"
            yield os.path.relpath(path), size


# The local record of every run, written when the run starts and when it ends, so that a run can be
# found again by its id, even one that never finished; runner.runs() lists them.

RUNS_INDEX = ".runs"  # the local record of every run: LOCAL_RESULTS_DIR/.runs/<run-id>.json


def save_record(results_dir, result):
    folder = Path(results_dir) / RUNS_INDEX
    folder.mkdir(parents=True, exist_ok=True)
    record.write_atomically(folder / f"{result.run_id}.json", result.to_json())


def set_state(results_dir, result, state, **fields):
    """The one place a run's state changes: with the fields that change with it, saved at once."""
    result.status = State(state)
    for name, value in fields.items():
        setattr(result, name, value)
    if result.status.ended and not result.ended:
        result.ended = now_iso()
    save_record(results_dir, result)


def load_record(results_dir, run_id):
    path = Path(results_dir) / RUNS_INDEX / f"{run_id}.json"
    return RunResult.from_json(path.read_text(encoding="utf-8")) if path.exists() else None


def runs(results_dir):
    """Past runs from the local results folder, newest first."""
    folder = Path(results_dir) / RUNS_INDEX
    found = [RunResult.from_json(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")]
    return RunList(sorted(found, key=lambda r: start_order(r.run_id, r.started), reverse=True))


class RunList(list):
    def _rows(self):
        for r in self:
            took = f"{r.duration:.1f}s" if r.duration is not None else "-"
            yield r.run_id, r.status, str(r.exit_code), took, r.server, f"{len(r.shown_files)} files"

    def __str__(self):
        return "\n".join("  ".join(row) for row in self._rows()) or "no runs yet"

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        head = "<tr><th>run</th><th>status</th><th>exit</th><th>took</th><th>server</th><th>files</th></tr>"
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self._rows())
        return f"<table>{head}{body}</table>"


def human_size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def now_iso():
    return _now().isoformat(timespec="milliseconds")


def extract(stream, destination, *, finalize=None, on_bytes=None):
    """Unpack the tar `stream` of a run folder into `destination` (a Path), which appears only
    when it is complete: a half-copied folder never takes the final name. Return the relative file
    names and the names left out. `finalize(folder, files)` may add to the folder before it lands;
    `on_bytes(total)` hears how much has arrived.

    Only regular files and folders are taken, and only inside the folder: whatever ran on the
    server must not be able to write elsewhere here (absolute names, `..`, links)."""
    _remove_stale(destination)
    # A folder of this copy's own: two fetches of one run at once (two kernels attached to it)
    # must not write into each other's.
    partial = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.partial")
    partial.mkdir(parents=True)
    try:
        files, skipped = _extract_into(stream, partial, on_bytes)
        if finalize:
            finalize(partial, files)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = partial.with_suffix(".old")
    while True:
        try:
            partial.rename(destination)  # fails while a copy fetched before is there
            break
        except OSError:
            if not destination.exists():
                raise
        with contextlib.suppress(FileNotFoundError):  # another fetch may have moved it meanwhile
            destination.rename(old)  # the earlier copy goes only once the new one is whole
    shutil.rmtree(old, ignore_errors=True)
    return files, skipped


def _remove_stale(destination, age=86400):
    """Partial folders of fetches killed a day ago or more (a fetch going now is younger)."""
    for leftover in destination.parent.glob(f".{destination.name}.*.partial"):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > age:
                shutil.rmtree(leftover, ignore_errors=True)


def _extract_into(stream, folder, on_bytes):
    files, skipped, total = [], [], 0
    with tarfile.open(fileobj=_Forward(stream), mode="r:") as tar:
        for member in tar:
            name = _safe_name(member, folder)
            if name == "":
                continue  # the folder itself
            if name is None or not (member.isfile() or member.isdir()):
                skipped.append(member.name)
                continue
            target = folder / name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                # Small chunks keep the pipe drained while we write: with 1 MB ones, ssh waited
                # on the full pipe during each write, and a large file came a third slower.
                for chunk in iter(lambda: src.read(1 << 16), b""):
                    dst.write(chunk)
                    total += len(chunk)
                    if on_bytes:
                        on_bytes(total)
            os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
            os.utime(target, (member.mtime, member.mtime))
            files.append(name)
    return sorted(files), skipped


class _Forward:
    """A pipe that tarfile may treat as a file, as long as it reads on. tarfile's own stream mode
    ("r|") copies every byte through small Python buffers: several times the CPU of `tar -x`."""

    def __init__(self, stream):
        self.stream, self.position = stream, 0

    def read(self, size=-1):
        data = self.stream.read(size)
        self.position += len(data)
        return data

    def tell(self):
        return self.position

    def seek(self, position, whence=0):
        if whence != 0 or position < self.position:
            raise tarfile.ReadError("the results stream can only be read forward")
        while self.position < position and self.read(min(position - self.position, 1 << 20)):
            pass
        return self.position


def _safe_name(member, folder):
    """The member's name inside the folder, or None where it would land outside it. tarfile's own
    "data" filter decides where the Python has it (3.12, 3.11.4 ...); these checks are the fallback."""
    if hasattr(tarfile, "data_filter"):
        try:
            tarfile.data_filter(member, str(folder))
        except tarfile.FilterError:
            return None
    path = PurePosixPath(member.name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts:
        return None
    return "/".join(parts)
