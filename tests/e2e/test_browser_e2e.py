"""The notebook as a person sees it: a real JupyterLab, and Jupyter Notebook 7, in Debian's headless
Chromium, driven through the page itself (typing, Shift+Enter, the toolbar, the Kernel menu) against
the sandbox. The tests read the page's text and structure, never its pixels, and save a screenshot
of the window at each moment that matters into pytest's temporary folder (`screenshots0/`, printed
at the end; `--basetemp DIR` keeps it in DIR); with PYSTRIBUTED_SCREENSHOTS set to a folder, the
four for docs/features.md (two also in README) are written there, cropped to their cells and small:

    PYSTRIBUTED_SCREENSHOTS=docs/ python3 -m pytest -q tests/e2e/test_browser_e2e.py
"""
import json
import os
import re
import time
from pathlib import Path

import pytest
from browser import JupyterServer, Page, missing, notebook_file, save_png, start_chromium
from conftest import ROOT, unavailable
from wheels import require_tqdm

# Read at import, while the working directory is still the caller's (each test runs in its own).
DOCS = (Path(os.environ["PYSTRIBUTED_SCREENSHOTS"]).resolve()
        if os.environ.get("PYSTRIBUTED_SCREENSHOTS") else None)
DOCS_WIDTH = 900
# What the tests saw that no single test decides alone (see test_a_tqdm_bar_updates_while_the_cell_runs).
SEEN = {}

# Prints a line a second, then a real tqdm bar (shipped as a wheel: the container has no network).
# A loop on one line: the editor indents by itself and never dedents (see Page.run).
LIVE_CELL = ("%%save_for_remote\n"
             "import time\n"
             "from tqdm import tqdm\n"
             "for i in range(5): print('line', i); time.sleep(1)\n"
             "for i in tqdm(range(40), mininterval=0.1): time.sleep(0.1)\n"
             "print('done')")
ERROR_CELL = ("%%remote\n"
              "def check(x): raise ValueError(f'x must be positive, not {x}')\n"
              "check(-1)")
SLEEP_CELL = ("%%remote\n"
              "import time\n"
              "print('started')\n"
              "time.sleep(60)")
# The demo notebook's last cells (examples/demo/demo.ipynb), and a file written into the results.
MOST_COMMON = ("def most_common(words, n):\n"
               "    return sorted(set(words), key=lambda w: (-words.count(w), w))[:n]")
OUT_CELL = ("%%remote --out top\n"
            "import os\n"
            "words = open('data/words.txt').read().split()\n"
            "top = most_common(words, 3)\n"
            "path = os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'top.txt')\n"
            "with open(path, 'w') as f: f.write(' '.join(top))")
ANSI = re.compile(r"\x1b\[|\[[0-9;]+m")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, sandbox_env):
    """A notebook's folder as a user has it: the demo's data, and tqdm as a requirement."""
    reason = missing()
    if reason:
        unavailable(reason)
    path = tmp_path_factory.mktemp("notebooks")
    (path / "data").mkdir()
    (path / "data" / "words.txt").write_text((ROOT / "examples" / "demo" / "data" / "words.txt").read_text())
    require_tqdm(path)
    intro = ("# pystributed in the browser\n\nThe marked cell runs on the server inside a Docker image built "
             "from this folder; its output streams back here.")
    notebook_file(path / "lab.ipynb", [intro])
    notebook_file(path / "notebook7.ipynb", [intro])
    return path


@pytest.fixture(scope="module")
def server(folder, sandbox_env, tmp_path_factory):
    """The sandbox's settings are in the server's environment, so in its kernels', and no other
    PYSTRIBUTED_ variable (PYSTRIBUTED_SCREENSHOTS is no setting of pystributed's)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYSTRIBUTED_")}
    jupyter = JupyterServer(folder, tmp_path_factory.mktemp("jupyter"), {**env, **sandbox_env})
    yield jupyter
    jupyter.stop()


@pytest.fixture(scope="module")
def driver(server, tmp_path_factory):
    chromium = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    shots = Screenshots(tmp_path_factory.mktemp("screenshots"))
    yield shots
    print(f"\nscreenshots in {shots.folder}" + (f" and {DOCS}" if DOCS else ""))


class Screenshots:
    def __init__(self, folder):
        self.folder = folder

    def take(self, page, name, cells=None, docs=None, block="end"):
        """The whole window into our folder, scrolled to the cells; with `docs` (a file name) and
        PYSTRIBUTED_SCREENSHOTS set, also these cells alone, small, into that folder."""
        page.mouse_away()
        if cells:
            page.scroll_to(cells[-1] if block == "end" else cells[0], block)
        png = page.driver.get_screenshot_as_png()
        save_png(png, self.folder / f"{name}.png")
        if docs and DOCS:
            save_png(png, DOCS / docs, width=DOCS_WIDTH, crop_to=page.box(cells) if cells else None)


@pytest.fixture(scope="module")
def lab(driver, server):
    page = Page(driver, server.url("lab/tree/lab.ipynb"))
    # Fold the file browser away: the notebook gets the window's width, as in the screenshots.
    page.wait(lambda: page.by_css(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"), 10, "the left "
                                                                                                "sidebar")
    page.by_css(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")[0].click()
    start_kernel(page)
    return page


def start_kernel(page):
    index = page.run("import pystributed.main as runner")
    outputs = page.wait_done(index, 60)["outputs"]
    assert outputs == [], outputs


def run_id_on(page, index):
    """The run's id, as its step display shows it ("run 20260101-120000-abcdef on HOST")."""
    return re.search(r"run (\d{8}-\d{6}-[0-9a-f]+) on", page.text(index)).group(1)


