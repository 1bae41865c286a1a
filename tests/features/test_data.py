"""DATA: the file list and the mounts; the sync's conversation with the server (the strict fake);
server.sh's data actions, and our own hash-based transfer, run for real through `sh` here (the
local place sends server.sh to sh as ssh would, without the network)."""
import hashlib
import io
import os
import shlex
import tarfile
import time
from pathlib import Path

import pytest

from pystributed import config, pipeline, progress, results
from pystributed.errors import PystributedError, StepError
from pystributed.features import data
from pystributed.places import local, ssh

RUN_ID = "20261125-101502-3fa9c1"
KEY = "k" * 64


def sha(content):
    return hashlib.sha256(content).hexdigest()


def test_excluded_and_volume_args():
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data/", "./weights.pt", "sub/dir/"])
    assert data.excluded(cfg) == ["data", "weights.pt", "sub/dir"]
    assert data.volume_args({"/srv/x y": "data", "/srv/z": "/opt/z"}) == [
        "--volume", "/srv/x y:/app/data:ro", "--volume", "/srv/z:/opt/z:ro"]


def test_missing_data_is_refused_before_anything_runs():
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["nothere/"])
    with pytest.raises(PystributedError, match="DATA names nothere/, which does not exist"):
        data.check(cfg)
    (Path("data")).mkdir()
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data/"], REMOTE_DATA={"/srv/x": "./data"})
    with pytest.raises(PystributedError, match="DATA and REMOTE_DATA mount two things at /app/data "
                                               "in the container"):
        data.check(cfg)


def test_files_of_folders_and_single_files(tmp_path):
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "b.bin").write_bytes(b"b")
    (tmp_path / "data" / "a.bin").write_bytes(b"a")
    (tmp_path / "w.pt").write_bytes(b"w")
    os.symlink("../w.pt", tmp_path / "data" / "link.pt")
    assert [name for name, _ in data.local_files(["data/", "w.pt"])] == [
        "data/a.bin", "data/link.pt", "data/sub/b.bin", "w.pt"]


def test_the_tree_key_follows_content_and_hashes_are_remembered(tmp_path):
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a").write_bytes(b"1")
    _, key = data.manifest(cfg, data.local_files(cfg.DATA))
    assert (tmp_path / "results" / ".data-hashes.json").is_file()
    assert data.manifest(cfg, data.local_files(cfg.DATA))[1] == key
    (tmp_path / "data" / "a").write_bytes(b"2")
    assert data.manifest(cfg, data.local_files(cfg.DATA))[1] != key


# The Data feature's hooks.


def remote_config(**keys):
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="registry.example:5000", **keys)


def a_run(cfg, place):
    return pipeline.Run(cfg, place, progress.Steps(quiet=True), result=results.RunResult(RUN_ID))


