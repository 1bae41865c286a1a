"""--cache: a rerun of the same code, inputs, image and data reuses the earlier run at once.

The key is the hash of the build context (the cell, the earlier cells it brought along, the --in
pickles, the folder's files, BASE_IMAGE and the requirements: everything the image is made of), the
id of BASE_IMAGE on the engine that builds (features/base.py: a base rebuilt under the same tag runs
again), the hash of the DATA files (mounted, not built in) and the settings of the run itself. The
index is LOCAL_RESULTS_DIR/.cache/<key>.json, naming the run; the run's folder there holds its
files and values. Nothing else is asked of the server (the base's id is, with TRANSPORT = "remote-build").
"""
import hashlib
import json
from pathlib import Path

from pystributed import cell_runner, record, results
from pystributed.features import Feature, data

INDEX = ".cache"


class Cache(Feature):
    def __init__(self, exchange=None, base=None):
        self.exchange, self.base, self.key = exchange, base, None  # base: the run's base.BaseImage

    def reuse(self, run):
        self.key = key(run.config, run.digest, self.base.identity(run) if self.base else "")
        return reuse(run.config, self.key, self.exchange, run.steps)

    def finished(self, run):
        remember(run.config, self.key, run.result)


def key(config, digest, base_id=""):
    # DATA is mounted, not built in: its content counts through its own manifest's hash.
    data_key = data.manifest(config, data.local_files(config.DATA))[1] if config.DATA else None
    settings = {"context": digest, "base_image": base_id, "server": config.REMOTE_SERVER,
                "docker_run_args": config.DOCKER_RUN_ARGS,
                "env": config.ENV, "secrets": config.SECRETS, "data": data_key,
                "remote_data": config.REMOTE_DATA}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def reuse(config, cache_key, variables, steps):
    """The earlier run with this key, with its values loaded, or None (then the cell runs)."""
    entry = Path(config.LOCAL_RESULTS_DIR) / INDEX / f"{cache_key}.json"
    if not entry.is_file():
        return None
    run_id = json.loads(entry.read_text(encoding="utf-8"))["run_id"]
    result = results.load_record(config.LOCAL_RESULTS_DIR, run_id)
    if (result is None or result.status != "succeeded" or not result.local_path
            or not result.local_path.is_dir()):
        return None  # deleted, or never finished: run again
    if variables and variables.out and not _has_values(result.local_path, variables.out):
        return None  # it did not send back everything asked for now
    steps.say(f"cached: reusing run {result.run_id} of {result.started[:19].replace('T', ' ')} (same code, "
              f"inputs, image and data); its files are in {result.local_path}. Run without --cache "
              "to run again.\n")
    if variables:
        variables.collect(result)
    return result


def remember(config, cache_key, result):
    folder = Path(config.LOCAL_RESULTS_DIR) / INDEX
    folder.mkdir(parents=True, exist_ok=True)
    record.write_atomically(folder / f"{cache_key}.json", json.dumps({"run_id": result.run_id}) + "\n")


def _has_values(folder, out):
    report = folder / cell_runner.VALUES_DIR / "report.json"
    if not report.is_file():
        return False
    saved = json.loads(report.read_text(encoding="utf-8"))["out"]
    return all(saved.get(name) == "ok" for name in out)