def test_the_step_display_updates_in_place_and_lines_arrive_live_in_jupyterlab(lab, shots):
    check_live_run(lab, shots, "lab")


def check_live_run(page, shots, app):
    saved = page.run(LIVE_CELL)
    assert "Saved the cell (5 lines) to user_code.py" in page.wait_done(saved, 30)["outputs"][0]["text"]
    main = page.run("result = runner.main()")
    reads, shot_taken = [], False
    while True:  # read the page as the run goes, a few times a second
        read = page.read(main)
        read["at"] = time.monotonic()
        reads.append(read)
        if not page.running(main) and re.search(r"\[\d+\]", read["prompt"]):
            break
        lines = [line for o in read["outputs"] if o["mime"].endswith("stdout")
                 for line in o["text"].splitlines()]
        if not shot_taken and len(lines) >= 3:
            shots.take(page, f"{app}-1-steps-mid-run", cells=[saved, main],
                       docs="steps-mid-run.png" if app == "lab" else None)
            shot_taken = True
        assert time.monotonic() - reads[0]["at"] < 180, "the run took over 3 minutes"
        time.sleep(0.25)
    shots.take(page, f"{app}-2-live-run-ended", cells=[saved, main])
    running = [r for r in reads if "*" in r["prompt"]]
    final = reads[-1]["outputs"]

    # The step display: one output, the first, that stays the same element while its table changes.
    with_table = [[o for o in r["outputs"] if o["tables"]] for r in reads]
    assert all(len(tables) <= 1 for tables in with_table), "a second step display appeared"
    shown = [tables[0] for tables in with_table if tables]
    assert len({t["seen"] for t in shown}) == 1, "the step display was replaced by a new output, not updated"
    assert len({t["text"] for t in shown}) >= 5, "the step display did not update (its clock, its steps)"
    assert len({t["left"] for t in shown}) == 1, "the steps moved sideways as the display updated"
    assert final[0]["tables"] == 1 and final[0]["mime"] == "text/html"
    for step in ("connect", "build", "push", "pull", "run", "fetch"):
        assert f"✔ {step}" in final[0]["text"], (step, final[0]["text"])

    # The lines arrive while the cell runs: two reads, seconds apart, both before it ended.
    def lines_in(read):
        return re.findall(r"line \d",
                          "".join(o["text"] for o in read["outputs"] if o["mime"].endswith("stdout")))

    early = next(r for r in running if lines_in(r))
    later = next(r for r in running if r["at"] - early["at"] >= 2)
    assert len(lines_in(later)) > len(lines_in(early)), (lines_in(early), lines_in(later))
    stdout = "".join(o["text"] for o in final if o["mime"].endswith("stdout"))
    assert stdout == "".join(f"line {i}\n" for i in range(5)) + "done\n"

    # The tqdm bar: never more than one line on the page, the last state at the end.
    def bar_lines(read):
        text = "".join(o["text"] for o in read["outputs"] if o["mime"].endswith("stderr"))
        return [line for line in text.splitlines() if "%|" in line]

    assert all(len(bar_lines(r)) <= 1 for r in reads), [bar_lines(r) for r in reads]
    assert len(bar_lines(reads[-1])) == 1 and "40/40" in bar_lines(reads[-1])[0], bar_lines(reads[-1])
    SEEN[f"{app} bar while running"] = [bar_lines(r)[0] for r in running if bar_lines(r)]

    # Text, not markup or escape codes.
    for o in final:
        assert not ANSI.search(o["text"]) and "<td" not in o["text"] and "\r" not in o["text"], o


def test_a_tqdm_bar_updates_while_the_cell_runs():
    bar_states = SEEN.get("lab bar while running", [])
    assert len(set(bar_states)) >= 2, f"while the cell ran, the page showed these bar states: {bar_states}"


def test_a_remote_error_shows_the_remote_traceback_with_the_cells_line_numbers(lab, shots):
    index = lab.run(ERROR_CELL)
    outputs = lab.wait_done(index, 120)["outputs"]
    shots.take(lab, "lab-3-remote-error", cells=[index], docs="remote-error.png")
    error = outputs[-1]["text"]
    assert outputs[-1]["mime"] == "application/vnd.jupyter.stderr"
    assert "RemoteValueError: ValueError: x must be positive, not -1\n(run " in error, error
    # The cell's own line numbers: its first line below the magic is line 1.
    assert 'File "user_code.py", line 2, in <module>\n' in error, error
    assert 'File "user_code.py", line 1, in check\n' in error, error
    assert not ANSI.search(error), error


