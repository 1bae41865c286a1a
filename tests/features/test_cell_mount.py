"""A rerun of a changed cell: the image noted for its lower layers, the cell's files mounted over it."""
import hashlib

import pytest

from pystributed import config, context, pipeline, progress, results
from pystributed.errors import StepError
from pystributed.features import cell_mount
from pystributed.places import Place

IMAGE = "reg:5000/p:" + "1" * 16 + "-" + "a" * 16


class Server(Place):
    """A place that has (or lacks) the image, and says what it was sent."""

    name = "gpu-box"

    def __init__(self, answer=None):
        self.answer, self.sent = answer, []

    def cell_image(self, image, sha, archive):
        self.sent.append((image, sha, archive))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def a_run(tmp_path, place, source="print(2)\n", runner_files=None):
    cfg = config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", DOCKER_IMAGE_NAME="p",
                      LOCAL_RESULTS_DIR=str(tmp_path / "results"))
    run = pipeline.Run(cfg, place, progress.Steps(quiet=True), source=source,
                       code_path=str(tmp_path / "cell.py"),
                       lower="1" * 64, cell="c" * 64, runner_files=runner_files or {},
                       result=results.RunResult("20261125-101502-3fa9c1", image=IMAGE))
    run.features = [cell_mount.CellMount()]
    return run


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def built(tmp_path):
    """A first run: nothing noted, so nothing asked of the server; its image noted after the pull."""
    run = a_run(tmp_path, Server())
    assert run.hooks("instead_of_build") == [False] and run.place.sent == []
    assert run.hooks("mounts") == [[]]


def test_a_first_run_asks_nothing_and_notes_its_image(tmp_path):
    built(tmp_path)
    notes = list((tmp_path / "results" / cell_mount.INDEX).iterdir())
    assert len(notes) == 1 and notes[0].read_text() == IMAGE + "\n" and notes[0].name.endswith("-" + "1" * 16)


def test_a_changed_cell_is_mounted_over_the_noted_image(tmp_path):
    built(tmp_path)
    place = Server(("sha256:" + "d" * 64, "/home/me/runs/.cells/" + "c" * 64))
    run = a_run(tmp_path, place, runner_files={"in.pickle": b"\x80"})
    run.result.image = "reg:5000/p:" + "1" * 16 + "-" + "b" * 16  # the new cell's tag, not built
    with run.steps.step("build", "here"):  # where the hook is called
        assert run.hooks("instead_of_build") == [True]
    files = {"app/cell.py": b"print(2)\n", "pystributed/in.pickle": b"\x80"}
    sha = hashlib.sha256(context.cell_archive(files)).hexdigest()  # the files' own hash, kept by it there
    assert place.sent == [(IMAGE, sha, context.cell_archive(files))]
    assert (run.result.image, run.result.image_digest, run.result.cell_archive) == (IMAGE,
                                                                                    "sha256:" + "d" * 64, sha)
    folder = "/home/me/runs/.cells/" + "c" * 64
    assert run.hooks("mounts") == [[
        "--mount", f"type=bind,source={folder}/app/cell.py,target=/app/cell.py,readonly",
        "--mount", f"type=bind,source={folder}/pystributed/in.pickle,target=/pystributed/in.pickle,readonly"]]


@pytest.mark.parametrize("why, answer, runner_files", [
    ("the server no longer has the image", None, {}),
    ("the server could not be asked", StepError("build", "ssh could not run"), {}),
    ("a REMOTE_WORKDIR --mount cannot spell", ("", "/home/me/a,b/.cells/c"), {}),
    ("a name --mount cannot spell", None, {"a,b.pickle": b"x"}),
    ("a large cell layer goes in an image", None, {"big.pickle": b"x" * (cell_mount.CELL_LIMIT + 1)}),
])
def test_otherwise_the_seed_path_builds(tmp_path, why, answer, runner_files):
    built(tmp_path)
    place = Server(answer)
    run = a_run(tmp_path, place, runner_files=runner_files)
    assert run.hooks("instead_of_build") == [False], why
    assert run.result.cell_archive == "" and run.result.image == IMAGE
    assert len(place.sent) == (0 if runner_files else 1)


def test_the_note_is_per_server(tmp_path):
    built(tmp_path)
    run = a_run(tmp_path, Server(("", "/f")))
    run.config = config.load(environ={}, REMOTE_SERVER="other-box", DOCKER_REGISTRY="reg:5000",
                             LOCAL_RESULTS_DIR=str(tmp_path / "results"))
    assert run.hooks("instead_of_build") == [False] and run.place.sent == []


def test_a_place_that_cannot_mount_says_so():
    assert Place().cell_image(IMAGE, "c" * 64, b"") is None  # a swarm's, a Slurm cluster's
