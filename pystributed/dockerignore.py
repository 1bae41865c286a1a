""".dockerignore, matched exactly as Docker matches it: a port of moby/patternmatcher (the patterns,
read by its ignorefile.ReadAll, and `Pattern.compile` / `match`) and of the walk of BuildKit's
fsutil (filter.go), which decides which left-out folders are still entered.

The rules, as Docker has them (which `fnmatch` and `.gitignore` do not):

- a line starting with `#` is a comment, only there (` #x` is the pattern `#x`); a UTF-8 BOM is dropped;
- a pattern is trimmed and cleaned (`filepath.Clean`: `a//b/../c/` is `a/c`; a trailing `/` goes, so
  `build/` also leaves out a file named `build`); a leading `/` goes (patterns are relative to the
  context anyway): `/x` is `x`, which matches only at the top;
- `*` and `?` never match `/`; `[...]` is a character class (`[^...]` negated, ranges, `\\` escapes);
  `\\` escapes the next character; `**` matches any number of folders (`**/x`, `a/**/b`, `a/**`);
- a pattern that matches a folder leaves out everything in it, and the last pattern that matches
  a path decides: `!pattern` brings it back;
- a left-out folder is entered only if a `!` exception might match inside it: one whose text up to
  a trailing `/*` or `/**` starts with the folder, or, when any exception has a wildcard before its
  end, every left-out folder (BuildKit; Docker's legacy builder enters only the former, so
  `data` then `!**/keep.txt` keeps data/keep.txt in BuildKit only);
- a pattern Go's `filepath.Match` refuses (`[a`, `[]`, `[a-]`, a trailing `\\`), or a lone `!`, makes
  Docker refuse the build: here too.
"""
import os
import re
from pathlib import Path

from pystributed.errors import PystributedError

# Go's unicode.IsSpace, which strings.TrimSpace trims (str.strip() also trims \x1c-\x1f).
_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
         "\u2028\u2029\u202f\u205f\u3000"
_PATTERN_CHARS = "*[]?^\\"  # fsutil: an exception with one of these may match inside any folder
# POSIX classes, which Go's regexp knows inside [...] and Python's does not.
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
          "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
          "xdigit": "0-9A-Fa-f"}


def read(path):
    """The patterns of a .dockerignore file, as ignorefile.ReadAll reads them ([] if there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        text = f.read().removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    patterns = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if line.startswith("#"):  # before trimming: " #x" is a pattern
            continue
        line = line.strip(_SPACE)
        if not line:
            continue
        invert = line[0] == "!"
        if invert:
            line = line[1:].strip(_SPACE)
        if line:
            line = clean(line)
            if len(line) > 1 and line[0] == "/":
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def clean(path):
    """Go's filepath.Clean (on "/")."""
    rooted, parts = path.startswith("/"), []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    return "/" + cleaned if rooted else cleaned or "."


class Pattern:
    """One pattern (without its `!`): how it matches, as patternmatcher compiles it."""

    def __init__(self, text, exclusion):
        self.text, self.exclusion = text, exclusion
        if not _valid(text):
            raise PystributedError(f".dockerignore: {text!r} is not a valid pattern (Docker refuses it too: "
                                   "syntax error in pattern); escape a literal [, ] or \\ with \\")
        self.kind, go_regex = _compile(text)
        self.regex = None
        if self.kind == "regexp":
            try:
                self.regex = re.compile(_python_regex(go_regex), re.ASCII)
            except re.error as e:
                raise PystributedError(f".dockerignore: {text!r} is not a pattern "
                                       f"Docker can use ({e})") from None

    def match(self, path):
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":  # `a/**`: what starts with a/
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":  # `**/a`: what ends with /a, or is a
            suffix = self.text[2:]
            return path.endswith(suffix) or suffix[:1] == "/" and path == suffix[1:]
        return self.regex.fullmatch(path) is not None  # Go's ^...$: the whole path

    def without_trailing_glob(self):
        return self.text.removesuffix("/**").removesuffix("/*")


class Matcher:
    """The patterns of a context, in order (patternmatcher.New): `matcher(path)` says whether a
    path is left out; `match` and `may_enter` are what a walk of the folder asks."""

    def __init__(self, patterns):
        self.patterns = []
        for text in patterns:
            text = text.strip(_SPACE)
            if not text:
                continue
            text = clean(text)
            exclusion = text[0] == "!"
            if exclusion:
                if len(text) == 1:
                    raise PystributedError('.dockerignore: a "!" alone is not a pattern (Docker '
                                           'refuses it too)')
                text = text[1:]
            self.patterns.append(Pattern(text, exclusion))
        self.exceptions = [p for p in self.patterns if p.exclusion]
        self.prefix_exceptions = not any(c in p.without_trailing_glob() for p in self.exceptions
                                         for c in _PATTERN_CHARS)

    def __call__(self, path):
        """Whether `path` (relative, with `/`) is left out: MatchesOrParentMatches."""
        matched, parents = False, _parents(path)
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # it could not change the answer
            if pattern.match(path) or any(pattern.match(parent) for parent in parents):
                matched = not pattern.exclusion
        return matched

    def match(self, path, above=None):
        """(whether `path` is left out, what to hand its entries as `above`): the walk's
        MatchesUsingParentResults, `above` being what its folder's own match returned."""
        matched, found = False, []
        for k, pattern in enumerate(self.patterns):
            hit = bool(above) and above[k]
            if not hit:
                if pattern.exclusion != matched:
                    found.append(False)
                    continue
                hit = pattern.match(path)
                if not hit and not above:
                    hit = any(pattern.match(parent) for parent in _parents(path))
            found.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, found

    def may_enter(self, folder):
        """Whether a left-out folder is walked all the same, for an exception inside it."""
        if not self.exceptions:
            return False
        if not self.prefix_exceptions:
            return True
        return any((p.without_trailing_glob() + "/").startswith(folder + "/") for p in self.exceptions)


