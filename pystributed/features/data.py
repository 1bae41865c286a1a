"""DATA: files and folders of the notebook's folder that are synced to the server once, into a
cache keyed by content, and mounted read-only into the container at the same relative path under
/app (instead of being baked into every image). REMOTE_DATA: paths already on the server, mounted
read-only too.

On the server, under REMOTE_WORKDIR/.data/:

    objects/<sha256>               each file's content, once (our own transfer)
    trees/<tree-sha>/<DATA path>   the DATA of one content, as hard links: mounted from here
    incoming/<run-id>/             a transfer in progress, moved into place only when complete

A tree is keyed by the hashes of all its files, and never changed once made, so a run (even a
detached one) keeps the data it started with. When both sides have rsync it makes the new tree,
with the newest trees as `--link-dest` (unchanged files are linked, changed ones sent as deltas);
otherwise our own transfer sends the hashes, the server answers which it lacks, and one tar stream
carries those contents and the tree's links.
"""
import contextlib
import functools
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import tarfile
import time
from pathlib import Path

from pystributed import record, results, util
from pystributed.context import APP_DIR
from pystributed.errors import PystributedError, StepError
from pystributed.features import Feature
from pystributed.places.ssh import SSH_DEFAULTS

DATA_DIR = ".data"


def excluded(config):
    """The DATA paths, as .dockerignore patterns: they are mounted, not built into the image."""
    return [posixpath.normpath(path).strip("/") for path in config.DATA]


class Data(Feature):
    """DATA and REMOTE_DATA: checked before anything, left out of the image, mounted read-only."""

    def check(self, run):
        check(run.config)
        run.excludes += excluded(run.config)

    def mounts(self, run):
        config = run.config
        if not config.DATA and not config.REMOTE_DATA:
            return []
        with run.steps.step("data", run.place.name):
            return mounts(config, run.place, run.result, run.steps)


def mounts(config, place, result, steps):
    """Sync DATA, check REMOTE_DATA; return the `docker run` arguments that mount them read-only."""
    args, entries = [], excluded(config)
    if entries and config.is_local:  # the engine is on this machine: mount the files where they are
        sources = [str(Path(entry).resolve()) for entry in entries]
        if any(":" in source for source in sources):
            raise PystributedError("the notebook's folder holds a ':' in its path, which docker cannot mount")
        args += volume_args(dict(zip(sources, entries)))
        steps.progress("mounted from here")
    elif entries:
        tree = sync(config, place, local_files(config.DATA), result.run_id, steps, roots=entries)
        args += volume_args({f"{tree}/{entry}": entry for entry in entries})
    if config.REMOTE_DATA:
        check_remote_paths(config, place)
        args += volume_args(config.REMOTE_DATA)
    return args


def volume_args(mapping):
    """`--volume SRC:/app/DST:ro` for each source path and where it goes in the container."""
    args = []
    for source, target in mapping.items():
        args += ["--volume", f"{source}:{in_container(target)}:ro"]
    return args


def in_container(target):
    """Where a mount appears: a relative path is under /app, where the cell starts."""
    target = posixpath.normpath(target)
    return target if target.startswith("/") else f"{APP_DIR}/{target}"


def check_remote_paths(config, place):
    """A missing source would be created by Docker as an empty folder owned by root: refuse it (on
    a cluster, on every node a task may go to)."""
    servers = [(config.REMOTE_SERVER, place)] if hasattr(place, "call") else [
        (node.ssh, place.at(node)) for node in place.usable()]
    for name, server in servers:
        missing = server.call("missing", *config.REMOTE_DATA, step="data").splitlines()
        if missing:
            raise StepError("data", f"REMOTE_DATA names {', '.join(missing)}, which does not exist on {name}",
                            hint="Check the paths in REMOTE_DATA (absolute paths on the server, on every "
                                 "node of a cluster).")


def check(config):
    """Before anything runs: every DATA entry is here, and no two mounts share a place."""
    for entry in config.DATA:
        if not Path(entry).exists():
            raise PystributedError(f"DATA names {entry}, which does not exist in {Path.cwd()}: "
                                   "DATA paths are relative to the notebook's folder")
    targets = [in_container(target) for target in [*excluded(config), *config.REMOTE_DATA.values()]]
    twice = sorted({target for target in targets if targets.count(target) > 1})
    if twice:
        raise PystributedError(f"DATA and REMOTE_DATA mount two things at {', '.join(twice)} in the "
                               "container: give each its own path")


