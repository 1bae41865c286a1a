"""What a run can do beyond the seed path. Each feature is a small object with the hooks it needs;
the front doors (magic, main, cli) choose a run's features (`for_run`), and the pipeline calls
every feature's hook at these points, in this order. A hook may change the Run it is given.

    check(run)         before anything: refuse early, warn, add to run.excludes
    before_pack(run)   add run.runner_files, set run.requirements
    reuse(run)         after pack (run.digest is known): an earlier RunResult to return instead
    before_build(run)  inside the build step (before the push)
    instead_of_build(run)  in the build step, when the image is not there: True if it need not be
                       built, pushed nor pulled (run.ready)
    mounts(run)        after pull: `docker run` arguments (its own "data" step)
    after_fetch(run)   the results are here (run.result.local_path)
    finished(run)      the run succeeded and its values are in
"""


class Feature:
    def check(self, run):
        pass

    def before_pack(self, run):
        pass

    def reuse(self, run):
        return None

    def before_build(self, run):
        pass

    def instead_of_build(self, run):
        return False

    def mounts(self, run):
        return []

    def after_fetch(self, run):
        pass

    def finished(self, run):
        pass


def for_run(config, *, exchange=None, cache=False):
    """The features of a run with this config: `exchange` (values.Exchange) for --in/--out and
    the last value, `cache` for --cache."""
    from pystributed.features import base, cell_mount, checks, data, gpus, requirements, shm
    from pystributed.features import cache as caching

    found = [data.Data()] if config.DATA or config.REMOTE_DATA else []  # without either, its hooks do nothing
    found += [checks.Checks(), shm.Shm(), cell_mount.CellMount()]
    if gpus.requested(config.DOCKER_RUN_ARGS):
        found.append(gpus.Gpus())
    if config.is_cluster:  # GPUs are Swarm's to give (GPUS_PER_TASK), not `--gpus`'s
        from pystributed.features import cluster

        found = [f for f in found if not isinstance(f, gpus.Gpus)] + [cluster.Cluster()]
    if config.REQUIREMENTS == requirements.AUTO:
        found.append(requirements.Auto())
    if exchange is not None:
        found.append(exchange)
    base_image = base.BaseImage()  # every run: its id is part of the image's tag, and of the cache key
    if cache:
        found.append(caching.Cache(exchange, base_image))
    return [*found, base_image]
