"""What a remote cell shows, in a real kernel and from the shell (issue #27): its matplotlib figures and
display() as the cell's own outputs, in order with its prints; a sweep's first figure per task at the
end; figures in the run folder, named by `run` and `logs`, brought back by a detached run's attach.
The image with matplotlib, pandas and IPython is Debian's (scripts/sandbox.sh plot-image); the base image
has none of them, and a cell there runs as before."""
import base64

import pytest
from conftest import pystributed
from kernel import Kernel, error_of, stream_text

PNG_START = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def plot_image(sandbox, monkeypatch):
    image = sandbox.env["PYSTRIBUTED_SANDBOX_PLOT_IMAGE"]
    monkeypatch.setenv("PYSTRIBUTED_BASE_IMAGE", image)
    return image


def kernel_in(tmp_path):
    k = Kernel(tmp_path)
    messages, reply = k.execute("import pystributed.main as runner")
    assert reply["status"] == "ok", messages
    return k


def outputs(messages):
    """[(kind, what)]: ("stdout", text) or ("display", MIME bundle), in the order the notebook got them."""
    found = []
    for m in messages:
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout":
            found.append(("stdout", m["content"]["text"]))
        elif m["msg_type"] == "display_data":
            found.append(("display", m["content"]["data"]))
    return found


def position(found, test):
    return next(i for i, item in enumerate(found) if test(item))


def only_run(tmp_path):
    runs = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


CELL = """
import os
import matplotlib.pyplot as plt
import pandas as pd
print("start")
plt.plot([3, 2, 1])
plt.title("loss")
plt.show()
print("after the figure")
display(pd.DataFrame({"lr": [0.1, 0.01], "loss": [0.5, 0.25]}))
print("after the table")
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
fig.savefig(os.path.join(os.environ["PYSTRIBUTED_RESULTS"], "mine.png"))  # the cell's own: untouched
print("end")
"""


def test_a_remote_cells_figures_and_tables_are_its_outputs_in_order_with_its_prints(plot_image, tmp_path):
    kernel = kernel_in(tmp_path)
    try:
        messages, reply = kernel.execute("%%remote\n" + CELL, timeout=900)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    found = outputs(messages)
    start = position(found, lambda o: o[0] == "stdout" and "start" in o[1])
    figure = position(found, lambda o: o[0] == "display" and "image/png" in o[1])
    after = position(found, lambda o: o[0] == "stdout" and "after the figure" in o[1])
    table = position(found, lambda o: o[0] == "display" and "0.25<" in o[1].get("text/html", ""))
    after_table = position(found, lambda o: o[0] == "stdout" and "after the table" in o[1])
    assert start < figure < after < table < after_table, found
    assert base64.b64decode(found[figure][1]["image/png"]).startswith(PNG_START)
    assert "0.25" in found[table][1]["text/html"]
    # the figure left open shows at the cell's end, after its last print
    last = [i for i, o in enumerate(found) if o[0] == "display" and "image/png" in o[1]]
    assert len(last) == 2 and last[1] > position(found, lambda o: o[0] == "stdout" and "end" in o[1])
    folder = only_run(tmp_path)
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["001.png", "002.png"]
    assert (folder / "figures" / "001.png").read_bytes().startswith(PNG_START)
    assert (folder / "mine.png").exists()
    log = (folder / "output.log").read_text()
    assert "[figure figures/001.png]\nafter the figure" in log and "\x1b" not in log


def test_the_notebooks_figure_formats_are_the_remote_figures(plot_image, tmp_path):
    kernel = kernel_in(tmp_path)
    try:
        messages, reply = kernel.execute("%config InlineBackend.figure_formats = ['png', 'svg']")
        assert reply["status"] == "ok", messages
        messages, reply = kernel.execute("%%remote\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\n",
                                         timeout=900)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    (shown,) = [o[1] for o in outputs(messages) if o[0] == "display" and "image/png" in o[1]]
    assert "image/png" in shown and shown["image/svg+xml"].lstrip().startswith("<?xml")
    assert sorted(p.name for p in (only_run(tmp_path) / "figures").iterdir()) == ["001.png", "001.svg"]