def test_the_interrupt_button_stops_the_run_and_its_container(lab, shots, folder, sandbox):
    check_interrupt(lab, shots, folder, sandbox, "lab",
                    lambda: lab.click_toolbar("notebook:interrupt-kernel"))


def check_interrupt(page, shots, folder, sandbox, app, interrupt):
    index = page.run(SLEEP_CELL)
    page.wait(lambda: "started" in page.text(index, "application/vnd.jupyter.stdout"), 120, "the cell to "
                                                                                            "start")
    run_id = run_id_on(page, index)
    interrupt()
    outputs = page.wait_done(index, 60)["outputs"]
    shots.take(page, f"{app}-4-interrupted", cells=[index], block="start")
    assert "KeyboardInterrupt" in outputs[-1]["text"]
    assert "■ run" in outputs[0]["text"], outputs[0]["text"]
    record = json.loads((folder / "results" / ".runs" / f"{run_id}.json").read_text())
    assert record["status"] == "interrupted", record
    assert sandbox.docker("remote", "ps", "-aq", "--filter", f"label=pystributed.run={run_id}").stdout == ""


def test_remote_out_shows_the_result_table_and_its_files_open_in_jupyterlab(lab, shots, folder):
    define = lab.run(MOST_COMMON)
    lab.wait_done(define, 30)
    index = lab.run(OUT_CELL)
    outputs = lab.wait_done(index, 120)["outputs"]
    run_id = run_id_on(lab, index)
    result = outputs[-1]
    assert result["mime"] == "text/html" and result["tables"] == 1, outputs
    assert re.search(rf"run {run_id}: succeeded \(exit code 0\) in \d+\.\d+s on pystributed-sandbox",
                     result["text"])
    top_txt, log = f"results/{run_id}/top.txt", f"results/{run_id}/output.log"
    assert top_txt in result["links"] and log in result["links"], result["links"]
    read = lab.run("print(top)")
    words = (folder / "data" / "words.txt").read_text().split()
    expected = sorted(set(words), key=lambda w: (-words.count(w), w))[:3]
    assert lab.wait_done(read, 30)["outputs"][0]["text"] == f"{expected}\n"
    shots.take(lab, "lab-5-result-table", cells=[define, index, read], docs="result-table.png")

    # A file of the run opens in JupyterLab, in a tab of its own.
    link = next(a for a in lab.by_css("a", lab.cell(index)) if a.text == top_txt)
    link.click()
    lab.wait(lambda: [t for t in lab.by_css(".lm-DockPanel-tabBar "
                                            ".lm-TabBar-tabLabel") if t.text == "top.txt"],
             30, "top.txt to open in a tab")
    editor = lab.wait(lambda: [e for e in lab.by_css(".jp-FileEditor .cm-content") if e.is_displayed()], 30,
                      "the file's editor")
    assert editor[0].get_attribute("textContent") == " ".join(expected)
    shots.take(lab, "lab-6-result-file-opened")
    lab._click_label(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", "lab.ipynb")


# A training cell's usual end, in the image with matplotlib (scripts/sandbox.sh plot-image).
FIGURE_CELL = ("%%remote --image pystributed-sandbox/python-plot:bookworm\n"
               "import matplotlib.pyplot as plt\n"
               "losses = [1 / (1 + step / 10) for step in range(100)]\n"
               "plt.figure(figsize=(6, 2.5))\n"  # the cell fits in the window, for its screenshot
               "plt.plot(losses)\n"
               "plt.xlabel('step'); plt.ylabel('loss'); plt.title('training loss')\n"
               "plt.show()\n"
               "print('final loss', round(losses[-1], 3))")


def test_a_remote_figure_shows_in_jupyterlab_before_the_next_print(lab, shots):
    index = lab.run(FIGURE_CELL)
    outputs = lab.wait_done(index, 600)["outputs"]
    mimes = [o["mime"] for o in outputs]
    assert "image/png" in mimes, outputs
    figure = mimes.index("image/png")
    assert "final loss 0.092" in "".join(o["text"] for o in outputs[figure + 1:]), outputs
    images = lab.by_css(".jp-OutputArea-output[data-mime-type='image/png'] img", lab.cell(index))
    assert images and images[0].size["width"] > 100, "the figure is not drawn"
    shots.take(lab, "lab-7-remote-figure", cells=[index], docs="remote-figure.png")


@pytest.fixture(scope="module")
def notebook7(driver, server):
    page = Page(driver, server.url("notebooks/notebook7.ipynb"))
    start_kernel(page)
    return page


def test_the_step_display_updates_in_place_and_lines_arrive_live_in_notebook_7(notebook7, shots):
    check_live_run(notebook7, shots, "notebook7")


def test_interrupt_kernel_in_the_kernel_menu_stops_the_run_in_notebook_7(notebook7, shots, folder, sandbox):
    check_interrupt(notebook7, shots, folder, sandbox, "notebook7",
                    lambda: notebook7.click_menu("Kernel", "Interrupt Kernel"))
