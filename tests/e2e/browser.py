"""A real Jupyter server and a real headless Chromium (Debian's `chromium` and `chromium-driver`),
driven with Selenium through the system chromedriver: nothing here downloads a browser."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Chromium as root, with no network but 127.0.0.1: no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]
WINDOW = (900, 1000)


def missing():
    """What the browser tests lack, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return (f"{path} is missing: run `scripts/sandbox.sh install --all` (Debian's chromium and "
                    "chromium-driver)")
    for module in ("selenium", "jupyterlab", "notebook"):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package {module} is missing: pip install -e '.[test]'"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """`jupyter lab` on 127.0.0.1 with a token, its settings, runtime and IPython files in `home`,
    serving `root`; the Notebook 7 pages come with it (the `notebook` package's extension)."""

    def __init__(self, root, home, env):
        self.root, self.token, self.port = Path(root), os.urandom(12).hex(), free_port()
        settings = Path(home) / "lab-settings"
        # No "get notified of Jupyter news?" toast over the notebook (and no request for it).
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**env, "JUPYTER_CONFIG_DIR": str(Path(home) / "config"),
               "JUPYTER_RUNTIME_DIR": str(Path(home) / "runtime"), "IPYTHONDIR": str(Path(home) / "ipython")}
        self.log_path = Path(home) / "jupyter.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             f"--LabApp.user_settings_dir={settings}",
             f"--LabApp.workspaces_dir={Path(home) / 'workspaces'}"],
            cwd=root, env=env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"jupyter lab did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log(self):
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_chromium(profile):
    """Headless Chromium through /usr/bin/chromedriver (Selenium Manager is never asked)."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def notebook_file(path, cells=()):
    """A notebook for the python3 kernel: `cells` (markdown sources) and then one empty code cell."""
    def cell(kind, source):
        extra = {"execution_count": None, "outputs": []} if kind == "code" else {}
        return {"cell_type": kind, "id": os.urandom(4).hex(), "metadata": {}, "source": source, **extra}

    path.write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"},
                     "language_info": {"name": "python"}},
        "cells": [*(cell("markdown", source) for source in cells), cell("code", "")]}))
    return path


def save_png(png, path, *, width=None, crop_to=None):
    """Write a screenshot; with `width` (for the docs), crop it to the box `crop_to` (left, top,
    right, bottom in CSS pixels) and make it a small palette PNG with Pillow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if width is None:
        path.write_bytes(png)
        return path
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if crop_to:
        image = image.crop(tuple(round(v) for v in crop_to))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)
    return path


def copy_tree(source, target):
    shutil.copytree(source, target, dirs_exist_ok=True)


# One round trip per read: the cell's prompt and each output's MIME type, text and tables. An
# output is marked the first time it is seen, so a later read tells whether it is the same
# element (updated in place) or a new one.
READ_CELL = """
const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[arguments[0]];
window.pystributedSeen = window.pystributedSeen || 0;
return {
  prompt: cell.querySelector('.jp-InputPrompt').textContent,
  outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => {
    if (!o.dataset.pystributedSeen) o.dataset.pystributedSeen = String(++window.pystributedSeen);
    return {mime: o.dataset.mimeType || '', text: o.textContent, seen: o.dataset.pystributedSeen,
            tables: o.querySelectorAll('table').length,
            left: o.querySelector('td') ? o.querySelector('td').getBoundingClientRect().left : null,
            links: [...o.querySelectorAll('a')].map(a => a.textContent)};
  }),
};
"""


