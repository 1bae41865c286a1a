"""What a remote cell shows: display() and its markers in the image (cell_runner.py, run here), the
markers taken out of the output and shown here (live.py, live_display.py), a sweep's figures at the
end (job_view.py), the notebook's figure formats (features/figures.py). Figures themselves need
matplotlib in the image: tests/e2e/test_figures_e2e.py."""
import base64
import json
import subprocess
import sys
import types

from pystributed import cell_runner, job_view, live, live_display, progress
from pystributed.cell_runner import END, MARK, PARTIAL
from pystributed.features import figures
from pystributed.jobs import Task

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
                       "AAAABJRU5ErkJggg==")


def run_cell(tmp_path, cell, **env):
    (tmp_path / "cell.py").write_text(cell, encoding="utf-8")
    done = subprocess.run([sys.executable, cell_runner.__file__, "cell.py"], cwd=tmp_path,
                          capture_output=True, text=True, check=False,
                          env={"PYSTRIBUTED_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


def split(output, chunk=7):
    """[("text", str) or ("shown", dict)] as live.Unmarked passes them on, fed in small pieces."""
    got = []
    unmarked = live.Unmarked(lambda text: got.append(("text", text)),
                             on_shown=lambda shown: got.append(("shown", shown)))
    for i in range(0, len(output), chunk):
        unmarked(output[i:i + chunk])
    return got


def test_display_in_the_image_sends_each_bundle_in_order_with_the_prints(tmp_path):
    out = run_cell(tmp_path, """
class Table:
    def _repr_html_(self):
        return "<table><tr><td>1</td></tr></table>"
    def __repr__(self):
        return "Table(1)"
class Picture:
    def _repr_png_(self):
        return bytes.fromhex("89504e47")
class Plain:
    pass
print("before")
display(Table())
print("between")
display(Picture(), {"text/markdown": "**x**"})
display({"text/markdown": "**raw**", "text/plain": "raw"}, raw=True)
display(Plain())
print("after")
""")
    got = split(out)
    texts = "".join(t for kind, t in got if kind == "text")
    assert texts == "before\nbetween\nafter\n" and MARK not in texts
    kinds = [kind if kind == "shown" else t for kind, t in got if kind == "shown" or t.strip()]
    assert kinds[:2] == ["before\n", "shown"]
    shown = [s for kind, s in got if kind == "shown"]
    assert shown[0]["data"] == {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "Table(1)"}
    assert base64.b64decode(shown[1]["data"]["image/png"]) == bytes.fromhex("89504e47")
    assert shown[2]["data"]["text/plain"] == "{'text/markdown': '**x**'}"  # not raw: a dict is shown as one
    assert shown[3]["data"] == {"text/markdown": "**raw**", "text/plain": "raw"}
    assert list(shown[4]["data"]) == ["text/plain"] and "Plain object" in shown[4]["data"]["text/plain"]
    assert all(s["file"] is None for s in shown)


def test_ipython_display_in_the_image_is_ours_and_a_cell_without_matplotlib_runs_as_before(tmp_path):
    out = run_cell(tmp_path, """
import sys
from IPython.display import HTML, display
display(HTML("<b>x</b>"))
print("matplotlib" in sys.modules, "MPLBACKEND" in __import__("os").environ)
""")
    got = split(out)
    assert got[0][0] == "shown" and got[0][1]["data"]["text/html"] == "<b>x</b>"
    assert "".join(t for kind, t in got if kind == "text") == "False False\n"
    assert not (tmp_path / "figures").exists()


def test_a_shown_thing_over_the_limit_comes_as_its_text_and_a_sweeps_task_sends_no_data(tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setattr(cell_runner, "SHOW_LIMIT", 1000)
    cell_runner.show({"image/png": b"x" * 2000, "text/plain": "<Figure>"}, {}, file="figures/001.png")
    shown = split(capsys.readouterr().out)[0][1]
    assert shown["dropped"] and shown["file"] == "figures/001.png" and list(shown["data"]) == ["text/plain"]
    assert shown["data"]["text/plain"].startswith("<Figure> [too big to show here: ")
    monkeypatch.setattr(cell_runner, "HERE", str(tmp_path))
    (tmp_path / "sweep.pkl").write_bytes(b"")
    cell_runner.show({"image/png": b"x", "text/plain": "<Figure>"}, {}, file="figures/001.png")
    shown = split(capsys.readouterr().out)[0][1]
    assert shown["data"] == {"text/plain": "<Figure>"} and shown["file"] == "figures/001.png"


def marker(shown):
    return MARK + json.dumps(shown) + END


def test_markers_cut_anywhere_come_out_whole_and_in_place():
    one = {"data": {"text/plain": "1"}, "metadata": {}, "file": "figures/001.png"}
    output = f"a\nb{PARTIAL}c\n{marker(one)}d\n{marker(one)}{marker(one)}e"
    for chunk in (1, 2, 5, 13, len(output)):
        got = split(output, chunk)
        joined = []
        for kind, value in got:  # text pieces may come in any cuts
            if kind == "text" and joined and joined[-1][0] == "text":
                joined[-1] = ("text", joined[-1][1] + value)
            else:
                joined.append((kind, value))
        assert joined == [("text", "a\nbc\n"), ("shown", one), ("text", "d\n"), ("shown", one),
                          ("shown", one), ("text", "e")], chunk


def test_a_marker_that_never_ends_is_let_go_as_text():
    got = split(MARK + "x" * (cell_runner.SHOW_LIMIT + 20000), chunk=1 << 20)
    assert got[0][0] == "shown" and got[0][1]["data"]["text/plain"].startswith(MARK + "xxx")


def test_the_saved_output_and_a_terminal_name_the_figure(tmp_path, capsys):
    fig = {"data": {"image/png": "AAAA", "text/plain": "<Figure>"}, "metadata": {}, "file": "figures/001.png"}
    table = {"data": {"text/html": "<table/>", "text/plain": "   a\n0  1"}, "metadata": {}, "file": None}
    log = tmp_path / "output.log"
    log.write_text(f"one\n{marker(fig)}two{PARTIAL}\n{marker(table)}", encoding="utf-8")
    live.unmark_file(log)
    assert log.read_text(encoding="utf-8") == "one\n[figure figures/001.png]\ntwo\n   a\n0  1\n"
    live.Unmarked(sys.stdout.write)(f"x\n{marker(fig)}y\n")  # no IPython here: a line names it
    assert capsys.readouterr().out == "x\n[figure figures/001.png]\ny\n"


def test_in_ipython_a_marker_is_a_display_data_output(monkeypatch):
    shown = []
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()
    display_module = types.ModuleType("IPython.display")
    display_module.display = lambda *objs, **kw: shown.append((objs, kw))
    display_module.update_display = lambda obj, **kw: shown.append(("update", obj, kw))
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    live_display.show({"data": {"image/png": "AAAA"}, "metadata": {"image/png": {"width": 1}}, "file": None})
    assert shown.pop() == (({"image/png": "AAAA"},), {"metadata": {"image/png": {"width": 1}}, "raw": True})
    live_display.show({"data": {"text/plain": "1"}, "display_id": "ab", "update": False})
    assert shown.pop() == (({"text/plain": "1"},), {"metadata": {}, "raw": True, "display_id": "ab"})
    live_display.show({"data": {"text/plain": "2"}, "display_id": "ab", "update": True})
    assert shown.pop() == ("update", {"text/plain": "2"}, {"metadata": {}, "raw": True, "display_id": "ab"})


def test_a_display_handle_in_the_image_updates_its_output(tmp_path):
    out = run_cell(tmp_path, """
handle = display("epoch 1", display_id=True)
handle.update("epoch 2")
from IPython.display import update_display
update_display("epoch 3", display_id=handle.display_id)
print(display(1))
""")
    shown = [s for kind, s in split(out) if kind == "shown"]
    assert [s["data"]["text/plain"] for s in shown] == ["'epoch 1'", "'epoch 2'", "'epoch 3'", "1"]
    assert [s["update"] for s in shown] == [False, True, True, False]
    assert len({s["display_id"] for s in shown[:3]}) == 1 and shown[0]["display_id"]
    assert not shown[3]["display_id"]
    assert split(out)[-1] == ("text", "None\n")


def test_a_sweep_shows_the_first_figure_of_each_task_with_its_parameters(tmp_path, capsys):
    tasks = []
    for index, lr in enumerate([0.1, 0.01, 0.001]):
        folder = tmp_path / str(index)
        if index != 1:  # task 1 made no figure
            (folder / "figures").mkdir(parents=True)
            (folder / "figures" / "002.png").write_bytes(b"second")
            (folder / "figures" / "001.png").write_bytes(PNG)
        tasks.append(Task(index, {"lr": lr}, local_path=str(folder)))
    figures = live_display.first_figures(tasks)
    assert [(t.index, p.name) for t, p in figures] == [(0, "001.png"), (2, "001.png")]
    grid = live_display.Grid(figures, lambda task: f"lr={task.params['lr']}")
    page = grid._repr_html_()
    assert page.count("<img") == 2 and "task 2: lr=0.001" in page and base64.b64encode(PNG).decode() in page
    job = types.SimpleNamespace(tasks=tasks)
    job_view.Display(progress.steps_for(quiet=False)).end(job)  # a terminal: their paths
    out = capsys.readouterr().out
    assert "figures (the first of each task):" in out
    assert f"task 0 [lr=0.1]: {tmp_path}/0/figures/001.png" in out


def test_the_notebooks_figure_formats_go_to_the_image_only_when_more_than_png(monkeypatch):
    fake = types.ModuleType("IPython")
    config = {}
    fake.get_ipython = lambda: types.SimpleNamespace(config=config)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert figures.asked() == []
    config["InlineBackend"] = {"figure_formats": {"png", "retina"}}
    assert figures.asked() == []
    config["InlineBackend"] = {"figure_formats": {"png", "svg", "jpg"}}
    (feature,) = figures.asked()
    run = types.SimpleNamespace(env={})
    feature.check(run)
    assert run.env == {"PYSTRIBUTED_FIGURE_FORMATS": "jpeg,png,svg"}


def test_a_last_value_that_cannot_come_back_shows_its_rich_repr(tmp_path, capsys):
    class Table:
        def __init__(self):
            self.unpicklable = lambda: None

        def _repr_html_(self):
            return "<table/>"

    cell_runner.save_values(str(tmp_path), {}, [], Table())
    (kind, shown), = split(capsys.readouterr().out)
    assert kind == "shown" and shown["data"]["text/html"] == "<table/>"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["value"]["pickled"] is False and report["value"]["type"] == "Table"
    cell_runner.save_values(str(tmp_path), {}, [], lambda: None)  # nothing richer than its repr: not shown
    assert capsys.readouterr().out == ""


def test_raw_output_through_redraws_names_the_figure_as_a_sweeps_task_logs_do(capsys):
    fig = {"data": {"text/plain": "<Figure>"}, "file": "figures/001.png", "dropped": True}
    out = live.Redraws("stdout")
    text = f"a\n{marker(fig)}b{PARTIAL}c\n"
    out.write(text[:5])
    out.write(text[5:])
    out.close()
    assert capsys.readouterr().out == "a\n[figure figures/001.png]\nbc\n"
