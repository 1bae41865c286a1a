"""A /dev/shm big enough for PyTorch's DataLoader workers (features/shm.py), unless the user chose one."""
import pytest

from pystributed import config, pipeline, progress
from pystributed.features import shm


def mounts(args):
    cfg = config.load(environ={}, REMOTE_SERVER="local", DOCKER_RUN_ARGS=args)
    return shm.Shm().mounts(pipeline.Run(cfg, None, progress.Steps(quiet=True)))


def test_the_container_gets_a_bigger_shm_than_dockers_64_mb():
    assert mounts([]) == ["--shm-size", "8g"] == ["--shm-size", shm.SIZE]
    assert mounts(["--gpus", "all"]) == ["--shm-size", "8g"]


@pytest.mark.parametrize("args", [
    ["--shm-size", "1g"], ["--shm-size=32g"], ["--ipc", "host"], ["--ipc=host"], ["--ipc", "container:db"],
    ["--ipc=none"], ["--mount", "type=tmpfs,destination=/dev/shm,tmpfs-size=16g"],
    ["-v", "/dev/shm:/dev/shm"],
    ["--tmpfs", "/dev/shm:size=4g"], ["--mount=type=tmpfs,dst=/dev/shm"]])
def test_the_users_own_shm_is_left_as_it_is(args):
    assert mounts(args) == []


@pytest.mark.parametrize("args", [["--ipc", "private"], ["--ipc=shareable"], ["-v", "/data:/data"]])
def test_other_options_keep_the_bigger_shm(args):
    assert mounts(args) == ["--shm-size", "8g"]
