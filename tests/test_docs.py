"""The documentation as a reader opens it on the forge: every relative link and #anchor in README.md and
docs/*.md resolves, and docs/configuration.md's reference is what scripts/config_reference.py prints
from pystributed/config.py now, with every key in it and in config.py.example. No network: http links
are not fetched."""
import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

from pystributed import config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose(text):
    """The page without its code blocks, and its inline code as a word (a link's text may hold some)."""
    return INLINE_CODE.sub("code", FENCE.sub("", text))


def slug(heading):
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces made '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path):
    seen = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(path):
    return [target for _, target in LINK.findall(prose(path.read_text(encoding="utf-8")))]


def test_the_pages_are_there():
    names = {page.name for page in PAGES}
    assert {"README.md", "configuration.md", "gpu-servers.md", "clusters.md", "slurm.md",
            "faults-and-safety.md", "how-it-works.md", "performance.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    dead = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:: not fetched
            continue
        file, _, anchor = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        if not where.exists():
            dead.append(f"{target}: no {where.relative_to(ROOT) if ROOT in where.parents else where}")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            dead.append(f"{target}: no heading #{anchor} in {where.relative_to(ROOT)}")
    assert not dead, f"{page.name}: " + "; ".join(dead)


def test_the_link_checker_itself():
    assert slug("Faults, what you see, what is kept") == "faults-what-you-see-what-is-kept"
    assert slug("A laptop of another architecture (Apple Silicon)") == \
        "a-laptop-of-another-architecture-apple-silicon"
    assert slug("`%%remote` and `runner.main()`") == "remote-and-runnermain"
    text = "[a](x.md#y) `[not](a-link)` ![img](docs/p.png)\n```\n[nor](this)\n```\n[b](https://e.org)"
    assert [target for _, target in LINK.findall(prose(text))] == ["x.md#y", "docs/p.png", "https://e.org"]


def test_the_readme_gives_the_test_command_that_ci_runs():
    """.ci/run runs 'the test command from README.md'."""
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 350


def reference_script():
    path = ROOT / "scripts" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_current():
    script = reference_script()
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert script.BEGIN in page and script.END in page
    table = page.split(script.BEGIN, 1)[1].split(script.END, 1)[0].strip("\n")
    assert table == script.reference().strip("\n"), (
        "docs/configuration.md's reference differs from pystributed/config.py's definitions: run "
        "python3 scripts/config_reference.py --write")


def test_every_key_is_in_the_reference_and_in_config_py_example():
    keys = [field.name for field in dataclasses.fields(config.Config)]
    assert set(config.HELP) == set(keys)
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = (ROOT / "config.py.example").read_text(encoding="utf-8")
    assert [key for key in keys if f"| `{key}` |" not in page] == []
    assert [key for key in keys if not re.search(rf"^(# )?{key} = ", example, re.MULTILINE)] == []


def test_one_recommended_pytorch_image_everywhere():
    """config.py.example, README, docs/ and the demo notebook name config.RECOMMENDED_GPU_IMAGE, and no
    other pytorch/pytorch tag."""
    named = {}
    for path in [ROOT / "config.py.example", ROOT / "examples" / "demo" / "demo.ipynb", *PAGES]:
        for tag in re.findall(r"pytorch/pytorch:[\w.-]+", path.read_text(encoding="utf-8")):
            named.setdefault(tag, []).append(path.relative_to(ROOT).as_posix())
    assert list(named) == [config.RECOMMENDED_GPU_IMAGE], named
    assert "config.py.example" in named[config.RECOMMENDED_GPU_IMAGE]
    assert "README.md" in named[config.RECOMMENDED_GPU_IMAGE]
