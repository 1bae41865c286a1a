"""Big data synced once and mounted, auto requirements, warnings before the build: on the sandbox."""
import hashlib
import os
import re
import subprocess
import sys
import uuid

import pytest
from wheels import make_wheel

from pystributed import config, features, pipeline
from pystributed.errors import StepError
from pystributed.features import data

MB = 1_000_000


def run(cfg):
    return pipeline.run(cfg, features=features.for_run(cfg))


@pytest.fixture
def workdir(sandbox, monkeypatch):
    """A REMOTE_WORKDIR of this test's own, removed afterwards."""
    name = f"pystributed-data-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", name)
    yield name
    sandbox.remote_shell(f"rm -rf {name} {name}-shared")


def make_data(folder, files=20, size=10 * MB):
    """`files` files of `size` bytes (200 MB): a random start each, so no two are alike, then a
    hole, so that making them is quick."""
    folder.mkdir()
    for i in range(files):
        with open(folder / f"part-{i:02}.bin", "wb") as f:
            f.write(os.urandom(4096))
            f.truncate(size)


def moved_mb(out):
    line = next(line for line in out.splitlines() if line.startswith("data "))
    if "up to date" in line:
        return 0.0
    amount, unit = re.search(r"\(([\d.]+) (B|KB|MB|GB) moved", line).groups()
    return float(amount) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[unit]


def remote_bytes(sandbox, workdir):
    """What the data cache holds on the server (hard links counted once)."""
    return int(sandbox.remote_shell(f"du -sb {workdir}/.data").split()[0])


CELL = """\
import hashlib, os
print('sha', hashlib.sha256(open('data/part-07.bin', 'rb').read()).hexdigest())
print('files', len(os.listdir('data')))
try:
    open('data/new.txt', 'w')
except OSError as e:
    print('cannot write, errno', e.errno)
mounts = [line.split() for line in open('/proc/self/mountinfo')]
print('mounted', [m[5].split(',')[0] for m in mounts if m[4] == '/app/data'])
"""


@pytest.mark.parametrize("transfer", ["rsync", "ours"])
def test_data_is_synced_once_and_a_change_moves_only_that_file(sandbox, workdir, tmp_path, monkeypatch,
                                                               capsys,
                                                               transfer):
    monkeypatch.setattr(data, "RSYNC", transfer == "rsync")
    make_data(tmp_path / "data")
    (tmp_path / "user_code.py").write_text(CELL)
    cfg = config.load(DATA=["data/"])

    first = run(cfg)
    out = capsys.readouterr().out
    assert moved_mb(out) >= 200 and remote_bytes(sandbox, workdir) >= 200 * MB
    local_sha = hashlib.sha256((tmp_path / "data" / "part-07.bin").read_bytes()).hexdigest()
    assert f"sha {local_sha}\nfiles 20\ncannot write, errno 30\nmounted ['ro']\n" in out

    again = run(cfg)
    assert moved_mb(capsys.readouterr().out) == 0  # nothing changed: nothing moved

    before = remote_bytes(sandbox, workdir)
    (tmp_path / "data" / "part-07.bin").write_bytes(os.urandom(10 * MB))
    logins = sandbox.counting_logins(monkeypatch)
    changed = run(config.load(DATA=["data/"]))
    assert logins() == 1  # rsync too goes over the run's one connection
    out = capsys.readouterr().out
    assert 10 <= moved_mb(out) <= 10.6, out
    assert 10 * MB <= remote_bytes(sandbox, workdir) - before <= 10.2 * MB
    new_sha = hashlib.sha256((tmp_path / "data" / "part-07.bin").read_bytes()).hexdigest()
    assert f"sha {new_sha}\n" in out
    # The data is not in the image: the same image served all three runs.
    assert first.image == again.image == changed.image