def test_the_check_hook_refuses_missing_data_and_leaves_data_out_of_the_image(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data/", "./w.pt"])
    run = a_run(cfg, None)
    with pytest.raises(PystributedError, match="DATA names ./w.pt, which does not exist"):
        data.Data().check(run)
    (tmp_path / "w.pt").write_bytes(b"w")
    run.excludes = ["results"]
    data.Data().check(run)
    assert run.excludes == ["results", "data", "w.pt"]


def test_without_data_there_is_no_data_step(programs):
    cfg = remote_config()
    run = a_run(cfg, ssh.Ssh(cfg))
    assert data.Data().mounts(run) == [] and run.steps.rows == []


def test_on_the_local_engine_data_is_mounted_where_it_is(tmp_path, programs):
    (tmp_path / "data").mkdir()
    (tmp_path / "w.pt").write_bytes(b"w")
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data/", "w.pt"])
    run = a_run(cfg, local.Local(cfg))
    assert data.Data().mounts(run) == [  # nothing is run, nothing is copied
        "--volume", f"{tmp_path.resolve()}/data:/app/data:ro", "--volume",
        f"{tmp_path.resolve()}/w.pt:/app/w.pt:ro"]
    assert run.steps.rows[0][:3] == ["data", "the local engine",
                                     "done"] and run.steps.rows[0][5] == "mounted from here"


def test_a_folder_docker_cannot_mount_is_refused(tmp_path, monkeypatch, programs):
    (tmp_path / "a:b" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a:b")
    cfg = config.load(environ={}, REMOTE_SERVER="local", DATA=["data"])
    with pytest.raises(PystributedError, match="the notebook's folder holds a ':' in its path, "
                                               "which docker cannot"):
        data.Data().mounts(a_run(cfg, local.Local(cfg)))


def test_remote_data_is_looked_for_on_the_server_and_mounted_read_only(programs):
    cfg = remote_config(REMOTE_DATA={"/srv/imagenet": "imagenet", "/srv/my models": "/opt/models"})
    run = a_run(cfg, ssh.Ssh(cfg))
    programs.expect("server", "missing", "/srv/imagenet", "/srv/my models", out="")
    assert data.Data().mounts(run) == ["--volume", "/srv/imagenet:/app/imagenet:ro",
                                       "--volume", "/srv/my models:/opt/models:ro"]
    assert run.steps.rows[0][:3] == ["data", "gpu-box", "done"]


def test_a_missing_remote_data_path_is_refused_before_docker_makes_it(programs):
    cfg = remote_config(REMOTE_DATA={"/srv/imagenet": "imagenet", "/srv/gone": "gone", "/srv/lost": "lost"})
    programs.expect("server", "missing", "/srv/imagenet", "/srv/gone", "/srv/lost",
                    out="/srv/gone\n/srv/lost\n")
    with pytest.raises(StepError) as excinfo:
        data.Data().mounts(a_run(cfg, ssh.Ssh(cfg)))
    assert excinfo.value.step == "data"
    assert excinfo.value.message == "REMOTE_DATA names /srv/gone, /srv/lost, which does not exist on gpu-box"
    assert (excinfo.value.hint == "Check the paths in REMOTE_DATA (absolute paths on the server, on every "
                                  "node of a cluster).")


# The sync, as the server sees it (each server action expected in order).

BASE = "pystributed-runs/.data"  # REMOTE_WORKDIR's default, as sh in the home folder sees it
DATA_DIR = "/home/me/pystributed-runs/.data"  # the answer's absolute path


def data_files(tmp_path, **contents):
    (tmp_path / "data").mkdir()
    for name, content in contents.items():
        (tmp_path / "data" / name).write_bytes(content)


def tree_key(cfg):
    return data.manifest(cfg, data.local_files(cfg.DATA))[1]


def test_a_tree_the_server_has_is_mounted_without_sending_anything(tmp_path, programs):
    data_files(tmp_path, **{"a.bin": b"a", "b.bin": b"bb", "same.bin": b"a"})
    cfg = remote_config(DATA=["data/"])
    key = tree_key(cfg)
    programs.expect("server", "data_prepare", BASE, RUN_ID, key, out=f"{DATA_DIR}\nrsync\ntree-present\n")
    run = a_run(cfg, ssh.Ssh(cfg))
    assert data.Data().mounts(run) == ["--volume", f"{DATA_DIR}/trees/{key}/data:/app/data:ro"]
    # once each
    assert programs.calls[0].stdin == "".join(f"{h}\n" for h in sorted([sha(b"a"), sha(b"bb")])).encode()
    assert run.steps.rows[0][5] == "up to date, 4 B in 3 files"


def members(stdin):
    """(name, type, link or content) of each entry of a tar stream, in order."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(stdin), mode="r|") as tar:
        for info in tar:
            body = tar.extractfile(info).read() if info.isreg() else info.linkname
            found.append((info.name, {tarfile.DIRTYPE: "dir", tarfile.LNKTYPE: "link"}.get(info.type, "file"),
                          body))
    return found


def test_our_own_transfer_sends_what_the_server_lacks_and_links_the_rest(tmp_path, programs):
    data_files(tmp_path, **{"a.bin": b"a", "b.bin": b"bb", "same.bin": b"bb"})
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "c.bin").write_bytes(b"a")
    cfg = remote_config(DATA=["data"])
    key = tree_key(cfg)
    incoming = f"incoming/{RUN_ID}"
    programs.expect("server", "data_prepare", BASE, RUN_ID, key,
                    out=f"{DATA_DIR}\nno-rsync\ntree-missing\ntree {'1' * 64}\nmissing {sha(b'bb')}\n")
    programs.expect("server", "data_receive", DATA_DIR, RUN_ID)
    programs.expect("server", "data_finish", DATA_DIR, RUN_ID, key, "")
    steps = progress.Steps(quiet=True)
    with steps.step("data"):
        tree = data.sync(cfg, ssh.Ssh(cfg), data.local_files(cfg.DATA), RUN_ID, steps, roots=["data"])
    assert tree == f"{DATA_DIR}/trees/{key}"
    assert members(programs.calls[1].stdin) == [
        (f"{incoming}/objects", "dir", ""),
        (f"{incoming}/objects/{sha(b'bb')}", "file", b"bb"),  # once, though two files hold it
        (f"{incoming}/tree", "dir", ""),
        (f"{incoming}/tree/data", "dir", ""),
        (f"{incoming}/tree/data/a.bin", "link", f"objects/{sha(b'a')}"),  # the server has it
        (f"{incoming}/tree/data/b.bin", "link", f"{incoming}/objects/{sha(b'bb')}"),
        (f"{incoming}/tree/data/same.bin", "link", f"{incoming}/objects/{sha(b'bb')}"),
        (f"{incoming}/tree/data/sub", "dir", ""),
        (f"{incoming}/tree/data/sub/c.bin", "link", f"objects/{sha(b'a')}"),
        (f"{incoming}/complete", "file", b""),  # last: all before it arrived whole
    ]
    moved = len(programs.calls[1].stdin)
    assert steps.rows[0][5] == f"{results.human_size(moved)} moved, 6 B in 4 files"


def rsync_argv(key, *link_dests):
    return ["rsync", "--archive", "--copy-links", "--relative", "--protect-args", "--stats",
            "--info=progress2",
            "--chmod=D755,F444", *(f"--link-dest={DATA_DIR}/trees/{d}" for d in link_dests),
            "-e", "ssh -F /cfg -T -o BatchMode=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=4", "--",
            "./data", "./w.pt", f"gpu-box:{DATA_DIR}/incoming/{RUN_ID}/tree/"]


@pytest.fixture
def rsync_here(monkeypatch):
    monkeypatch.setattr(data, "recent_rsync", lambda: True)


@pytest.mark.parametrize(("version", "recent"), [
    ("rsync  version 3.2.7  protocol version 31\nCopyright (C) 1996-2022 by Andrew Tridgell\n", True),
    ("rsync  version 3.1.0  protocol version 31\n", True),
    # macOS
    ("rsync  version 2.6.9  protocol version 29\nCopyright (C) 1996-2006 by Andrew Tridgell\n", False),
    ("openrsync: protocol version 29\nrsync version 2.6.9 compatible\n", False),  # macOS 15
    ("", False)])
def test_only_an_rsync_that_takes_our_options_is_used(tmp_path, monkeypatch, version, recent):
    # A real program on PATH that answers as that rsync does.
    (tmp_path / "rsync").write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(version)}\n")
    (tmp_path / "rsync").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    data.recent_rsync.cache_clear()
    try:
        assert data.recent_rsync() is recent
    finally:
        data.recent_rsync.cache_clear()


def test_with_rsync_on_both_sides_rsync_makes_the_tree_against_the_newest(tmp_path, programs, rsync_here):
    data_files(tmp_path, **{"a.bin": b"a"})
    (tmp_path / "w.pt").write_bytes(b"w")
    cfg = remote_config(DATA=["data", "w.pt"], SSH_OPTIONS=["-F", "/cfg"])
    key = tree_key(cfg)
    programs.expect("server", "data_prepare", BASE, RUN_ID, key,
                    out=f"{DATA_DIR}\nrsync\ntree-missing\ntree T2\ntree T1\nmissing {sha(b'a')}\n")
    programs.expect(*rsync_argv(key, "T2", "T1"), out=b"\r      1,234  50%\r      2,468 100%\nTotal "
                                                      b"bytes sent: 2,500\n")
    programs.expect("server", "data_finish", DATA_DIR, RUN_ID, key, "rsync")  # trees/partial goes
    run = a_run(cfg, ssh.Ssh(cfg))
    assert data.Data().mounts(run) == ["--volume", f"{DATA_DIR}/trees/{key}/data:/app/data:ro",
                                       "--volume", f"{DATA_DIR}/trees/{key}/w.pt:/app/w.pt:ro"]
    assert run.steps.rows[0][5] == "2.5 KB moved, 2 B in 2 files"


def test_a_login_shell_that_prints_gets_our_own_transfer(tmp_path, programs, rsync_here):
    # rsync's own server would read the banner as its protocol ("is your shell clean?").
    data_files(tmp_path, **{"a.bin": b"a"})
    cfg = remote_config(DATA=["data"])
    key = tree_key(cfg)
    programs.noise = "Welcome to gpu-box!\n"
    programs.expect("server", "data_prepare", BASE, RUN_ID, key, out=f"{DATA_DIR}\nrsync\ntree-missing\n")
    programs.expect("server", "data_receive", DATA_DIR, RUN_ID)
    programs.expect("server", "data_finish", DATA_DIR, RUN_ID, key, "")
    data.Data().mounts(a_run(cfg, ssh.Ssh(cfg)))


@pytest.mark.parametrize("transfer", ["ours", "rsync"])
def test_a_cut_off_transfer_is_salvaged_and_its_error_shown(tmp_path, programs, rsync_here, transfer):
    data_files(tmp_path, **{"a.bin": b"a"})
    (tmp_path / "w.pt").write_bytes(b"w")
    cfg = remote_config(DATA=["data", "w.pt"], SSH_OPTIONS=["-F", "/cfg"])
    key = tree_key(cfg)
    rsync = "rsync" if transfer == "rsync" else ""
    programs.expect("server", "data_prepare", BASE, RUN_ID, key,
                    out=f"{DATA_DIR}\n{rsync or 'no-rsync'}\ntree-missing\n")
    if rsync:
        programs.expect(*rsync_argv(key), code=12, stderr="rsync: connection unexpectedly closed\n")
    else:
        programs.expect("server", "data_receive", DATA_DIR, RUN_ID, code=2, stderr="tar: Unexpected EOF\n")
    # its own failure is not shown
    programs.expect("server", "data_salvage", DATA_DIR, RUN_ID, rsync, code=255)
    with pytest.raises(StepError) as excinfo:
        data.Data().mounts(a_run(cfg, ssh.Ssh(cfg)))
    assert excinfo.value.code == (12 if rsync else 2)
    assert excinfo.value.hint.startswith("Is there room on the server for the data (`df -h` there)? The next "
                                         "run sends only what")


def test_a_server_where_the_cache_cannot_be_made_names_remote_workdir(tmp_path, programs):
    data_files(tmp_path, **{"a.bin": b"a"})
    cfg = remote_config(DATA=["data"], REMOTE_WORKDIR="/srv/runs")
    programs.expect("server", "data_prepare", "/srv/runs/.data", RUN_ID, tree_key(cfg), code=1,
                    stderr="mkdir: cannot create directory '/srv/runs': Permission denied\n")
    with pytest.raises(StepError) as excinfo:
        data.Data().mounts(a_run(cfg, ssh.Ssh(cfg)))
    assert "Permission denied" in str(excinfo.value)
    assert excinfo.value.hint.endswith(" REMOTE_WORKDIR (/srv/runs) must be writable there.")
    assert excinfo.value.hint.startswith("Check that `ssh gpu-box` works from a terminal here")


# server.sh's data actions, run by sh here: the local place starts sh in HOME, as ssh would.


@pytest.fixture
def place(home):
    return local.Local(config.load(environ={}, REMOTE_SERVER="local"))


def call(place, action, *args, stdin=b""):
    return place.call(action, *args, step="data", stdin=lambda pipe: pipe.write(stdin))


def test_data_prepare_lists_the_newest_trees_and_exactly_the_missing_hashes(home, place):
    base = home / "runs" / ".data"
    (base / "objects").mkdir(parents=True)
    hashes = [sha(bytes([i])) for i in range(4)]
    (base / "objects" / hashes[1]).write_bytes(b"\1")
    (base / "objects" / hashes[3]).write_bytes(b"\3")
    for i in range(6):  # made one after the other: ls -t lists the newest first
        (base / "trees" / f"t{i}").mkdir(parents=True)
        time.sleep(0.05)
    stdin = "".join(h + "\n" for h in hashes).encode()
    assert call(place, "data_prepare", "runs/.data", RUN_ID, KEY, stdin=stdin).splitlines() == [
        str(base), "rsync" if data.shutil.which("rsync") else "no-rsync", "tree-missing",
        "tree t5", "tree t4", "tree t3", "tree t2", "tree t1", f"missing {hashes[0]}", f"missing {hashes[2]}"]
    assert os.listdir(base / "incoming") == [RUN_ID]  # where the transfer goes
    assert sorted(os.listdir(base / "objects")) == sorted([hashes[1], hashes[3]])


def test_data_prepare_answers_a_tree_it_has_and_makes_the_cache_folders(home, place):
    assert call(place, "data_prepare", "new/.data", RUN_ID, KEY,
                stdin=b"").splitlines()[2:] == ["tree-missing"]
    assert sorted(os.listdir(home / "new" / ".data")) == ["incoming", "objects", "trees"]
    (home / "new" / ".data" / "trees" / KEY).mkdir()
    out = call(place, "data_prepare", "new/.data", "other-run", KEY, stdin=f"{sha(b'x')}\n".encode())
    assert out.splitlines()[1:] == ["rsync" if data.shutil.which("rsync") else "no-rsync", "tree-present"]
    assert os.listdir(home / "new" / ".data" / "incoming") == [RUN_ID]  # nothing made for this one


def test_data_prepare_clears_transfers_cut_off_a_day_ago(home, place):
    incoming = home / ".data" / "incoming"
    for name in ("old", "recent"):
        (incoming / name / "objects").mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(incoming / "old", (two_days_ago, two_days_ago))
    os.utime(incoming / "recent", (time.time() - 3600, time.time() - 3600))
    call(place, "data_prepare", ".data", RUN_ID, KEY)
    assert sorted(os.listdir(incoming)) == [RUN_ID, "recent"]


def test_data_prepare_says_when_the_server_has_no_rsync(tmp_path, home, place, monkeypatch):
    bin_dir = tmp_path / "bin"  # the tools server.sh uses, and no rsync
    bin_dir.mkdir()
    for tool in ("sh", "dd", "mkdir", "find", "rm", "ls", "head", "sed"):
        os.symlink(data.shutil.which(tool), bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert call(place, "data_prepare", ".data", RUN_ID, KEY).splitlines()[1:3] == ["no-rsync", "tree-missing"]


def transfer(run_id, objects, tree, *, complete=True):
    """A tar stream as ours is: the objects {sha: content}, the tree {name: sha} as hard links."""
    incoming = f"incoming/{run_id}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.DIRTYPE, link="", content=b""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(content)
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o444
            tar.addfile(info, io.BytesIO(content) if content else None)

        add(f"{incoming}/objects")
        for digest, content in objects.items():
            add(f"{incoming}/objects/{digest}", tarfile.REGTYPE, content=content)
        add(f"{incoming}/tree")
        add(f"{incoming}/tree/data")
        for name, digest in tree.items():
            link = f"{incoming}/objects/{digest}" if digest in objects else f"objects/{digest}"
            add(f"{incoming}/tree/{name}", tarfile.LNKTYPE, link=link)
        if complete:
            add(f"{incoming}/complete", tarfile.REGTYPE)
    return buf.getvalue()


def prepared(home, run_id=RUN_ID, *objects):
    base = home / ".data"
    for folder in ("objects", "trees", f"incoming/{run_id}"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for content in objects:
        (base / "objects" / sha(content)).write_bytes(content)
    return base


def test_data_receive_and_finish_make_the_tree_of_hard_links(home, place):
    base = prepared(home, RUN_ID, b"old")
    stream = transfer(RUN_ID, {sha(b"new"): b"new"},
                      {"data/new.bin": sha(b"new"), "data/old.bin": sha(b"old"),
                       "data/again.bin": sha(b"new")})
    assert call(place, "data_receive", ".data", RUN_ID, stdin=stream) == ""
    assert sorted(os.listdir(base / "objects")) == sorted([sha(b"new"), sha(b"old")])
    assert call(place, "data_finish", str(base), RUN_ID, KEY, "") == ""
    tree = base / "trees" / KEY
    assert sorted(os.listdir(tree / "data")) == ["again.bin", "new.bin", "old.bin"]
    for name, content in [("new.bin", b"new"), ("again.bin", b"new"), ("old.bin", b"old")]:
        assert (tree / "data" / name).read_bytes() == content
        assert os.stat(tree / "data" / name).st_ino == os.stat(base / "objects" / sha(content)).st_ino
    assert os.listdir(base / "incoming") == []


def test_data_receive_keeps_nothing_of_a_stream_that_did_not_end(home, place):
    base = prepared(home)
    stream = transfer(RUN_ID, {sha(b"new"): b"new"}, {"data/new.bin": sha(b"new")}, complete=False)
    with pytest.raises(StepError, match="data failed"):
        call(place, "data_receive", ".data", RUN_ID, stdin=stream)
    assert os.listdir(base / "objects") == []  # never under its hash unless all arrived


def test_data_finish_uses_a_tree_another_run_made_meanwhile_as_it_is(home, place):
    base = prepared(home)
    (base / "trees" / KEY / "data").mkdir(parents=True)
    (base / "trees" / KEY / "data" / "theirs.bin").write_bytes(b"x")
    (base / "incoming" / RUN_ID / "tree" / "data").mkdir(parents=True)
    (base / "incoming" / RUN_ID / "tree" / "data" / "ours.bin").write_bytes(b"x")
    call(place, "data_finish", ".data", RUN_ID, KEY, "")
    assert (os.listdir(base / "trees" / KEY) == ["data"]
            and os.listdir(base / "trees" / KEY / "data") == ["theirs.bin"])
    assert os.listdir(base / "incoming") == []


def test_data_finish_after_rsync_drops_the_partial_tree(home, place):
    base = prepared(home)
    (base / "trees" / "partial").mkdir()
    (base / "trees" / "other").mkdir()
    (base / "incoming" / RUN_ID / "tree").mkdir()
    call(place, "data_finish", ".data", RUN_ID, KEY, "rsync")
    assert sorted(os.listdir(base / "trees")) == [KEY, "other"]


def test_data_salvage_keeps_only_the_files_whose_hash_is_their_name(home, place):
    base = prepared(home, RUN_ID, b"kept before")
    (base / "incoming" / "other").mkdir()  # another run's transfer: stays
    objects = base / "incoming" / RUN_ID / "objects"
    objects.mkdir()
    (objects / sha(b"whole")).write_bytes(b"whole")
    (objects / sha(b"half of it")).write_bytes(b"half")
    (objects / "not-a-hash").write_bytes(b"x")
    call(place, "data_salvage", ".data", RUN_ID, "")
    assert sorted(os.listdir(base / "objects")) == sorted([sha(b"kept before"), sha(b"whole")])
    assert (base / "objects" / sha(b"whole")).read_bytes() == b"whole"
    assert os.listdir(base / "incoming") == ["other"]
    prepared(home, "empty")  # nothing arrived: nothing to keep
    call(place, "data_salvage", ".data", "empty", "")
    assert os.listdir(base / "incoming") == ["other"]


def test_data_salvage_after_rsync_keeps_its_files_for_the_next_link_dest(home, place):
    base = prepared(home)
    (base / "incoming" / RUN_ID / "tree" / "data").mkdir(parents=True)
    (base / "incoming" / RUN_ID / "tree" / "data" / "a.bin").write_bytes(b"a")
    (base / "trees" / "partial" / "older").mkdir(parents=True)  # an older one goes
    call(place, "data_salvage", ".data", RUN_ID, "rsync")
    assert os.listdir(base / "trees" / "partial") == ["data"]
    assert (base / "trees" / "partial" / "data" / "a.bin").read_bytes() == b"a"
    assert os.listdir(base / "incoming") == []


def test_missing_names_exactly_the_paths_that_do_not_exist(home, place):
    (home / "here dir").mkdir()
    (home / "file $(x)").write_bytes(b"")
    paths = [str(home / "here dir"), "/no/such path", "file $(x)", "gone *", str(home)]
    assert call(place, "missing", *paths) == "/no/such path\ngone *\n"
    assert call(place, "missing") == ""


# Our own transfer, end to end: data.sync and server.sh through sh here.


def synced(cfg, run_id):
    steps = progress.Steps(quiet=True)
    with steps.step("data"):
        tree = data.sync(cfg, local.Local(cfg), data.local_files(cfg.DATA), run_id, steps,
                         roots=data.excluded(cfg))
    return tree, steps.rows[-1][5]


def test_our_own_transfer_sends_only_what_the_server_lacks(tmp_path, monkeypatch, home):
    monkeypatch.setattr(data, "RSYNC", False)
    server = tmp_path / "server side; $(x)"
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=str(server), DATA=["data/", "w.pt"])
    (tmp_path / "data" / "sub").mkdir(parents=True)
    for i in range(5):
        (tmp_path / "data" / "sub" / f"{i}.bin").write_bytes(os.urandom(100_000))
    (tmp_path / "data" / "same.bin").write_bytes((tmp_path / "data" / "sub" / "0.bin").read_bytes())
    (tmp_path / "w.pt").write_bytes(b"weights")

    tree, shown = synced(cfg, "20261125-000000-aaaaaa")
    assert shown.startswith("5")  # ~500 KB: the copy of 0.bin is sent once
    assert (server / ".data" / "trees").is_dir() and tree.startswith(str(server))
    for name in ["data/same.bin", "data/sub/3.bin", "w.pt"]:
        assert Path(f"{tree}/{name}").read_bytes() == (tmp_path / name).read_bytes()
    assert not os.listdir(server / ".data" / "incoming")
    assert len(os.listdir(server / ".data" / "objects")) == 6

    assert synced(cfg, "20261125-000001-aaaaaa") == (tree, "up to date, 600.0 KB in 7 files")

    (tmp_path / "data" / "sub" / "3.bin").write_bytes(os.urandom(100_000))
    new_tree, shown = synced(cfg, "20261125-000002-aaaaaa")
    assert new_tree != tree and shown.startswith("1")  # ~100 KB and the tar headers, not 600 KB
    assert (Path(f"{new_tree}/data/sub/3.bin").read_bytes()
            == (tmp_path / "data" / "sub" / "3.bin").read_bytes())
    assert Path(f"{tree}/data/sub/3.bin").read_bytes() != (tmp_path / "data" / "sub" / "3.bin").read_bytes()
    assert os.stat(f"{new_tree}/data/sub/1.bin").st_ino == os.stat(f"{tree}/data/sub/1.bin").st_ino


def test_a_relative_remote_workdir_is_under_the_home(tmp_path, monkeypatch, home):
    monkeypatch.setattr(data, "RSYNC", False)
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR="~/runs", DATA=["data"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"a")
    tree, _ = synced(cfg, RUN_ID)
    assert tree == f"{home}/runs/.data/trees/{tree_key(cfg)}"
    assert Path(tree, "data", "a.bin").read_bytes() == b"a"


def test_a_cut_off_transfer_keeps_the_whole_files_that_arrived(tmp_path, monkeypatch, home):
    monkeypatch.setattr(data, "RSYNC", False)
    server = tmp_path / "server"
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=str(server), DATA=["data"])
    (tmp_path / "data").mkdir()
    contents = {f"{i}.bin": os.urandom(200_000) for i in range(4)}
    for name, content in contents.items():
        (tmp_path / "data" / name).write_bytes(content)
    send_tar = data.send_tar

    def cut_off(*args):  # the third file vanishes once hashed: the stream stops there
        (tmp_path / "data" / "2.bin").unlink()
        return send_tar(*args)

    monkeypatch.setattr(data, "send_tar", cut_off)
    with pytest.raises(StepError, match="data failed"):
        synced(cfg, "20261125-000000-aaaaaa")
    kept = os.listdir(server / ".data" / "objects")
    assert sha(contents["0.bin"]) in kept
    for name in kept:  # nothing half-written under a hash
        assert sha((server / ".data" / "objects" / name).read_bytes()) == name
    assert not os.listdir(server / ".data" / "incoming")

    monkeypatch.setattr(data, "send_tar", send_tar)
    (tmp_path / "data" / "2.bin").write_bytes(contents["2.bin"])
    tree, shown = synced(cfg, "20261125-000001-aaaaaa")
    amount, unit = shown.split()[:2]
    assert unit == "KB" and float(amount) <= 800 - 200 * len(kept) + 30  # only what was not kept
    assert Path(tree, "data", "2.bin").read_bytes() == contents["2.bin"]


@pytest.mark.parametrize("transfer", ["ours", "rsync"])
def test_every_word_of_the_sync_reaches_the_shell_quoted(tmp_path, monkeypatch, home, transfer):
    # A run id is always plain, but no word goes to the remote shell unquoted: one that is not
    # plain must be taken as it is, never split, globbed or run.
    monkeypatch.setattr(data, "RSYNC", transfer == "rsync")
    if transfer == "rsync":  # the rsync path's own shell words: the salvage after a cut-off
        base = tmp_path / "server" / ".data"
        (base / "incoming" / "T x" / "tree" / "data").mkdir(parents=True)
        (base / "incoming" / "T x" / "tree" / "data" / "a.bin").write_bytes(b"a")
        (base / "incoming" / "T").mkdir()
        (base / "trees").mkdir()
        call(local.Local(config.load(environ={}, REMOTE_SERVER="local")), "data_salvage", str(base), "T x",
             "rsync")
        assert (base / "trees" / "partial" / "data" / "a.bin").read_bytes() == b"a"
        assert os.listdir(base / "incoming") == ["T"]
        return
    server = tmp_path / "server"
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=str(server), DATA=["data"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"a")
    (server / ".data" / "incoming" / "run").mkdir(parents=True)  # not the run's: must stay
    tree, _ = synced(cfg, "run $(touch pwned) *")
    assert Path(tree, "data", "a.bin").read_bytes() == b"a"
    assert not list(tmp_path.rglob("pwned")) and os.listdir(server / ".data" / "incoming") == ["run"]
    (tmp_path / "data" / "b.bin").write_bytes(b"b")
    (tmp_path / "data" / "c.bin").write_bytes(b"c")
    send_tar = data.send_tar

    def cut_off(*args):  # c.bin vanishes once hashed: the stream stops there, the salvage runs
        (tmp_path / "data" / "c.bin").unlink()
        return send_tar(*args)

    monkeypatch.setattr(data, "send_tar", cut_off)
    with pytest.raises(StepError, match="data failed"):
        synced(cfg, "run $(touch pwned) *")
    assert sha(b"b") in os.listdir(server / ".data" / "objects")  # kept whole
    assert not list(tmp_path.rglob("pwned")) and os.listdir(server / ".data" / "incoming") == ["run"]


def test_a_tree_another_run_made_meanwhile_is_used_and_left_as_it_is(tmp_path, monkeypatch, home):
    monkeypatch.setattr(data, "RSYNC", False)
    server = tmp_path / "server"
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=str(server), DATA=["data"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"a")
    key = tree_key(cfg)
    # Another run with the same DATA puts its tree in place just as this one moves its own.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mv").write_text(
        "#!/bin/sh\n"
        f'case "$2" in */tree) [ -d trees/{key} ] || {{ cp -a "$2" incoming/other && '
        f"/bin/mv incoming/other trees/{key}; }};; esac\n"
        'exec /bin/mv "$@"\n')
    (tmp_path / "bin" / "mv").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    tree, _ = synced(cfg, "20261125-000000-aaaaaa")
    assert os.listdir(tree) == ["data"] and os.listdir(Path(tree, "data")) == ["a.bin"]
    assert not os.listdir(server / ".data" / "incoming")
