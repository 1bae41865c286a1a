import io
import os
import tarfile
from pathlib import Path

import pytest

from pystributed import context, dockerignore


def members(tmp_path, **kwargs):
    buf = io.BytesIO()
    kwargs.setdefault("base_image", "python:3.11-slim")
    kwargs.setdefault("source", Path(kwargs["code_path"]).read_text())
    context.write(buf, context_dir=str(tmp_path), **kwargs)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def test_dockerfile_without_requirements():
    assert context.dockerfile("python:3.11-slim", "user_code.py") == (
        "FROM python:3.11-slim\n"
        "ENV PYTHONUNBUFFERED=1 PYSTRIBUTED_RESULTS=/results\n"
        "WORKDIR /app\n"
        + context.python_check("python:3.11-slim") + "\n"
        'CMD ["sh", "-c", "exec \\"$(command -v python3 || command -v python)\\" \\"$@\\"", "sh", '
        '"/pystributed/cell_runner.py", "user_code.py"]\n'
        "COPY runner/ /pystributed/\n"
        "COPY context/ /app/\n"
        "COPY cell/ /\n"
    )


def test_requirements_come_in_their_own_layer_before_the_code():
    lines = context.dockerfile("base", "sub/cell.py", "requirements.txt").splitlines()
    assert lines[3] == context.python_check("base")
    assert lines[4:] == [
        "COPY requirements/ /tmp/pystributed-requirements/",
        ('RUN cd /tmp/pystributed-requirements && "$(command -v python3 || command -v python)" -m pip '
         'install '
         "--no-cache-dir --disable-pip-version-check -r requirements.txt"),
        ('CMD ["sh", "-c", "exec \\"$(command -v python3 || command -v python)\\" \\"$@\\"", "sh", '
         '"/pystributed/cell_runner.py", "sub/cell.py"]'),
        "COPY runner/ /pystributed/",
        "COPY context/ /app/",
        "COPY cell/ /",
    ]


def test_context_holds_the_folder_and_the_cell_but_not_the_clutter(tmp_path):
    (tmp_path / "my_model.pth").write_bytes(b"weights")
    (tmp_path / "user_code.py").write_text("print(1)\n")
    for clutter in [".git/HEAD", ".ipynb_checkpoints/a.ipynb", "pkg/__pycache__/m.pyc", "results/r/out.txt",
                    "analysis.ipynb", "pkg/notes.ipynb"]:
        (tmp_path / clutter).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / clutter).write_text("x")
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    got = members(tmp_path, code_path=str(tmp_path / "user_code.py"), excludes=["results"])
    assert set(got) == {"Dockerfile", "context", "context/my_model.pth", "context/pkg", "context/pkg/m.py",
                        "cell/app/user_code.py", "runner/cell_runner.py"}
    assert got["cell/app/user_code.py"] == b"print(1)\n"


def test_a_cell_saved_outside_the_folder_is_added_by_name(tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "cell.py").write_text("print(2)\n")
    got = members(tmp_path / "ctx", code_path=str(tmp_path / "cell.py"))
    assert got["cell/app/cell.py"] == b"print(2)\n"
    assert b'"sh", "/pystributed/cell_runner.py", "cell.py"]' in got["Dockerfile"]


