"""The local record of every run: LOCAL_RESULTS_DIR/.runs/<run-id>.json, written when the run
starts and when it ends, so that a run can be found again by its id, even one that never
finished; and runner.runs() to list them."""
import html
import os
import tempfile
from pathlib import Path

from pystributed.results import RunResult, State, now_iso, start_order

INDEX = ".runs"


def save(results_dir, result):
    folder = Path(results_dir) / INDEX
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / f"{result.run_id}.json", result.to_json())


def set_state(results_dir, result, state, **fields):
    """The one place a run's state changes: with the fields that change with it, saved at once."""
    result.status = State(state)
    for name, value in fields.items():
        setattr(result, name, value)
    if result.status.ended and not result.ended:
        result.ended = now_iso()
    save(results_dir, result)


def load(results_dir, run_id):
    path = Path(results_dir) / INDEX / f"{run_id}.json"
    return RunResult.from_json(path.read_text(encoding="utf-8")) if path.exists() else None


def write_atomically(path, text):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def runs(results_dir):
    """Past runs from the local results folder, newest first."""
    folder = Path(results_dir) / INDEX
    found = [RunResult.from_json(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")]
    return RunList(sorted(found, key=lambda r: start_order(r.run_id, r.started), reverse=True))


class RunList(list):
    def _rows(self):
        for r in self:
            took = f"{r.duration:.1f}s" if r.duration is not None else "-"
            yield r.run_id, r.status, str(r.exit_code), took, r.server, f"{len(r.files)} files"

    def __str__(self):
        return "\n".join("  ".join(row) for row in self._rows()) or "no runs yet"

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_html_(self):
        head = "<tr><th>run</th><th>status</th><th>exit</th><th>took</th><th>server</th><th>files</th></tr>"
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self._rows())
        return f"<table>{head}{body}</table>"