def test_remote_data_is_mounted_read_only_and_a_missing_one_is_refused(sandbox, workdir, tmp_path):
    shared = sandbox.remote_shell(f"mkdir -p '{workdir}-shared/set a' && echo server-side > "
                                  f"'{workdir}-shared/set a/x.txt' && cd {workdir}-shared && pwd").strip()
    (tmp_path / "user_code.py").write_text("print(open('imagenet/set a/x.txt').read().strip())\n"
                                           "print(open('/opt/x.txt').read().strip())\n")
    result = run(config.load(REMOTE_DATA={shared: "imagenet", f"{shared}/set a/x.txt": "/opt/x.txt"}))
    assert (tmp_path / "results" / result.run_id / "output.log").read_text() == "server-side\nserver-side\n"
    with pytest.raises(StepError, match=f"data failed: REMOTE_DATA names {shared}/nothing, which "
                                        "does not exist"):
        run(config.load(REMOTE_DATA={f"{shared}/nothing": "x"}))
    # The failed run (it never started) leaves no folder that `list` and `clean` would take for one starting.
    assert sandbox.remote_shell(f"ls {workdir}").split() == [result.run_id]


def pystributed_run():
    return subprocess.run([sys.executable, "-m", "pystributed", "run"], capture_output=True, text=True,
                          check=False, timeout=600)


def test_auto_requirements_pin_the_version_installed_here(sandbox, workdir, tmp_path, monkeypatch):
    # Installed here from a wheel made here (the container has no network: the wheel is shipped).
    wheels = tmp_path.parent / f"{tmp_path.name}-wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, name="pystributed_auto_dep", version="2.5.1")
    site = tmp_path.parent / f"{tmp_path.name}-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("PYSTRIBUTED_REQUIREMENTS", "auto")
    (tmp_path / "user_code.py").write_text(
        "import importlib.metadata, json\nimport pystributed_auto_dep\n"
        "print('dep', pystributed_auto_dep.VERSION, importlib.metadata.version('pystributed_auto_dep'))\n")
    proc = pystributed_run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dep 2.5.1 2.5.1\n" in proc.stdout


def test_warnings_before_the_build_for_files_left_out_and_a_large_context(sandbox, workdir, tmp_path,
                                                                          monkeypatch):
    (tmp_path / ".dockerignore").write_text("*.pth\n")
    (tmp_path / "my_model.pth").write_bytes(b"weights")
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * MB))
    (tmp_path / "user_code.py").write_text(
        "try:\n    open('my_model.pth', 'rb')\nexcept FileNotFoundError:\n    print('no my_model.pth')\n"
        "try:\n    open('missing.csv')\nexcept FileNotFoundError:\n    print('no missing.csv')\n")
    monkeypatch.setenv("PYSTRIBUTED_CONTEXT_WARN_MB", "1")
    proc = subprocess.run([sys.executable, "-m", "pystributed", "run"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out
    assert out.index("warning: the cell opens 'my_model.pth', which is left "
                     "out of the image") < out.index("\nbuild")
    assert "warning: the cell opens 'missing.csv', which does not exist in the notebook's folder" in out
    assert ("warning: the build context is 3.0 MB (over CONTEXT_WARN_MB = 1), sent to the image builder on "
            "every change; the largest files: big.bin (3.0 MB), ") in out
    assert out.index("warning: the build context") < out.index("\nbuild")
    assert "no my_model.pth\nno missing.csv\n" in out  # it ran, as warned


def test_on_the_local_engine_data_is_mounted_where_it_is(sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "local")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", "")
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", str(tmp_path / "server side"))
    make_data(tmp_path / "data", files=20, size=MB)
    (tmp_path / "user_code.py").write_text(CELL)
    run(config.load(DATA=["data/"]))
    out = capsys.readouterr().out
    local_sha = hashlib.sha256((tmp_path / "data" / "part-07.bin").read_bytes()).hexdigest()
    assert "(mounted from here)" in out
    assert f"sha {local_sha}\nfiles 20\ncannot write, errno 30\nmounted ['ro']\n" in out
    assert not (tmp_path / "server side" / ".data").exists()
