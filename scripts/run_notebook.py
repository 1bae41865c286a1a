"""Execute a notebook in a real Jupyter kernel, in its own folder, and print what each cell shows.

    python3 scripts/run_notebook.py NOTEBOOK [OUTPUT]   (OUTPUT: where to save the executed copy)
"""
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(path, output=None):
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    failed = None
    try:
        client.execute()
    except CellExecutionError as e:
        failed = e
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source:
            continue
        print("\n".join("In  | " + line for line in cell.source.splitlines()))
        shown = "".join(_text(out) for out in cell.get("outputs", []))
        print("\n".join("Out | " + line for line in shown.rstrip("\n").splitlines()))
        print()
    output = Path(output or path.with_suffix(".out.ipynb"))
    nbformat.write(nb, output)
    print(f"executed notebook saved to {output}")
    return 1 if failed else 0


def _text(out):
    if out.output_type == "stream":
        return out.text  # consecutive stream outputs join up, as Jupyter shows them
    if out.output_type == "error":
        return "\n".join(out.traceback) + "\n"
    return out.get("data", {}).get("text/plain", "") + "\n"


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