def test_an_image_without_matplotlib_or_ipython_runs_as_before_and_display_still_shows(sandbox, tmp_path):
    kernel = kernel_in(tmp_path)
    try:
        messages, reply = kernel.execute(
            "%%remote\n"
            "import importlib.util\n"
            "print('matplotlib:', importlib.util.find_spec('matplotlib'),\n"
            "      'IPython:', importlib.util.find_spec('IPython'))\n"
            "class Bold:\n"
            "    def _repr_html_(self):\n"
            "        return '<b>bold</b>'\n"
            "display(Bold())\n"
            "handle = display('epoch 1', display_id=True)\n"
            "handle.update('epoch 2')\n"
            "print('done')\n", timeout=600)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    assert "matplotlib: None IPython: None\n" in stream_text(messages)
    found = outputs(messages)
    bold = position(found, lambda o: o[0] == "display" and o[1].get("text/html") == "<b>bold</b>")
    assert bold < position(found, lambda o: o[0] == "stdout" and "done" in o[1])
    assert not (only_run(tmp_path) / "figures").exists()
    # a display handle updates its output in place
    first = next(m for m in messages if m["msg_type"] == "display_data"
                 and m["content"]["data"].get("text/plain") == "'epoch 1'")
    display_id = first["content"]["transient"]["display_id"]
    updates = [m["content"]["data"] for m in messages if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == display_id]
    assert updates == [{"text/plain": "'epoch 2'"}]


def test_a_sweep_of_three_shows_three_figures_with_their_parameters(plot_image, tmp_path):
    kernel = kernel_in(tmp_path)
    try:
        kernel.execute("lr = 0.1")
        messages, reply = kernel.execute(
            "%%remote --sweep lr=0.1,0.01,0.001\n"
            "import matplotlib.pyplot as plt\n"
            "plt.plot([lr, lr / 2])\n"
            "plt.title(f'lr={lr}')\n"
            "plt.show()\n"
            "plt.plot([1])\n"  # a second figure: the grid shows the first of each task
            "print('task done', lr)\n", timeout=900)
    finally:
        kernel.close()
    assert reply["status"] == "ok", error_of(messages)
    grids = [o[1]["text/html"] for o in outputs(messages) if o[0] == "display"
             and "grid-template-columns" in o[1].get("text/html", "")]
    assert len(grids) == 1, outputs(messages)
    assert grids[0].count("<img") == 3
    for lr in ("0.1", "0.01", "0.001"):
        assert f"lr={lr}" in grids[0]
    assert "\x1b]pystributed" not in stream_text(messages)


def test_from_the_shell_figures_are_named_and_a_detached_run_brings_them_back(plot_image, tmp_path):
    (tmp_path / "plot.py").write_text("import matplotlib.pyplot as plt\nprint('before')\nplt.plot([1, 2])\n"
                                      "plt.show()\nprint('after')\n")
    proc = pystributed("run", "plot.py", timeout=900)
    assert "before\n[figure figures/001.png]\nafter\n" in proc.stdout
    run = only_run(tmp_path)
    assert (run / "figures" / "001.png").read_bytes().startswith(PNG_START)
    logs = pystributed("logs", run.name)
    assert "before\n[figure figures/001.png]\nafter\n" in logs.stdout and "\x1b" not in logs.stdout

    run_id = pystributed("submit", "plot.py", timeout=600).stdout.strip().splitlines()[-1]
    attached = pystributed("attach", run_id, timeout=600)
    assert "[figure figures/001.png]" in attached.stdout, attached.stdout
    assert (tmp_path / "results" / run_id / "figures" / "001.png").read_bytes().startswith(PNG_START)
