"""`list` and `clean` see runs and sweeps together: one survey of REMOTE_WORKDIR (one command), read
as runs (lifecycle.py) and as sweeps (sweep_survey.py); the local records when the server cannot be
reached."""
from __future__ import annotations

import dataclasses
import datetime
import html
import json

from pystributed import lifecycle, results, sweep_survey
from pystributed.errors import StepError
from pystributed.lifecycle import RunState, iso_time
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


class RunTable(list):
    """What `list` shows; `offline` says why it comes from the local index instead of the server."""

    HEAD = ("RUN", "STATE", "STARTED", "DURATION", "IMAGE", "RESULTS HERE")

    def __init__(self, runs, *, offline=""):
        super().__init__(runs)
        self.offline = offline

    def __str__(self):
        rows = [list(self.HEAD)] + [r.row() for r in self]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEAD))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        if not self:
            lines = ["no runs"]
        if self.offline:
            lines.insert(0, f"OFFLINE, from the local index (may be stale): {self.offline}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEAD)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r.row()) + "</tr>"
                       for r in self)
        note = (f"<p><b>Offline</b>, from the local index (may be stale): {html.escape(self.offline)}</p>"
                if self.offline else "")
        return f"{note}<table><tr>{head}</tr>{body}</table>"

    def to_json(self):
        def plain(value):
            return value.isoformat() if isinstance(value, datetime.datetime) else str(value)
        runs = [dataclasses.asdict(r) for r in self]
        return json.dumps({"offline": self.offline, "runs": runs}, indent=1, default=plain)
