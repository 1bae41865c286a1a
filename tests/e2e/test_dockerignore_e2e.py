""".dockerignore against Docker itself: for each row of patterns, the same folder is built by
`docker build` (a `COPY . /ctx` image, FROM scratch so that its one layer is all there is to read)
with the real .dockerignore, and the files in the image must be what our build context holds
(context.context_files, its folders included)."""
import concurrent.futures
import io
import json
import subprocess
import tarfile

import pytest

from pystributed import context
from pystributed.errors import PystributedError

FILES = ["a.log", "b.py", "file1.txt", "file2.txt", "fileA.txt", "file10.txt", "temp", "temp1/x", "mytemp/y",
         "sub/temp2/z", "sub/file3.txt", "sub/a.log", "build/out.o", "build/keep.txt", "data/keep.txt",
         "data/big.bin", "data/sub/keep.txt", "docs/README.md", "docs/secret.md", "#hash", " space", "x.md",
         "deep/a/b/c.txt", "deep/a/x.txt", "temp9"]

# (id, .dockerignore, what BuildKit keeps that Docker's legacy builder leaves out: it enters a left-out
# folder only for an exception that starts with it, BuildKit for any exception with a wildcard).
ROWS = [
    ("class", b"file[0-9].txt\n", ()),
    ("class-below", b"**/temp[0-9]\n", ()),
    ("negated-class", b"file[^0-9].txt\n", ()),
    ("posix-class", b"file[[:digit:]].txt\n", ()),
    ("star-stays-in-folder", b"*.log\n", ()),
    ("double-star", b"**/*.log\n", ()),
    ("double-star-suffix", b"**/temp\n", ()),
    ("double-star-middle", b"deep/**/c.txt\n", ()),
    ("double-star-end", b"deep/**\n", ()),
    ("double-star-glued", b"a**g\n", ()),
    ("question", b"file?.txt\n", ()),
    ("escaped", b"temp\\?\nfile1\\.txt\n", ()),
    ("leading-slash", b"/a.log\n/sub/a.log\n", ()),
    ("trailing-slash", b"build/\ntemp/\n", ()),
    ("cleaned", b"sub/../a.log\n./b.py\n", ()),
    ("comments", b"# a comment\n #hash\n", ()),
    ("bom-and-crlf", b"\xef\xbb\xbfa.log\r\nb.py\r\n", ()),
    ("spaces", b"   x.md   \n", ()),
    ("exception", b"data\n!data/keep.txt\n", ()),
    ("exception-of-a-glob", b"docs/*\n!docs/README.md\n", ()),
    ("everything-but", b"*\n!b.py\n!sub\nsub/a.log\n", ()),
    ("last-match-wins", b"sub\n!sub/file3.txt\nsub/file3.txt\n", ()),
    ("exception-folder", b"deep\n!deep/a/*\n", ()),
    ("exception-below-all", b"data/**\n!data/sub\n", ()),
    ("exception-with-wildcard", b"data\n!**/keep.txt\n",
     ("data", "data/keep.txt", "data/sub", "data/sub/keep.txt")),
]


def docker(sandbox, *args, **kwargs):
    return subprocess.run(["docker", "-H", sandbox.env["DOCKER_HOST"], *args], capture_output=True,
                          check=False,
                          **kwargs)


def layer_names(saved):
    """The names under ctx/ in the layers of a `docker save` stream."""
    names = set()
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        for layer in json.load(image.extractfile("manifest.json"))[0]["Layers"]:
            with tarfile.open(fileobj=image.extractfile(layer)) as files:
                names.update(m.name.rstrip("/")[4:] for m in files if m.name.startswith("ctx/"))
    return names


def built_by_docker(sandbox, folder, tag):
    """What `docker build` puts in the image from `folder`, or its error."""
    # Rows are built at once: without a cache, no build looks at an image another one removes.
    (folder.parent / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    build = docker(sandbox, "build", "--quiet", "--no-cache", "--file", str(folder.parent / "Dockerfile"),
                   "--tag", tag, str(folder), text=True)
    if build.returncode:
        return build.stderr
    saved = docker(sandbox, "save", tag)
    docker(sandbox, "image", "rm", tag)
    return layer_names(saved.stdout) - {".dockerignore"}  # Docker sends it; we never do


def in_our_context(folder):
    return {name for _, name in context.context_files(folder)}  # its folders too, each named


def make_folder(path, dockerignore):
    for name in FILES:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(name)
    (path / ".dockerignore").write_bytes(dockerignore)
    return path


@pytest.fixture(scope="module")
def buildkit(sandbox_env):
    """Whether `docker build` here is BuildKit (buildx) or Docker's legacy builder."""
    return subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode == 0


def test_the_context_holds_what_docker_build_holds(sandbox, tmp_path, buildkit):
    def one(row):
        name, dockerignore, _ = row
        folder = make_folder(tmp_path / name / "ctx", dockerignore)
        return built_by_docker(sandbox, folder,
                               f"pystributed-test/dockerignore:{name}"), in_our_context(folder)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = dict(zip([row[0] for row in ROWS], pool.map(one, ROWS)))
    wrong = {}
    for name, _, buildkit_only in ROWS:
        by_docker, ours = found[name]
        assert isinstance(by_docker, set), f"{name}: docker build failed: {by_docker}"
        expected = ours if buildkit else ours - set(buildkit_only)
        if by_docker != expected:
            wrong[name] = {"docker only": sorted(by_docker - expected),
                           "ours only": sorted(expected - by_docker)}
    assert not wrong, json.dumps(wrong, indent=1)


@pytest.mark.parametrize("dockerignore", [b"file[0-9\n", b"[]a]\n", b"x[a-]\n", b"a\\\n", b"!\n"])
def test_a_pattern_docker_refuses_is_refused_before_the_build(sandbox, tmp_path, dockerignore):
    folder = make_folder(tmp_path / "ctx", dockerignore)
    refused = built_by_docker(sandbox, folder, "pystributed-test/dockerignore:refused")
    assert isinstance(refused,
                      str) and ("syntax error in pattern" in refused or "illegal exclusion" in refused)
    with pytest.raises(PystributedError, match=r"\.dockerignore: .*Docker refuses it too"):
        in_our_context(folder)


def test_the_image_of_a_run_holds_what_docker_build_holds(sandbox, tmp_path):
    """Our own build context, given to `docker build -`, against the folder built by Docker."""
    folder = make_folder(tmp_path / "ctx", b"**/*.log\ndata\n!data/keep.txt\nfile[0-9].txt\n")
    (folder / "cell.py").write_text("print('hi')\n")
    by_docker = built_by_docker(sandbox, folder, "pystributed-test/dockerignore:folder")
    with (tmp_path / "context.tar").open("w+b") as tar:
        context.write(tar, context_dir=str(folder), code_path=str(folder / "cell.py"), source="print('hi')\n",
                      base_image=sandbox.env["PYSTRIBUTED_BASE_IMAGE"])
        tar.seek(0)
        tag = "pystributed-test/dockerignore:run"
        assert docker(sandbox, "build", "--quiet", "--tag", tag, "-", stdin=tar).returncode == 0
    listed = docker(sandbox, "run", "--rm", "--network", "none", "--entrypoint", "find", tag, "/app",
                    "-mindepth", "1",
                    text=True)
    docker(sandbox, "image", "rm", tag)
    assert listed.returncode == 0, listed.stderr
    in_image = {line.removeprefix("/app/") for line in listed.stdout.splitlines()}
    assert in_image == by_docker and "data/keep.txt" in in_image and "file1.txt" not in in_image
