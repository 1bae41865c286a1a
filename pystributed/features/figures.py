"""The figure formats a notebook asks for (`%config InlineBackend.figure_formats = ["png", "svg"]`):
the cell's figures are saved and shown in those too (cell_runner.py's Shown; png always). Without
this feature (the default, png only) nothing is passed."""
import sys

from pystributed.cell_runner import FORMATS
from pystributed.features import Feature


class Formats(Feature):
    def __init__(self, formats):
        self.formats = formats

    def check(self, run):
        run.env["PYSTRIBUTED_FIGURE_FORMATS"] = ",".join(self.formats)


def asked():
    """[Formats] when this kernel's InlineBackend.figure_formats asks for more than png, else [].
    (Called where IPython is imported: main.py, magic.py.)"""
    config = getattr(sys.modules["IPython"].get_ipython(), "config", {})
    formats = {"jpeg" if f == "jpg" else f for f in config.get("InlineBackend", {}).get("figure_formats", ())}
    return [Formats(sorted(formats & FORMATS.keys()))] if formats & FORMATS.keys() - {"png"} else []