class Page:
    """A notebook open in JupyterLab or Notebook 7, used as a person does: click the last cell,
    type, Shift+Enter; read the page's text. Cells are found anew each time (JupyterLab
    re-creates their elements while a notebook loads)."""

    def __init__(self, driver, url):
        self.driver = driver
        driver.get(url)
        self.wait(lambda: self.count() > 0, 60, "the notebook to load")

    def by_css(self, css, root=None):
        from selenium.webdriver.common.by import By

        return (root or self.driver).find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition, timeout, what):
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + timeout
        while True:
            try:
                result = condition()
            except WebDriverException:  # an element replaced meanwhile: ask again
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {what}")
            time.sleep(0.2)

    def count(self):
        return len(self.by_css(".jp-Notebook .jp-Cell"))

    def cell(self, index):
        return self.by_css(".jp-Notebook .jp-Cell")[index]

    def source(self, index):
        return "\n".join(line.get_attribute("textContent") for line in self.by_css(".cm-line",
                                                                                   self.cell(index)))

    def run(self, code):
        """Type `code` into the last cell (an empty one) and run it with Shift+Enter; its index.
        Indentation is the editor's: each line is typed without its own, so a line may be indented
        one level more than the line above it, after a ':' there, and never less."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        def click_editor():  # once the notebook has loaded, its last cell is an empty code cell
            cells = self.by_css(".jp-Notebook .jp-Cell")
            if "jp-CodeCell" not in cells[-1].get_attribute("class"):
                return None
            self.by_css(".jp-InputArea-editor", cells[-1])[0].click()
            return len(cells)

        index = self.wait(click_editor, 30, "the last cell's editor") - 1
        ActionChains(self.driver).send_keys("\n".join(line.lstrip() for line in code.split("\n"))).perform()
        typed = self.source(index)
        assert typed == code, f"the editor holds {typed!r}, not what was typed"
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait(lambda: self.count() > index + 1, 10, "a new cell below")
        return index

    def read(self, index):
        return self.driver.execute_script(READ_CELL, index)

    def text(self, index, mime=None):
        return "".join(o["text"] for o in self.read(index)["outputs"] if mime is None or o["mime"] == mime)

    def running(self, index):
        return "*" in self.read(index)["prompt"]

    def wait_done(self, index, timeout=180):
        self.wait(lambda: re.search(r"\[\d+\]", self.read(index)["prompt"]), timeout, f"cell {index} to end")
        return self.read(index)

    def scroll_to(self, index, block="end"):
        """Scroll the cell into view, its end (or start) a little away from the window's edge."""
        self.driver.execute_script("""
            const [cell, block] = arguments;
            cell.scrollIntoView({block});
            let scroller = cell.parentElement;
            while (scroller && scroller.scrollHeight <= scroller.clientHeight)
                scroller = scroller.parentElement;
            if (scroller) scroller.scrollBy(0, block === 'end' ? 24 : -24);
        """, self.cell(index), block)

    def box(self, indexes, margin=4):
        """The box around these cells, in CSS pixels of the window (for cropping a screenshot)."""
        rects = [self.cell(i).rect for i in indexes]
        return (min(r["x"] for r in rects) - margin, min(r["y"] for r in rects) - margin,
                max(r["x"] + r["width"] for r in rects) + margin,
                max(r["y"] + r["height"] for r in rects) + margin)

    def mouse_away(self):
        """The pointer to the window's corner: a table under it is highlighted (JupyterLab's hover)."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.driver)
        actions.pointer_action.move_to_location(1, 1)
        actions.perform()

    def click_menu(self, menu, item):
        """A menu of the menu bar, then one of its items, by their labels."""
        self.wait(lambda: self._click_label(".lm-MenuBar-itemLabel", menu), 10, f"the {menu} menu")
        self.wait(lambda: self._click_label(".lm-Menu-itemLabel", item), 10, f"{menu} > {item}")

    def _click_label(self, css, label):
        for element in self.by_css(css):
            if element.text.strip() == label and element.is_displayed():
                element.click()
                return True
        return False

    def click_toolbar(self, command):
        self.wait(lambda: self.by_css(f".jp-NotebookPanel-toolbar [data-command='{command}']"), 10,
                  f"the toolbar button {command}")[0].click()