def test_dockerignore_is_honoured(tmp_path):
    (tmp_path / ".dockerignore").write_text("# comment\n*.log\ndata/**\n!data/keep.csv\n/secret.txt\n")
    for name in ["a.log", "b.py", "data/big.bin", "data/keep.csv", "secret.txt", "sub/secret.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "c.py").write_text("pass\n")
    got = members(tmp_path, code_path=str(tmp_path / "c.py"))
    assert {n for n in got if n.startswith("context/") and got[n] is not None} == {
        "context/b.py", "context/data/keep.csv", "context/sub/secret.txt"}


# A folder with no .dockerignore: names the defaults leave out (or nearly), where they leave them out
# and where not, and names that are awkward in any other way.
TRICKY = [".git/HEAD", ".git/refs/x", "sub/.git", "sub/.gitignore", "sub/.git2/x", "my.git/x",
          "a/b/__pycache__/m.pyc", "a/b/m.py", "__pycache__x/y", "x__pycache__", "a/__pycache__",
          "nb/.ipynb_checkpoints/c-checkpoint.ipynb", ".ipynb_checkpoints.bak", "results/r/out.txt",
          "deep/results/kept.txt", "results2/x", "resultsx", "sub/results/out", "data/x.csv",
          "data/x.csv.bak", "data/y.csv", "with space/a b.txt", " lead", "trail ", "ünïcödé/ß.py",
          ".dockerignore/inner", "sub/.dockerignore", "file[1].txt", "star*", "q?", "back\\slash", "!bang",
          "#hash", "a**b/c", "dot./x", "..dots", "日本/ファイル", "cell.py",
          "sweep.ipynb", "nb/deep/Untitled1.ipynb", "nb.ipynb.bak", "ipynb", "x.IPYNB", "odd.ipynb/inner",
          ".ipynb"]
EXCLUDES = ["results", "sub/results", "data/x.csv"]  # the results folder, deeper, and a DATA file


def tricky_folder(root):
    for name in TRICKY:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    os.close(os.open(os.fsencode(root) + b"/caf\xe9", os.O_CREAT | os.O_WRONLY))  # not UTF-8
    for link, target in [("to_pycache", "a/b/__pycache__"), ("sub/__pycache__", "../a"), ("loop", "."),
                         ("dangling", "nowhere"), ("to_results", "results"), ("data/.git", "../a")]:
        (root / link).symlink_to(target)
    return root


@pytest.mark.parametrize("excludes", [[], EXCLUDES])
def test_without_a_dockerignore_the_plain_filter_leaves_out_what_the_matcher_would(tmp_path, excludes):
    root = tricky_folder(tmp_path)
    plain, docker = context.matcher(root, excludes), context.Matcher(context.DEFAULT_EXCLUDES + excludes)
    assert isinstance(plain, context.LeftOut)
    everything = [os.path.relpath(os.path.join(d, n), root) for d, folders, files in os.walk(root)
                  for n in folders + files]
    assert len(everything) > 60
    assert [plain(rel) for rel in everything] == [docker(rel) for rel in everything]
    assert list(dockerignore.walk(root, plain)) == list(dockerignore.walk(root, docker))
    assert "sub/.gitignore" in dict(map(reversed, dockerignore.walk(root, plain)))


def test_without_a_dockerignore_the_context_is_byte_for_byte_what_the_matcher_makes(tmp_path, monkeypatch):
    # The same bytes, the same hash: images built before the plain filter are not built again.
    root = tricky_folder(tmp_path)

    def written():
        buf = io.BytesIO()
        packed = context.write(buf, context_dir=str(root), code_path=str(root / "cell.py"),
                               source="print(1)\n", base_image="python:3.12-slim", excludes=EXCLUDES)
        return buf.getvalue(), packed

    plain = written()
    monkeypatch.setattr(context, "matcher",
                        lambda _, excludes: context.Matcher(context.DEFAULT_EXCLUDES + excludes))
    assert written() == plain
    assert b"context/sub/.gitignore" in plain[0] and b"context/deep/results/kept.txt" in plain[0]


def test_the_results_folder_and_data_are_left_out_as_the_paths_they_are_not_as_patterns(tmp_path):
    # DATA must exist as named (features/data.py), so `[1]` or `*` in it are its name.
    left_out = context.matcher(tmp_path, ["data[1]", "run*"])
    assert left_out("data[1]") and left_out("data[1]/x") and left_out("run*")
    assert not left_out("data1") and not left_out("runs")


@pytest.mark.parametrize("ignore", ["", "# only a comment\n\n"])
def test_a_dockerignore_without_patterns_is_the_plain_filter_and_one_with_patterns_docker_s(tmp_path, ignore):
    (tmp_path / ".dockerignore").write_text(ignore)
    assert isinstance(context.matcher(tmp_path), context.LeftOut)
    (tmp_path / ".dockerignore").write_text(ignore + "*.log\n")
    assert isinstance(context.matcher(tmp_path), context.Matcher)


def test_a_notebook_is_left_out_unless_the_dockerignore_brings_it_back(tmp_path):
    # Jupyter re-saves the notebook as its cell is edited: in the folder's layer, each save would build.
    for name in ["sweep.ipynb", "table.ipynb", "sub/other.ipynb", "c.py"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    taken = members(tmp_path, code_path=str(tmp_path / "c.py"))
    assert not any(name.endswith(".ipynb") for name in taken)
    (tmp_path / ".dockerignore").write_text("!table.ipynb\n")  # the cell reads this one
    taken = members(tmp_path, code_path=str(tmp_path / "c.py"))
    assert {name for name in taken if name.endswith(".ipynb")} == {"context/table.ipynb"}


def test_requirements_ship_the_wheels_they_name(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    req = tmp_path / "requirements.txt"
    req.write_text("./wheels/demo-1.0-py3-none-any.whl\n--find-links=wheels  # local\nrequests==2.0\n")
    names = [name for _, name in context.requirement_files(str(req))]
    assert names == ["requirements.txt", "wheels/demo-1.0-py3-none-any.whl", "wheels"]


def test_the_hash_follows_content_not_times(tmp_path):
    import os

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "c.py").write_text("pass\n")

    def digest():
        return context.write(io.BytesIO(), context_dir=str(tmp_path), code_path=str(tmp_path / "c.py"),
                             source=(tmp_path / "c.py").read_text(), base_image="b")

    first = digest()
    os.utime(tmp_path / "a.txt", (0, 0))
    assert digest() == first
    (tmp_path / "c.py").write_text("pass  # changed\n")
    assert digest() != first


def test_the_lower_hash_leaves_out_the_cells_content_but_not_its_names(tmp_path):
    (tmp_path / "a.txt").write_text("a")

    def packed(source, runner_files=None):
        return context.write(io.BytesIO(), context_dir=str(tmp_path), code_path=str(tmp_path / "c.py"),
                             source=source, base_image="b", runner_files=runner_files)

    first = packed("pass\n", {"in.pickle": b"1"})
    changed = packed("pass  # changed\n", {"in.pickle": b"2"})
    assert changed.lower == first.lower and changed.digest != first.digest and changed.cell != first.cell
    assert packed("pass\n", {"other.pickle": b"1"}).lower != first.lower  # another file in the cell layer
    (tmp_path / "a.txt").write_text("b")
    assert packed("pass\n", {"in.pickle": b"1"}).lower != first.lower
    files = context.cell_layer("c.py", "pass\n", {"in.pickle": b"1"})
    assert files == {"app/c.py": b"pass\n", "pystributed/in.pickle": b"1"}
    assert context.cell_archive(files) == context.cell_archive(dict(files))  # the same bytes each time