def walk(root, matcher):
    """(path, relative name) of each file and folder of `root` that the context holds, as BuildKit
    walks it: a left-out folder is not entered unless `matcher.may_enter` it, and one that is
    entered is named only before the first thing in it that is taken."""
    root = str(root)
    above = {".": (None, ())}  # each folder to walk: its match results, and the left-out folders it is in
    named = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        results, hidden = above.pop(rel_dir)
        folders = set(dirnames)
        dirnames[:] = []
        for name in sorted(folders | set(filenames)):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            path = os.path.join(dirpath, name)
            is_folder = name in folders and not os.path.islink(path)
            excluded, found = matcher.match(rel, results)
            if excluded:
                if is_folder and matcher.may_enter(rel):
                    dirnames.append(name)
                    above[rel] = (found, (*hidden, rel))
                continue
            for folder in hidden:  # the left-out folders this is in, once each
                if folder not in named:
                    named.add(folder)
                    yield Path(root, folder), folder
            yield Path(path), rel
            if is_folder:
                dirnames.append(name)
                above[rel] = (found, hidden)


def _parents(path):
    """a, a/b for a/b/c."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def _compile(pattern):
    """patternmatcher's Pattern.compile: the kind of match, and Go's regular expression for it."""
    out, kind, i, n = "^", "exact", 0, len(pattern)
    while i < n:
        first = i == 0
        ch, i = pattern[i], i + 1
        if ch == "*":
            if i < n and pattern[i] == "*":  # some flavour of **
                i += 1
                if i < n and pattern[i] == "/":  # **/ is **
                    i += 1
                if i == n:  # ** at the end matches everything below, as in .gitignore
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out, kind = out + ".*", "regexp"
                else:
                    out, kind = out + "(.*/)?", "regexp"
                if first:
                    kind = "suffix"
            else:
                out, kind = out + "[^/]*", "regexp"
        elif ch == "?":
            out, kind = out + "[^/]", "regexp"
        elif ch in ".+()|{}$":
            out += "\\" + ch
        elif ch == "\\":
            if i < n:
                out, i, kind = out + "\\" + pattern[i], i + 1, "regexp"
            else:
                out += "\\"
        elif ch in "[]":
            out, kind = out + ch, "regexp"
        else:
            out += ch
    return kind, out + "$"


def _python_regex(go):
    """Go's regular expression as Python's: POSIX classes in [...] spelt out, `\\z` as `\\Z`, and
    the characters Python may one day read as set operations inside [...] escaped."""
    out, i, n = [], 0, len(go)
    while i < n:
        ch = go[i]
        if ch == "\\" and i + 1 < n:
            out.append("\\Z" if go[i + 1] == "z" else go[i:i + 2])
            i += 2
        elif ch == "[":
            out.append("[")
            i += 1
            if i < n and go[i] == "^":
                out.append("^")
                i += 1
            if i < n and go[i] == "]":  # first in a class: itself
                out.append("\\]")
                i += 1
            while i < n and go[i] != "]":
                posix = re.match(r"\[:(\^?)([a-z]+):\]", go[i:])
                if posix and posix.group(2) in _POSIX:
                    if posix.group(1):
                        raise re.error(f"negated POSIX class {posix.group(0)}")
                    out.append(_POSIX[posix.group(2)])
                    i += len(posix.group(0))
                elif go[i] == "\\" and i + 1 < n:
                    out.append(go[i:i + 2])
                    i += 2
                else:
                    out.append("\\" + go[i] if go[i] in "[&~|" else go[i])
                    i += 1
            if i < n:
                out.append("]")
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _valid(pattern):
    """Whether Go's filepath.Match accepts the pattern's syntax (patternmatcher.New asks it)."""
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\":
            if i + 1 >= n:
                return False
            i += 2
        elif pattern[i] == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while not (i < n and pattern[i] == "]" and ranges):
                i = _class_char(pattern, i)
                if i is not None and pattern[i] == "-":
                    i = _class_char(pattern, i + 1)
                if i is None:
                    return False
                ranges += 1
            i += 1
        else:
            i += 1
    return True


def _class_char(pattern, i):
    """filepath.Match's getEsc: where the class character at `i` ends, or None if it is not one."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None
    return i + 1 if i + 1 < n else None  # a class must go on to its ]
