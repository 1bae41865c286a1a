"""Where a run's container runs. `pipeline` and `lifecycle` speak to a place only through the
methods of `Place`; the config chooses which one (`place_for`)."""


class Place:
    """One place containers run in: the local engine (local.py), one server over ssh (ssh.py), a
    Docker Swarm (swarm.py), a Slurm cluster (slurm.py). Every method may raise StepError naming its step."""

    name = ""  # how messages name it: "the local engine", or REMOTE_SERVER
    platform = ""  # what its engine runs (`linux/amd64`), once `prepare` has asked; "" if unknown
    base_id = ""  # BASE_IMAGE's id on its engine, when `prepare` asked it too (remote-build); "" if not
    queues = False  # whether it queues a job's tasks itself (a job then goes on without this process)
    # What runs a job's tasks here: places/<engine>_engine.py's <Engine>Engine (engine.py's interface;
    # sweep.ENGINES maps this name to it: no place imports its engine).
    engine = "server"
    steps = None  # the run's step display, for what the place has to say (set by the caller)

    def connection(self):
        """A context manager: the commands inside it share one connection."""
        raise NotImplementedError

    def prepare(self, run_id):
        """Make the run's folder; return its absolute path and the uid:gid its container runs as."""
        raise NotImplementedError

    def discard(self, remote_dir):
        """Remove the folder of a run that failed before its container started (if still empty)."""
        raise NotImplementedError

    def docker(self, argv, *, step, hint="", stdin=None, read=None):
        """Run a docker argument list (from docker.py) on the place's engine; its output."""
        raise NotImplementedError

    # start, follow, finish, stop: one server's (pipeline, server_engine.py); a cluster's run is a job of
    # one task on its engine (sweep.run_one).

    def follow(self, run_id, on_stdout, on_stderr, *, start=None, env=None):
        """Start the container (with `start`, docker run's arguments, and `env` on its stdin),
        then hand its output to the callbacks until it ends; the exit code of that command."""
        raise NotImplementedError

    def start(self, start, env):
        """Start the container and return."""
        raise NotImplementedError

    def finish(self, remote_dir, run_id, *, cancelled=False, absent=False):
        """Wait for the container, save its log and state in its folder, remove it; its exit code (an int).
        With `absent`, None when there is no container and no state saved (it never started)."""
        raise NotImplementedError

    def stop(self, run_id, *, step="run"):
        """Interrupt the cell, then stop its container."""
        raise NotImplementedError

    def fetch(self, remote_dir, read, *, going=False, hint=""):
        """The run folder as a tar stream, handed to `read(stream)`; what `read` returned."""
        raise NotImplementedError

    def logs(self, remote_dir, run_id, on_stdout, on_stderr, *, follow=False):
        """The run's output from its start (with `follow`, until it ends); the exit code."""
        raise NotImplementedError

    def survey(self, run_id=None):
        """{section: [lines]} describing the runs in REMOTE_WORKDIR (see server.sh's survey)."""
        raise NotImplementedError

    def cell_image(self, image, sha, archive):
        """If `image` is here: (its digest in the registry, or ""; the folder there where the cell
        layer's files, `archive` (a tar), are kept); else None, or if the place cannot mount them."""
        return

    def images(self, repository):
        """{"used": images of all containers, "images": REPOSITORY's images, "cells": the folders of
        cell layers' files (cell_image) that no run has used for an hour and no container mounts}."""
        raise NotImplementedError

    def remove_cells(self, folders):
        """Remove those of the folders `images` named in "cells" that still are such (a place with
        cell_image)."""
        raise NotImplementedError

    def remove(self, folders):
        """Remove run folders there."""
        raise NotImplementedError

    def hint(self):
        """What to check when the place cannot be reached (for an error's hint)."""
        return ""

    def engine_hint(self, error):
        """`error`, with a better hint when the place's Docker engine could not be reached."""
        return error


class ClusterPlace(Place):
    """A cluster reached through one ssh login (a swarm's manager, a Slurm cluster's login node),
    which queues a job's tasks itself."""

    queues = True

    def __init__(self, config):
        from pystributed.places import ssh

        self.config, self.name = config, config.REMOTE_SERVER
        self.login = ssh.Ssh(config)

    def hint(self):
        return self.login.hint()


def place_for(config):
    from pystributed.places import local, ssh, swarm

    if config.CLUSTER == "slurm":
        from pystributed.places import slurm

        return slurm.Slurm(config)
    return (local.Local(config) if config.is_local else swarm.Swarm(config) if config.is_cluster
            else ssh.Ssh(config))
