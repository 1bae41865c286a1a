import datetime
import io
import os
import tarfile
import time

import pytest

from pystributed import results
from pystributed.errors import PystributedError


def tar_stream(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = data
                tar.addfile(info)
            elif kind == tarfile.DIRTYPE:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_run_ids_are_unique_and_checked():
    ids = {results.new_run_id() for _ in range(100)}
    assert len(ids) == 100
    for run_id in ids:
        assert results.check_run_id(run_id) == run_id
    with pytest.raises(PystributedError, match="is not a run id"):
        results.check_run_id("../etc")


def test_start_order_sorts_by_the_start_time_and_the_id_breaks_ties():
    # Two runs of one second: the one started later has the smaller random part.
    early, late = "20261125-101502-ffffff", "20261125-101502-000000"
    assert results.start_order(late, "2026-11-25T10:15:02.900+00:00") > \
        results.start_order(early, "2026-11-25T10:15:02.100+00:00")
    utc = datetime.datetime(2026, 11, 25, 10, 15, 2, 500000, tzinfo=datetime.timezone.utc)
    assert results.start_order(late, utc) == (utc.timestamp(), late)  # a datetime (list's, from the server)
    # No start known (an old record, a run folder alone): the id's clock, this machine's local time.
    clock = datetime.datetime(2026, 11, 25, 10, 15, 2).timestamp()
    assert results.start_order(early) == results.start_order(early, "") == (clock, early)
    assert results.start_order(early, "not a time") == (clock, early)
    assert results.start_order("sweep-" + early) == (clock, early)  # a sweep sorts among the runs
    assert results.start_order("not-an-id") == (0.0, "not-an-id")


def test_extract_lands_files_under_the_final_name(tmp_path):
    stream = tar_stream([(".", tarfile.DIRTYPE, None), ("./sub", tarfile.DIRTYPE, None),
                         ("./sub/a.txt", tarfile.REGTYPE, b"A"), ("./b.txt", tarfile.REGTYPE, b"B")])
    files, skipped = results.extract(stream, tmp_path / "run")
    assert files == ["b.txt", "sub/a.txt"] and skipped == []
    assert (tmp_path / "run" / "sub" / "a.txt").read_bytes() == b"A"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_extract_refuses_to_write_outside(tmp_path):
    stream = tar_stream([("/etc/evil", tarfile.REGTYPE, b"x"), ("../evil", tarfile.REGTYPE, b"x"),
                         ("link", tarfile.SYMTYPE, "/etc"), ("ok", tarfile.REGTYPE, b"fine")])
    files, skipped = results.extract(stream, tmp_path / "run")
    assert files == ["ok"]
    assert skipped == ["/etc/evil", "../evil", "link"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_broken_stream_leaves_no_final_folder(tmp_path):
    data = tar_stream([("big", tarfile.REGTYPE, b"x" * 100000)]).getvalue()[:5000]
    with pytest.raises(tarfile.TarError):
        results.extract(io.BytesIO(data), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_fetching_again_replaces_the_folder_whole(tmp_path):
    results.extract(tar_stream([("old", tarfile.REGTYPE, b"1")]), tmp_path / "run")
    results.extract(tar_stream([("new", tarfile.REGTYPE, b"2")]), tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


class PipeLike:
    """Only read(), as a pipe: extraction must never seek back."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def read(self, size=-1):
        return self.data.read(size)


def test_extract_reads_a_pipe_straight_through(tmp_path):
    big = bytes(range(256)) * 12289  # over 3 MB, not a multiple of the 512-byte block
    long_name = "deep/" + "n" * 150 + ".txt"  # a name only a PAX header holds
    stream = tar_stream([("small", tarfile.REGTYPE, b"s" * 700), ("link", tarfile.SYMTYPE, "/etc"),
                         ("big.bin", tarfile.REGTYPE, big), (long_name, tarfile.REGTYPE, b"long")])
    files, skipped = results.extract(PipeLike(stream.getvalue()), tmp_path / "run")
    assert files == ["big.bin", long_name, "small"] and skipped == ["link"]
    assert (tmp_path / "run" / "big.bin").read_bytes() == big
    assert (tmp_path / "run" / long_name).read_bytes() == b"long"


def test_a_broken_pipe_stream_leaves_no_final_folder(tmp_path):
    data = tar_stream([("big", tarfile.REGTYPE, b"x" * 100000)]).getvalue()[:5000]
    with pytest.raises(tarfile.TarError):
        results.extract(PipeLike(data), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_two_fetches_of_one_run_at_once_each_land_it_whole(tmp_path):
    names = [f"f{i}" for i in range(6)]

    def stream():
        return tar_stream([(name, tarfile.REGTYPE, name.encode() * 1000) for name in names])

    class Meanwhile(PipeLike):
        """Halfway through this copy, another fetch of the same run (another kernel) lands its own."""

        def read(self, size=-1):
            if self.data.tell() > len(self.data.getvalue()) // 2 and not done:
                done.append(results.extract(stream(), tmp_path / "run"))
            return super().read(size)

    done = []
    files, _ = results.extract(Meanwhile(stream().getvalue()), tmp_path / "run")
    assert done and files == names
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_partial_folders_of_killed_fetches_go_after_a_day(tmp_path):
    old, young = tmp_path / ".r1.0000.partial", tmp_path / ".r1.1111.partial"
    for folder in (old, young):
        folder.mkdir()
        (folder / "f").write_text("half")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    results.extract(tar_stream([("./a", tarfile.REGTYPE, b"A")]), tmp_path / "r1")
    assert not old.exists() and young.exists() and (tmp_path / "r1").is_dir()


def test_the_files_shown_and_counted_are_those_ls_shows(tmp_path):
    """A run's own hidden files (.pystributed-state.json, at the top or in a task's folder) are not
    counted or listed: after the demo's run `ls` shows 3 files and so does the count. A dotfile the
    cell wrote is its output, and is."""
    run = results.RunResult(results.new_run_id(), local_path=tmp_path,
                            files=[".pystributed-state.json", "counts.json", "output.log", "run.json",
                                   "0/.pystributed-attempt", "0/out.txt", ".cell-cache"])
    for name in run.files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert run.shown_files == ["counts.json", "output.log", "run.json", "0/out.txt", ".cell-cache"]
    assert [os.path.basename(path) for path, _ in run._file_rows()] == [
        "counts.json", "output.log", "run.json", "out.txt", ".cell-cache"]
    assert str(results.RunList([run])).endswith("  5 files")
