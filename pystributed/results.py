"""Run ids, the result object, and landing a run folder's tar stream safely on this machine."""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
import secrets
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from pystributed.errors import PystributedError

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
LOG_NAME = "output.log"


def new_run_id():
    """Sortable by start time, unique across kernels: 20261125-101502-3fa9c1."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def check_run_id(run_id):
    if not RUN_ID.fullmatch(run_id):
        raise PystributedError(f"{run_id!r} is not a run id (they look like 20261125-101502-3fa9c1)")
    return run_id


@dataclasses.dataclass
class RunResult:
    run_id: str
    exit_code: int
    local_path: Path
    files: list[str]

    @property
    def ok(self):
        return self.exit_code == 0

    @property
    def log(self):
        return self.local_path / LOG_NAME


def extract(stream, destination):
    """Unpack the tar `stream` of a run folder into `destination`, which appears only when it is
    complete: a half-copied folder never takes the final name. Return the relative file names
    and the names left out.

    Only regular files and folders are taken, and only inside the folder: whatever ran on the
    server must not be able to write elsewhere here (absolute names, `..`, links)."""
    destination = Path(destination)
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        files, skipped = _extract_into(stream, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if destination.exists():  # fetched before: replace it whole
        old = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        destination.rename(old)
        partial.rename(destination)
        shutil.rmtree(old)
    else:
        partial.rename(destination)
    return files, skipped


def _extract_into(stream, folder):
    files, skipped = [], []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = _safe_name(member.name)
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
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
            os.utime(target, (member.mtime, member.mtime))
            files.append(name)
    return sorted(files), skipped


def _safe_name(name):
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts:
        return None
    return "/".join(parts)
