"""A /dev/shm of SIZE instead of Docker's 64 MB. PyTorch's DataLoader workers (num_workers > 0),
and other multiprocessing, hand data over in shared memory: with Docker's default a cell dies with
`bus error` ("This might be caused by insufficient shared memory (shm)"). It is a limit, not a
reservation: the container uses only what it writes there, which counts as its memory. A
`--shm-size` or `--ipc` of DOCKER_RUN_ARGS is the user's choice, and then nothing is added."""
from pystributed.features import Feature

SIZE = "8g"


class Shm(Feature):
    def mounts(self, run):
        return [] if chosen(run.config.DOCKER_RUN_ARGS) else ["--shm-size", SIZE]


def chosen(args):
    """Whether these docker run arguments set the shared memory themselves."""
    return any(arg.split("=", 1)[0] in ("--shm-size", "--ipc") for arg in args)
