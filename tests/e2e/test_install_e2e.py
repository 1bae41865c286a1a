"""The package as README says to install it, from a clean copy of this checkout: the wheel, the sdist,
and the zip route (extract, `pip install .`), each into a fresh venv of its own, then `--help` and a
real cell on the sandbox from that venv. A file the package reads at run time and the artifact lacks
(server.sh, once) fails here, whatever the checkout has."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.usefixtures("sandbox")


def clean_copy(dest):
    """The files git tracks or would add (nothing ignored), as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(source.read_bytes())
            (dest / name).chmod(source.stat().st_mode)
    return dest


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """{route: what `pip install` is given}: the wheel and the sdist (python -m build), the folder
    extracted from pystributed.zip."""
    top = tmp_path_factory.mktemp("install")
    src = clean_copy(top / "src")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(top / "dist"),
                    str(src)],
                   check=True, capture_output=True)
    with zipfile.ZipFile(top / "pystributed.zip", "w") as archive:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(src))
    with zipfile.ZipFile(top / "pystributed.zip") as archive:
        archive.extractall(top / "extracted")
    (wheel,) = (top / "dist").glob("*.whl")
    (sdist,) = (top / "dist").glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "zip": top / "extracted"}


@pytest.mark.parametrize("route", ["wheel", "sdist", "zip"])
def test_installed_package_runs_a_cell(artifacts, route, tmp_path, sandbox):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # As README says: `pip install .` from the extracted folder, or the artifact's file.
    cwd = artifacts["zip"] if route == "zip" else tmp_path
    target = "." if route == "zip" else str(artifacts[route])
    subprocess.run([python, "-m", "pip", "install", "--quiet", target], cwd=cwd, check=True)
    env = {**os.environ, **sandbox.env}
    env.pop("PYTHONPATH", None)
    where = subprocess.run([python, "-c", "import pystributed; print(pystributed.__file__)"], cwd=tmp_path,
                           env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)) and "site-packages" in where, where
    shown = subprocess.run([python, "-m", "pystributed", "--help"], cwd=tmp_path, env=env,
                           capture_output=True,
                           text=True, check=True).stdout
    assert "run" in shown
    (tmp_path / "user_code.py").write_text(
        "import os\nopen(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), 'w').write('42')\n"
        "print('hello from the server')\n")
    proc = subprocess.run([python, "-m", "pystributed", "run"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "hello from the server" in proc.stdout
    (run,) = [p for p in Path(tmp_path, "results").iterdir() if not p.name.startswith(".")]
    assert (run / "out.txt").read_text() == "42"


def fresh_clone(dest):
    """A clone of this checkout with its work tree's edits and new files over it (what a clone of them,
    committed, has)."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    return clean_copy(dest)


def test_demo_from_a_fresh_clone_with_a_venv_inside(tmp_path, sandbox):
    """README's two commands are run where README says to stand: in the checkout, inside a venv made
    there (`python3 -m venv .venv && . .venv/bin/activate`). The venv's lib64 link broke the wheel's
    build once; the demo installs the package into that venv and runs the notebook on the sandbox."""
    clone = fresh_clone(tmp_path / "clone")
    # As a user's shell has it: nothing that points at the sandbox (the demo starts it and exports its
    # own), no checkout on PYTHONPATH, no other venv active.
    env = {name: value for name, value in os.environ.items()
           if name not in {*sandbox.env, "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSAFEPATH"}}
    readme = "python3 -m venv .venv && . .venv/bin/activate && bash scripts/demo.sh"
    proc = subprocess.run(["bash", "-c", readme], cwd=clone, env=env, capture_output=True, text=True,
                          check=False, timeout=1200)
    assert proc.returncode == 0, f"{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    assert "cp:" not in proc.stderr
    assert "Out | most common:" in proc.stdout, proc.stdout[-5000:]
    assert (clone / "examples" / "demo" / "demo.out.ipynb").is_file()
    # The package the demo ran is the venv's.
    where = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                            "import pystributed; print(pystributed.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(clone / ".venv")), where
