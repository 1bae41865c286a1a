"""DATA: the file list, the mounts, and our own hash-based transfer run for real through `sh`
(REMOTE_SERVER = "local" takes the same commands as ssh would, without the network)."""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from pystributed import config, data, progress
from pystributed.errors import PystributedError, StepError


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
    with pytest.raises(PystributedError, match="DATA and REMOTE_DATA mount two things at /app/data in the container"):
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


def synced(cfg, run_id):
    steps = progress.Steps(quiet=True)
    with steps.step("data"):
        tree = data.sync(cfg, data.local_files(cfg.DATA), run_id, steps, roots=data.excluded(cfg))
    return tree, steps.rows[-1][5]


def test_our_own_transfer_sends_only_what_the_server_lacks(tmp_path, monkeypatch):
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
    assert Path(f"{new_tree}/data/sub/3.bin").read_bytes() == (tmp_path / "data" / "sub" / "3.bin").read_bytes()
    assert Path(f"{tree}/data/sub/3.bin").read_bytes() != (tmp_path / "data" / "sub" / "3.bin").read_bytes()
    assert os.stat(f"{new_tree}/data/sub/1.bin").st_ino == os.stat(f"{tree}/data/sub/1.bin").st_ino


def test_a_cut_off_transfer_keeps_the_whole_files_that_arrived(tmp_path, monkeypatch):
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
    assert hashlib.sha256(contents["0.bin"]).hexdigest() in kept
    for name in kept:  # nothing half-written under a hash
        assert hashlib.sha256((server / ".data" / "objects" / name).read_bytes()).hexdigest() == name
    assert not os.listdir(server / ".data" / "incoming")

    monkeypatch.setattr(data, "send_tar", send_tar)
    (tmp_path / "data" / "2.bin").write_bytes(contents["2.bin"])
    tree, shown = synced(cfg, "20261125-000001-aaaaaa")
    amount, unit = shown.split()[:2]
    assert unit == "KB" and float(amount) <= 800 - 200 * len(kept) + 30  # only what was not kept
    assert Path(tree, "data", "2.bin").read_bytes() == contents["2.bin"]


def test_a_cut_off_rsync_leaves_its_whole_files_for_the_next_link_dest(tmp_path):
    (tmp_path / "incoming" / "T" / "tree" / "data").mkdir(parents=True)
    (tmp_path / "incoming" / "T" / "tree" / "data" / "a.bin").write_bytes(b"a")
    (tmp_path / "trees" / "partial").mkdir(parents=True)  # an older one goes
    subprocess.run(["sh", "-c", data.salvage("incoming/T", rsync=True)], cwd=tmp_path, check=True)
    assert (tmp_path / "trees" / "partial" / "data" / "a.bin").read_bytes() == b"a"
    assert not os.listdir(tmp_path / "incoming")


@pytest.mark.parametrize("transfer", ["ours", "rsync"])
def test_every_word_of_the_sync_reaches_the_shell_quoted(tmp_path, monkeypatch, transfer):
    # A run id is always plain, but no word goes to the remote shell unquoted: one that is not
    # plain must be taken as it is, never split, globbed or run.
    monkeypatch.setattr(data, "RSYNC", transfer == "rsync")
    if transfer == "rsync":  # the rsync path's own shell words: the salvage after a cut-off
        (tmp_path / "incoming" / "T x" / "tree" / "data").mkdir(parents=True)
        (tmp_path / "incoming" / "T x" / "tree" / "data" / "a.bin").write_bytes(b"a")
        (tmp_path / "incoming" / "T").mkdir()
        (tmp_path / "trees").mkdir()
        subprocess.run(["sh", "-c", data.salvage("incoming/T x", rsync=True)], cwd=tmp_path, check=True)
        assert (tmp_path / "trees" / "partial" / "data" / "a.bin").read_bytes() == b"a"
        assert os.listdir(tmp_path / "incoming") == ["T"]
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
    assert hashlib.sha256(b"b").hexdigest() in os.listdir(server / ".data" / "objects")  # kept whole
    assert not list(tmp_path.rglob("pwned")) and os.listdir(server / ".data" / "incoming") == ["run"]


def test_a_tree_another_run_made_meanwhile_is_used_and_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "RSYNC", False)
    server = tmp_path / "server"
    cfg = config.load(environ={}, REMOTE_SERVER="local", REMOTE_WORKDIR=str(server), DATA=["data"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"a")
    key = data.manifest(cfg, data.local_files(cfg.DATA))[1]
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