def local_files(entries):
    """(name in the tree, path here) of every file in the DATA entries, sorted."""
    files = {}
    for entry in entries:
        path = Path(entry)
        if path.is_file():
            files[path.as_posix()] = path
            continue
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            dirnames.sort()
            for name in filenames:
                file = Path(dirpath, name)
                if file.is_file():
                    files[file.as_posix()] = file
    for name in files:
        if "\n" in name or "\r" in name:
            raise PystributedError(f"DATA holds a file whose name has a line break: {name!r}; rename it")
    return sorted(files.items())


class Hashes:
    """The sha256 of files, remembered by (size, mtime, inode) in a file here, so that a rerun
    does not read gigabytes again."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}

    def __call__(self, file):
        st = file.stat()
        key, stamp = str(file.resolve()), [st.st_size, st.st_mtime_ns, st.st_ino]
        if self.known.get(key, [None])[:3] == stamp:
            return self.known[key][3]
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self.known[key] = [*stamp, digest.hexdigest()]
        return digest.hexdigest()

    def save(self, keep):
        """Write what is known of the files `keep` (files no longer in DATA are forgotten)."""
        keys = {str(path.resolve()) for path in keep}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record.write_atomically(self.path, json.dumps({k: v for k, v in self.known.items() if k in keys}))


def manifest(config, files):
    """[(name, sha256, size)] of the files, and the tree's key: the hash of that list."""
    hashes = Hashes(Path(config.LOCAL_RESULTS_DIR) / ".data-hashes.json")
    entries = [(name, hashes(path), path.stat().st_size) for name, path in files]
    hashes.save(keep=[path for _, path in files])
    key = hashlib.sha256(json.dumps([[name, sha] for name, sha, _ in entries]).encode()).hexdigest()
    return entries, key


def sync(config, place, files, run_id, steps, *, roots):
    """Make sure the server has the tree of these files; return its absolute path there."""
    entries, key = manifest(config, files)
    hashes = sorted({sha for _, sha, _ in entries})
    out = place.call("data_prepare", f"{place.workdir()}/{DATA_DIR}", run_id, key, step="data",
                     stdin=lambda stdin: stdin.write("".join(h + "\n" for h in hashes).encode()),
                     hint=f"{place.hint()} REMOTE_WORKDIR ({config.REMOTE_WORKDIR}) must be writable there.")
    lines = out.splitlines()
    data_dir, has_rsync, state = lines[:3]
    tree = f"{data_dir}/trees/{key}"
    total = sum(size for _, _, size in entries)
    if state == "tree-present":
        steps.progress(f"up to date, {results.human_size(total)} in {len(entries)} files")
        return tree
    rest = lines[3:]
    previous = [line.split()[1] for line in rest if line.startswith("tree ")]
    missing = {line.split()[1] for line in rest if line.startswith("missing ")}
    # rsync runs its server through the login shell, and a login shell that prints (a banner)
    # breaks it ("is your shell clean?"): then our own transfer, which skips what is printed.
    rsync = "rsync" if has_rsync == "rsync" and RSYNC and not place.noisy and recent_rsync() else ""
    incoming = f"incoming/{run_id}"
    try:
        if rsync:
            # The place's ssh options: those of the run's one connection (its ControlPath).
            moved = send_rsync(place.config, roots, f"{data_dir}/{incoming}/tree/",
                               [f"{data_dir}/trees/{name}" for name in previous], steps)
        else:
            moved = send_tar(place, entries, files, data_dir, incoming, missing, steps)
    except StepError:
        # Keep what arrived whole, so that the next run does not send it again.
        with contextlib.suppress(StepError):
            place.call("data_salvage", data_dir, run_id, rsync, step="data")
        raise
    place.call("data_finish", data_dir, run_id, key, rsync, step="data")
    steps.progress(f"{results.human_size(moved)} moved, {results.human_size(total)} in {len(entries)} files")
    return tree


