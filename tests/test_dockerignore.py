""".dockerignore as Docker reads and matches it (pystributed/dockerignore.py, a port of
moby/patternmatcher and of BuildKit's walk); tests/e2e/test_dockerignore_e2e.py checks the same
rules against `docker build` itself."""
import pytest

from pystributed import context, dockerignore
from pystributed.errors import PystributedError


@pytest.mark.parametrize(("pattern", "path", "excluded"), [
    # [...] classes: what fnmatch-like hand matching missed
    ("file[0-9].txt", "file1.txt", True),
    ("file[0-9].txt", "file10.txt", False),
    ("file[0-9].txt", "fileA.txt", False),
    ("file[^0-9].txt", "fileA.txt", True),
    ("file[^0-9].txt", "file1.txt", False),
    ("file[a-c0-2].txt", "file2.txt", True),
    ("file[[:digit:]].txt", "file7.txt", True),
    ("file[[:digit:]].txt", "file:.txt", False),
    ("**/temp[0-9]", "a/b/temp3", True),
    ("**/temp[0-9]", "temp3", True),
    ("**/temp[0-9]", "a/temp33", False),
    ("**/temp[0-9]", "a/temp3/inside.txt", True),  # a folder's match covers what is in it
    # * and ? never cross a /
    ("*.log", "a.log", True),
    ("*.log", "sub/a.log", False),
    ("*/*.log", "sub/a.log", True),
    ("data/*", "data/a", True),
    ("data/?", "data/a", True),
    ("data/?", "data/ab", False),
    ("?", "a/b", True),  # through its folder a
    # ** spans folders
    ("**/*.log", "a.log", True),
    ("**/*.log", "sub/deep/a.log", True),
    ("**/temp", "mytemp", False),
    ("**/temp", "x/temp", True),
    ("deep/**/c.txt", "deep/c.txt", True),
    ("deep/**/c.txt", "deep/a/b/c.txt", True),
    ("deep/**", "deep", False),
    ("deep/**", "deep/x", True),
    ("a**g", "ab/g", True),  # ** glued to text: "(.*/)?" between, as Docker compiles it
    ("a**g", "abg", False),
    ("**", "anything/at/all", True),
    # escapes, and regular-expression characters that are plain here
    ("temp\\?", "temp?", True),
    ("temp\\?", "temp1", False),
    ("file\\[1\\].txt", "file[1].txt", True),
    ("a+b(c).{x}$", "a+b(c).{x}$", True),
    ("a.b", "axb", False),
    # leading / and trailing / go; the pattern is cleaned
    ("/a.log", "a.log", True),
    ("/a.log", "sub/a.log", False),
    ("build/", "build", True),
    ("build", "build/x/y.o", True),
    ("build/", "build/x/y.o", True),
    ("sub/../a.log", "a.log", True),
    ("./b.py", "b.py", True),
])
def test_a_pattern_matches_as_in_docker(tmp_path, pattern, path, excluded):
    (tmp_path / ".dockerignore").write_text(pattern + "\n")
    assert context.Matcher(context.read_dockerignore(tmp_path / ".dockerignore"))(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["data", "!data/keep.csv"], "data/keep.csv", False),
    (["data", "!data/keep.csv"], "data/big.bin", True),
    (["*", "!b.py"], "b.py", False),
    (["sub", "!sub/f.txt", "sub/f.txt"], "sub/f.txt", True),  # the last that matches decides
    (["!x", "x"], "x", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
])
def test_the_last_matching_pattern_wins(patterns, path, excluded):
    assert context.Matcher(patterns)(path) is excluded


def test_a_dockerignore_is_read_as_docker_reads_it(tmp_path):
    (tmp_path / ".dockerignore").write_bytes(
        b"\xef\xbb\xbf# a comment\r\n #not-a-comment\n\n   spaced.txt   \n! "
        b"/abs/../x\n/top\nbuild/\n!\tkeep \n")
    assert context.read_dockerignore(tmp_path / ".dockerignore") == [
        "#not-a-comment", "spaced.txt", "!x", "top", "build", "!keep"]
    assert context.read_dockerignore(tmp_path / "missing") == []


@pytest.mark.parametrize("pattern", ["file[0-9", "[]a]", "x[a-]", "x[-a]", "a\\", "[", "!"])
def test_a_pattern_docker_refuses_is_refused(pattern):
    with pytest.raises(PystributedError, match="Docker refuses it too"):
        context.Matcher([pattern])


def walked(tmp_path, names, ignore):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text(ignore)
    names = [name for _, name in context.context_files(tmp_path)]
    assert len(names) == len(set(names))  # each once
    return sorted(names)


def test_a_left_out_folder_is_entered_for_an_exception_inside_it(tmp_path):
    names = ["data/keep.csv", "data/big.bin", "data/sub/keep.csv", "other/keep.csv"]
    assert walked(tmp_path, names, "data\n!data/keep.csv\n") == [
        "data", "data/keep.csv", "other", "other/keep.csv"]  # the folder too, where its file goes


def test_an_exception_with_a_wildcard_reaches_into_every_left_out_folder_as_in_buildkit(tmp_path):
    # Docker's legacy builder would leave data/ out whole here (see the e2e test).
    names = ["data/keep.csv", "data/big.bin", "data/sub/keep.csv", "b.py"]
    assert walked(tmp_path, names, "data\n!**/keep.csv\n") == [
        "b.py", "data", "data/keep.csv", "data/sub", "data/sub/keep.csv"]


def test_a_left_out_folder_without_an_exception_for_it_is_not_entered(tmp_path, monkeypatch):
    names = ["data/a/x", "data/b", "keep/x"]
    entered = []
    match = dockerignore.Matcher.match

    def spy(self, path, above=None):
        entered.append(path)
        return match(self, path, above)

    monkeypatch.setattr(dockerignore.Matcher, "match", spy)
    assert walked(tmp_path, names, "data\n!keep/x\n") == ["keep", "keep/x"]
    assert not any(path.startswith("data/") for path in entered)


def test_entries_inherit_their_folders_match_as_docker_walks(tmp_path):
    # "!sub" is skipped for sub itself (not left out yet there): its files do not inherit a match
    # of it, and "sub/*" then leaves them out, as in Docker.
    assert walked(tmp_path, ["sub/f.txt", "sub/g.txt"], "!sub\nsub/*\n!sub/g.txt\n") == ["sub", "sub/g.txt"]


def test_the_clean_of_go():
    assert [dockerignore.clean(p) for p in ["a//b/../c/", "/../x", "../../a", "", "./", "/"]] == [
        "a/c", "/x", "../../a", ".", ".", "/"]
