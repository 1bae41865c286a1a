"""What a remote cell shows (its figures, display(obj)), shown here: in the notebook as the cell's own
outputs, in order with its prints; in a terminal as a line naming it. The image side is
cell_runner.py (Shown, show): each comes as a marker on the cell's stdout, which live.Unmarked takes
out of the text. A sweep's tasks show theirs at the end, the first figure of each task (`grid`)."""
from __future__ import annotations

import base64
import html
import json
import sys
from pathlib import Path


def parse(body):
    """A marker's JSON: {"data": MIME bundle, "metadata": {}, "file": "figures/NNN.png" or None}."""
    try:
        shown = json.loads(body)
    except ValueError:
        shown = None
    if not isinstance(shown, dict) or not isinstance(shown.get("data"), dict):
        return {"data": {"text/plain": body}, "metadata": {}, "file": None}
    return shown


def text_of(shown):
    """What the cell showed, as text (the saved output, `logs`): `[figure figures/001.png]`, else
    its text/plain."""
    file = shown.get("file")
    return f"[figure {file}]\n" if file else f"{shown.get('data', {}).get('text/plain', '')}\n"


def shell():
    """This process's IPython, where display() shows MIME bundles; None in a terminal."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def show(shown):
    """Show what the cell showed: a display_data output of the running cell, else a line of text."""
    if shell() is None:
        sys.stdout.write(text_of(shown))
        sys.stdout.flush()
        return
    from IPython.display import display, update_display

    sys.stdout.flush()  # the prints before it first
    data, metadata, display_id = shown["data"], shown.get("metadata") or {}, shown.get("display_id")
    if display_id and shown.get("update"):  # the cell's handle.update(): the output it names, in place
        update_display(data, metadata=metadata, raw=True, display_id=display_id)
    else:
        display(data, metadata=metadata, raw=True, **({"display_id": display_id} if display_id else {}))


def first_figures(tasks):
    """[(task, path of its first figure)] of the tasks whose folder is here and has figures."""
    found = []
    for task in tasks:
        folder = Path(task.local_path) / "figures" if task.local_path else None
        pngs = sorted(folder.glob("*.png")) if folder and folder.is_dir() else []
        if pngs:
            found.append((task, pngs[0]))
    return found


class Grid:
    """A sweep's first figure of each task, side by side, each under its parameters."""

    def __init__(self, figures, label):
        self.figures, self.label = figures, label  # label(task): its parameters, as text

    def _repr_html_(self):
        cells = []
        for task, path in self.figures:
            data = base64.b64encode(path.read_bytes()).decode()
            cells.append(f'<figure style="margin:4px"><img style="max-width:100%" src="data:image/png;base64,'
                         f'{data}"/><figcaption>task {task.index}: {html.escape(self.label(task))}'
                         "</figcaption></figure>")
        return ('<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));'
                f'gap:8px">{"".join(cells)}</div>')

    def __repr__(self):
        return "\n".join(f"task {task.index} [{self.label(task)}]: {path}" for task, path in self.figures)
