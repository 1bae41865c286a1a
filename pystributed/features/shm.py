"""A /dev/shm of SIZE instead of Docker's 64 MB. PyTorch's DataLoader workers (num_workers > 0),
and other multiprocessing, hand data over in shared memory: with Docker's default a cell dies with
`bus error` ("This might be caused by insufficient shared memory (shm)"). It is a limit, not a
reservation: the container uses only what it writes there, which counts as its memory. Where
DOCKER_RUN_ARGS decide /dev/shm themselves (`--shm-size`, an `--ipc` that shares another's, a
mount there), nothing is added."""
from pystributed.features import Feature

SIZE = "8g"


class Shm(Feature):
    def mounts(self, run):
        return [] if chosen(run.config.DOCKER_RUN_ARGS) else ["--shm-size", SIZE]


def chosen(args):
    """Whether these docker run arguments decide /dev/shm themselves: --shm-size; --ipc host,
    none or container:NAME (private and shareable have a /dev/shm of --shm-size); a mount or
    tmpfs there (on a swarm, the only way before, and a second mount there would be refused)."""
    words = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    for option, value in zip(words, [*words[1:], ""]):
        if option == "--shm-size" or "/dev/shm" in option:
            return True
        if option == "--ipc" and (value in ("host", "none") or value.startswith("container:")):
            return True
    return False
