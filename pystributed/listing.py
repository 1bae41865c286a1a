"""`list` and `clean` see runs and sweeps together: one survey of REMOTE_WORKDIR (one command), read
as runs (lifecycle.py) and as sweeps (sweep_survey.py); the local records when the server cannot be
reached."""
from __future__ import annotations

from pystributed import lifecycle, results, sweep_survey
from pystributed.errors import StepError
from pystributed.lifecycle import RunState, RunTable, iso_time
from pystributed.places import place_for


def survey_all(config, place, sections=None):
    """{id: RunState} of the runs and the sweeps (sweep_survey.SweepState) in REMOTE_WORKDIR (from the
    survey's `sections`, if given)."""
    sections = place.survey() if sections is None else sections
    found = lifecycle.parse_survey(config, sections)
    found.update(sweep_survey.survey(config, place, sections))
    return found


def list_runs(config):
    """The runs in REMOTE_WORKDIR on the server, newest first; from the local index, marked
    offline, if the server cannot be reached."""
    where = place_for(config)
    try:
        with where.connection() as place:
            runs = survey_all(config, place)
    except StepError as e:
        found = _from_records(config, where.name) + sweep_survey.from_records(config, where.name)
        return RunTable(sorted(found, key=_newest, reverse=True),
                        offline=f"{where.name}: {e.step} failed: {e.message}")
    for run in runs.values():
        if results.RUN_ID.fullmatch(run.run_id):  # (a sweep's record is jobs.py's)
            lifecycle.remember(config, place, run)
    return RunTable(sorted(runs.values(), key=_newest, reverse=True))


def _newest(run):
    # In the order of the STARTED column (the container's start, else the record's), not of the ids:
    # two runs started in one second would sort by their ids' random part.
    return results.start_order(run.run_id, run.started)


def _from_records(config, server):
    found = []
    for local in results.runs(config.LOCAL_RESULTS_DIR):
        if local.server != server:
            continue
        run = RunState(local.run_id, state=f"{local.status} (last seen)", exit_code=local.exit_code,
                       started=iso_time(local.started), ended=iso_time(local.ended), image=local.image,
                       remote_dir=local.remote_dir,
                       local_path=(str(local.local_path) if local.local_path and local.local_path.exists()
                                   else ""))
        found.append(run)
    return found
