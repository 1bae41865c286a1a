"""A strict fake of the programs the package runs (util.run, util.stream, util.succeeds,
util.output): each call must have been expected, in order, or the test fails at once.

    programs.expect("docker", "build", ..., out="sha256:1")    # an argv; `...` matches the rest
    programs.expect("server", "rundir", "runs", ..., out="/w/r\\n1000\\n1000\\n")

A server action (server.sh sent on stdin to `sh -c 'eval ...'`, over ssh or here) is named as
("server", ACTION, *ARGS), as sh there would read them; its answer gets the marker line first,
after `noise` (what a login shell may print). What the action reads from stdin after the
program is kept in `calls[i].stdin`."""
import dataclasses
import io
import re
import shlex
import tarfile
import types

import pytest

from pystributed import util
from pystributed.places import server


@dataclasses.dataclass
class Call:
    words: list
    argv: list
    step: str
    stdin: bytes = b""
    cwd: str = None


@dataclasses.dataclass
class Expected:
    words: tuple
    out: object = ""  # str, bytes (for a reader), or an exception to raise
    code: int = 0
    stdout: str = ""  # what a stream hands to on_stdout
    stderr: str = ""


class Programs:
    def __init__(self):
        self.expected, self.calls = [], []
        self.noise = ""
        self.failure = ""  # the first mismatch: code that cleans up after it must not hide it

    def fail(self, message):
        self.failure = self.failure or message
        pytest.fail(message)

    def expect(self, *words, out="", code=0, stdout="", stderr=""):
        self.expected.append(Expected(words, out, code, stdout, stderr))

    def done(self):
        assert not self.failure, self.failure
        assert not self.expected, f"expected but not run: {[e.words for e in self.expected]}"

    def _take(self, argv, write_stdin, step, cwd=None):
        stdin = io.BytesIO()
        if write_stdin:
            write_stdin(stdin)
        data = stdin.getvalue()
        words, rest = list(argv), b""
        if argv[0] in ("ssh", "sh") and "eval \"$(dd bs=" in argv[-1]:
            size = int(re.search(r"dd bs=([0-9]+) count=1 ", argv[-1]).group(1))
            program, rest = data[:size], data[size:]
            assert program.startswith(server.SCRIPT.encode()), "the program is server.sh, then the call"
            # The call is the line after the script (its words may hold newlines, quoted).
            words = ["server", *shlex.split(program[len(server.SCRIPT.encode()) + 1:].decode())]
        else:
            rest = data
        self.calls.append(Call(words, list(argv), step, rest, cwd))
        if not self.expected:
            self.fail(f"unexpected command: {words}")
        expected = self.expected.pop(0)
        want = list(expected.words)
        if want and want[-1] is Ellipsis:
            want, words = want[:-1], words[:len(want) - 1]
        if words != want:
            self.fail(f"expected {list(expected.words)}\n     got {self.calls[-1].words}")
        if isinstance(expected.out, BaseException):
            raise expected.out
        return expected, words[0] == "server"

    def _answer(self, expected, framed, text):
        return (self.noise + server.MARK + "\n" + text) if framed else text

    def run(self, argv, *, step, hint="", write_stdin=None, read_stdout=None, cwd=None):
        expected, framed = self._take(argv, write_stdin, step, cwd)
        if expected.code:
            raise util.StepError(step, f"`{argv[0]}` exited with code {expected.code}",
                                 output=expected.stderr,
                                 hint=hint, code=expected.code)
        out = expected.out
        if read_stdout:
            head = self._answer(expected, framed, "").encode()
            body = out if isinstance(out, bytes) else out.encode()
            return read_stdout(io.BufferedReader(io.BytesIO(head + body)))
        return self._answer(expected, framed, out)

    def stream(self, argv, *, step, on_stdout, on_stderr, cwd=None, write_stdin=None):
        expected, framed = self._take(argv, write_stdin, step, cwd)
        on_stdout(self._answer(expected, framed, expected.stdout))
        if expected.stderr:
            on_stderr(expected.stderr)
        return expected.code

    def succeeds(self, argv, *, cwd=None):
        try:
            self.run(argv, step="?")
        except util.StepError:
            return False
        return True

    def output(self, argv):
        expected, _ = self._take(argv, None, "?")
        return expected.out


@pytest.fixture
def programs(monkeypatch):
    fake = Programs()
    for name in ("run", "stream", "succeeds", "output"):
        monkeypatch.setattr(util, name, getattr(fake, name))
    yield fake
    fake.done()


def tar_of(files):
    """A tar archive, as bytes, of the regular files {name: content}: what `fetch` answers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Inline:
    """An executor that runs what it is given at once (an engine's fetches, in one order for the fake)."""

    def submit(self, fn, *args):
        fn(*args)

    def shutdown(self, wait=True):
        pass


def job_engine(engine_class, place, *, tasks, cluster, folder, retries=0):
    """An engine of `engine_class` on `place` for a job of `tasks` tasks (parameters x=0..), started as a
    sweep with TOKEN in its environment, its fetches inline."""
    from pystributed import jobs, progress

    job = jobs.Job(folder.rsplit("/", 1)[-1], [jobs.Task(i, {"x": i}) for i in range(tasks)],
                   server=place.name,
                   cluster=cluster, remote_dir=folder, image="reg:5000/proj:s", user="1000:1000",
                   retries=retries)
    started = types.SimpleNamespace(steps=progress.steps_for(True), detach=False, env={"TOKEN": "s3cret"})
    engine = engine_class(place.config, place, job, sweep=started)
    engine.fetches = Inline()
    return engine
