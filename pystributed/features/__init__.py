"""What a run can do beyond the seed path. Each feature is a small object with the hooks it needs;
the front doors (magic, main, cli) choose a run's features (`for_run`), and the pipeline calls
every feature's hook at these points, in this order. A hook may change the Run it is given.

    check(run)         before anything: refuse early, warn, add to run.excludes
    before_pack(run)   add run.runner_files, set run.requirements
    reuse(run)         after pack (run.digest is known): an earlier RunResult to return instead
    before_build(run)  inside the build step
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

    def mounts(self, run):
        return []

    def after_fetch(self, run):
        pass

    def finished(self, run):
        pass


def for_run(config, *, exchange=None, cache=False):
    """The features of a run with this config: `exchange` (values.Exchange) for --in/--out and
    the last value, `cache` for --cache."""
    from pystributed.features import cache as caching
    from pystributed.features import checks, data, requirements

    found = [data.Data(), checks.Checks()]
    if config.REQUIREMENTS == requirements.AUTO:
        found.append(requirements.Auto())
    if exchange is not None:
        found.append(exchange)
    if cache:
        found.append(caching.Cache(exchange))
    return found
