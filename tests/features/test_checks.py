import importlib.metadata

from pystributed import config, pipeline, progress
from pystributed.features import checks


def cfg(**keys):
    return config.load(environ={}, REMOTE_SERVER="local", **keys)


def test_paths_the_cell_reads_are_found():
    source = ("import torch, pandas as pd, numpy as np\nfrom pathlib import Path\n"
              "m = torch.load('my_model.pth')\ndf = pd.read_csv('data/x.csv')\nopen('notes.txt')\n"
              "open('out.txt', 'w')\nopen(mode='a', file='log.txt')\nnp.load('/abs/arr.npy')\n"
              "Path('maybe/out')\nopen(f'{x}.txt')\npd.read_csv('https://example.com/a.csv')\n"
              "Path('cfg.json').read_text()\nPath('w.txt').open('w')\nPath('r.txt').open()\n")
    assert sorted(checks.read_paths(source)) == [
        ("cfg.json", False), ("data/x.csv", False), ("maybe/out", True), ("my_model.pth", False),
        ("notes.txt", False), ("r.txt", False), ("w.txt", True)]


def test_a_missing_or_ignored_file_is_named_and_data_counts_as_there(tmp_path):
    (tmp_path / ".dockerignore").write_text("*.pth\n")
    (tmp_path / "my_model.pth").write_bytes(b"m")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1\n")
    (tmp_path / "here.txt").write_text("1\n")
    (tmp_path / "table.ipynb").write_text("{}")
    source = ("open('my_model.pth')\nopen('table.ipynb')\nopen('missing.csv')\nopen('data/x.csv')\n"
              "open('data/y.csv')\nopen('here.txt')\nPath('out/')\nopen('../up.txt')\n")
    found = list(checks.opened_files(cfg(DATA=["data/"]), source, ["data"]))
    assert found == [
        ("the cell opens 'my_model.pth', which is left out of the image (.dockerignore or the results "
         "folder): add it to DATA to have it mounted, or remove it from .dockerignore"),
        ("the cell opens 'table.ipynb', a notebook: notebooks are left out of the image (Jupyter saves them "
         "as you edit; each save would build): a line `!table.ipynb` in .dockerignore brings it back"),
        ("the cell opens 'missing.csv', which does not exist in the notebook's folder "
         "(the container starts in /app, the folder's copy)"),
        "the cell opens 'data/y.csv', which is not in DATA's data/ here",
        "the cell opens '../up.txt', outside the notebook's folder: the image has only that folder",
    ]


def test_a_file_under_a_remote_data_mount_is_not_looked_for_here(tmp_path):
    source = "open('imagenet/train.txt')\nopen('imagenet')\nopen('other.txt')\n"
    found = list(checks.opened_files(cfg(REMOTE_DATA={"/srv/imagenet": "imagenet"}), source, [], tmp_path))
    assert found == [("the cell opens 'other.txt', which does not exist in the notebook's folder "
                      "(the container starts in /app, the folder's copy)")]


def test_a_large_context_names_its_largest_files(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * 1_500_000)
    (tmp_path / "mid.bin").write_bytes(b"x" * 600_000)
    (tmp_path / "small.txt").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "huge.bin").write_bytes(b"x" * 3_000_000)
    assert checks.context_size(cfg(CONTEXT_WARN_MB=3), ["data"]) == []
    warning, = checks.context_size(cfg(CONTEXT_WARN_MB=2), ["data"])
    assert warning.startswith("the build context is 2.1 MB (over CONTEXT_WARN_MB = 2), sent to the image "
                              "builder on every change; the largest files: big.bin (1.5 MB), mid.bin (600.0 "
                              "KB), small.txt")
    assert "DATA" in warning and ".dockerignore" in warning
    assert checks.context_size(cfg(CONTEXT_WARN_MB=0), []) == []  # 0 turns the check off


def test_a_version_that_differs_from_the_pinned_one(tmp_path):
    local = importlib.metadata.version("ipython")
    (tmp_path / "requirements.txt").write_text(f"ipython==0.0.1\nipykernel=={local}\n")
    found = checks.version_differences(cfg(REQUIREMENTS="requirements.txt"), "import IPython\nimport os\n")
    assert found == [f"the cell imports IPython: ipython is {local} here but 0.0.1 in requirements.txt"]
    (tmp_path / "requirements.txt").write_text(f"ipython=={local}\n")
    assert checks.version_differences(cfg(REQUIREMENTS="requirements.txt"), "import IPython\n") == []


def test_warnings_go_to_stderr_before_anything_runs(tmp_path, capsys):
    checks.Checks().check(pipeline.Run(cfg(), None, progress.Steps(quiet=True), source="open('gone.txt')\n"))
    assert capsys.readouterr().err.startswith("warning: the cell opens 'gone.txt', which does not exist")


def test_the_check_hook_warns_of_what_the_run_leaves_out(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "model.pth").write_bytes(b"m")
    run = pipeline.Run(cfg(), None, progress.Steps(quiet=True), source="open('results/model.pth')\n",
                       excludes=["results"])  # as pipeline.check adds the results folder
    checks.Checks().check(run)
    assert capsys.readouterr().err == (
        "warning: the cell opens 'results/model.pth', which is left out of the image (.dockerignore or the "
        "results folder): add it to DATA to have it mounted, or remove it from .dockerignore\n")