RSYNC = True  # rsync when both sides have it; tests turn it off to drive our own transfer


@functools.cache
def recent_rsync():
    """Whether this machine has an rsync that takes send_rsync's options (3.1 or newer, for
    --info=progress2): macOS has 2.6.9, or openrsync ("2.6.9 compatible") since macOS 15, which
    would fail the data step; our own transfer goes instead."""
    if not shutil.which("rsync"):
        return False
    found = re.search(r"version ([0-9]+)\.([0-9]+)", util.output(["rsync", "--version"]))
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= (3, 1)


def send_tar(place, entries, files, data_dir, incoming, missing, steps):
    """One tar stream: the contents the server lacks (into incoming/, then objects/), and the
    tree as hard links to objects/. Return the bytes sent."""
    paths = dict(files)
    sent = _Counting(steps)

    def write(stdin):
        sent.file = stdin
        with tarfile.open(fileobj=sent, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, f"{incoming}/objects", tarfile.DIRTYPE)
            new = {}
            for name, sha, _ in entries:
                if sha in missing and sha not in new:
                    new[sha] = f"{incoming}/objects/{sha}"
                    info = tarfile.TarInfo(new[sha])  # a link here is sent as the file it points to
                    st = paths[name].stat()
                    info.size, info.mtime, info.mode = st.st_size, st.st_mtime, 0o444
                    with open(paths[name], "rb") as f:
                        tar.addfile(info, f)
            made = set()
            for name, sha, _ in entries:
                parents = [p.as_posix() for p in reversed(Path(name).parents) if p.as_posix() != "."]
                for folder in [""] + parents:
                    if folder not in made:
                        made.add(folder)
                        _add(tar, f"{incoming}/tree/{folder}".rstrip("/"), tarfile.DIRTYPE)
                _add(tar, f"{incoming}/tree/{name}", tarfile.LNKTYPE, link=new.get(sha, f"objects/{sha}"))
            _add(tar, f"{incoming}/complete", tarfile.REGTYPE)  # last: all before it arrived whole

    place.call("data_receive", data_dir, incoming.removeprefix("incoming/"), step="data", stdin=write,
               hint="Is there room on the server for the data (`df -h` there)? The next run sends only "
                    "what is missing.")
    return sent.count


def send_rsync(config, roots, destination, link_dests, steps):
    """rsync over the run's ssh connection (links here become files, as in our own transfer);
    unchanged files are hard-linked from the newest trees. Return the bytes rsync reports sent."""
    ssh = shlex.join(["ssh", *config.SSH_OPTIONS, *SSH_DEFAULTS])
    command = ["rsync", "--archive", "--copy-links", "--relative", "--protect-args", "--stats",
               "--info=progress2",
               "--chmod=D755,F444", *(f"--link-dest={d}" for d in link_dests), "-e", ssh, "--",
               *(f"./{root}" for root in roots), f"{config.REMOTE_SERVER}:{destination}"]
    sent = {}

    def read(stdout):
        text = b""
        for chunk in iter(lambda: stdout.read1(65536), b""):
            text = (text + chunk)[-4096:]
            progress = re.findall(rb"\r\s*([\d,]+)\s+\d+%", text)
            if progress:
                steps.progress(f"{results.human_size(int(progress[-1].replace(b',', b'')))} checked")
            total = re.search(rb"Total bytes sent: ([\d,]+)", text)
            if total:
                sent["bytes"] = int(total.group(1).replace(b",", b""))

    util.run(command, step="data", read_stdout=read,
             hint="Is there room on the server for the data (`df -h` there)? The next run sends "
                  "only what changed.")
    return sent.get("bytes", 0)


class _Counting:
    """A file that counts the bytes written through it, and shows them as the step's progress."""

    def __init__(self, steps):
        self.file, self.count, self.steps = None, 0, steps

    def write(self, data):
        self.count += len(data)
        self.steps.progress(f"{results.human_size(self.count)} sent")
        return self.file.write(data)


def _add(tar, name, kind, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o755 if kind == tarfile.DIRTYPE else 0o444
    info.mtime = time.time()
    tar.addfile(info)
