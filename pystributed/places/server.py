"""A place we reach with a shell: server.sh is sent there with the action to run, and only what
follows its answer's marker line is read (see server.sh). local.py and ssh.py say how to reach
`sh`; everything else is here."""
import contextlib
import json
import re
import secrets
import shlex
import sys
from pathlib import Path

from pystributed import docker, results, util
from pystributed.errors import EXIT_HINTS, StepError
from pystributed.places import Place

SCRIPT = (Path(__file__).parent.parent / "server.sh").read_text(encoding="utf-8")
MARK = "@@pystributed@@"
# What sh runs: read the script and the call (N bytes) from stdin, then run them. dd reads exactly
# N bytes (GNU and BusyBox dd in one read; where `iflag=fullblock` is unknown, a byte at a time), so
# that the action's own input (a tar stream, the container's environment) is still there after
# them; `sh -s` would read ahead (dash does), and the action would miss its input.
LOADER = 'eval "$(dd bs={0} count=1 iflag=fullblock 2>/dev/null || dd bs=1 count={0} 2>/dev/null)"'


def program(action, *args):
    """The bytes sent first: the script, then the line that calls `action` with its words."""
    return f"{SCRIPT}\n{shlex.join([action, *args])}\n".encode()


class Server(Place):
    cwd = None  # where sh starts
    noisy = False  # whether the login shell printed something before an answer (a banner)

    def __init__(self, config):
        self.config = config

    def argv(self, size):
        """The command that starts sh there, reading a program of `size` bytes from stdin."""
        raise NotImplementedError

    def connection(self):
        return contextlib.nullcontext(self)

    def hint(self):
        """What to check when the place cannot be reached."""
        return ""

    def call(self, action, *args, step, hint="", stdin=None, read=None):
        """Run `action` there; the text of its answer, or what `read(stream)` made of it.
        `stdin(file)` writes the action's input after the program."""
        script = program(action, *args)

        def write(pipe):
            pipe.write(script)
            if stdin:
                stdin(pipe)

        def reader(stream):
            return read(self.after_mark(stream, step))

        try:
            out = util.run(self.argv(len(script)), step=step, hint=hint, write_stdin=write, cwd=self.cwd,
                           read_stdout=reader if read else None)
        except StepError as e:
            if e.code is None:  # not an exit code of the action's (no answer line, no ssh here): as it is
                raise
            # Name what failed there, not the fixed line that started sh; ssh's own failure (255) is
            # the connection's, not the command's.
            what = f"`{_shown(action, args)}` on {self.name}"
            message = (f"ssh could not run {what} (exit code 255)"
                       if e.code == 255 and self.argv(0)[0] == "ssh"
                       else f"{what} exited with code {e.code}")
            raise StepError(e.step, message, output=e.output, hint=e.hint, code=e.code) from None
        return out if read else self.answer_of(out, step)

    def stream(self, action, *args, step, on_stdout, on_stderr, stdin=None):
        """Run `action`, handing its answer to the callbacks as it comes; its exit code."""
        script = program(action, *args)

        def write(pipe):
            pipe.write(script)
            if stdin:
                stdin(pipe)

        answer = Unframe(on_stdout)
        code = util.stream(self.argv(len(script)), step=step, on_stdout=answer, on_stderr=on_stderr,
                           cwd=self.cwd, write_stdin=write)
        if not answer.seen and answer.held:  # sh there never answered: what it said is the only clue
            on_stderr(answer.held)
        return code

    def answer_of(self, out, step):
        """The answer in `out`: what follows the marker line (whatever came before it is noise)."""
        noise, mark, rest = out.partition(MARK + "\n")
        if not mark:
            raise StepError(step, "the server's answer was not understood (no answer line)", output=out,
                            hint="Is `sh` there a POSIX shell?")
        self.noisy = self.noisy or bool(noise)
        return rest

    def after_mark(self, stream, step):
        """The binary stream from the line after the marker on."""
        for line in stream:
            if line.endswith(MARK.encode() + b"\n"):
                self.noisy = self.noisy or line != MARK.encode() + b"\n"
                return stream
            self.noisy = True
        raise StepError(step, "the server's answer ended before it began (no answer line)")

    def workdir(self):
        """REMOTE_WORKDIR as sh there should see it: `~/x` becomes `x` (sh starts in the home)."""
        path = self.config.REMOTE_WORKDIR
        return "." if path == "~" else path.removeprefix("~/")

    # The Place methods.

    def prepare(self, run_id):
        # With remote-build, BASE_IMAGE's id there (features/base.py) is asked in the same command.
        base = [self.config.BASE_IMAGE] if self.config.TRANSPORT == "remote-build" else []
        out = self.call("rundir", self.workdir(), run_id, *base, step="connect", hint=(
            f"{self.hint()} REMOTE_WORKDIR ({self.config.REMOTE_WORKDIR}) must be creatable there.".lstrip()))
        path, uid, gid, *more = out.splitlines()
        machine = next((line.split(" ", 1)[1] for line in more if line.startswith("machine ")), "")
        self.base_id = next((line[5:].strip() for line in more if line.startswith("base ")), "")
        self.platform = docker.platform_of(machine)
        if ":" in path:  # docker's --volume would split it there
            raise StepError("connect", f"the run folder {path} holds a ':', which docker cannot mount",
                            hint="Choose a REMOTE_WORKDIR without ':'.")
        return path, "0:0" if "rootless" in more else f"{uid}:{gid}"  # its root is the user (server.sh)

    def discard(self, remote_dir):
        with contextlib.suppress(StepError):
            self.call("rmdir_run", remote_dir, step="connect")

    def docker(self, argv, *, step, hint="", stdin=None, read=None):
        try:
            return self.call("docker_command", *argv[1:], step=step, hint=hint, stdin=stdin, read=read)
        except StepError as e:
            raise self.engine_hint(e) from None

    def follow(self, run_id, on_stdout, on_stderr, *, start=None, env=None):
        return self.stream("follow", run_id, *(start or []), step="run", on_stdout=on_stdout,
                           on_stderr=on_stderr,
                           stdin=env and _env_writer(env))

    def start(self, start, env):
        try:
            self.call("start", *start, step="start", stdin=_env_writer(env), hint=EXIT_HINTS[125])
        except StepError as e:
            raise self.engine_hint(e) from None

    def finish(self, remote_dir, run_id, *, cancelled=False, absent=False):
        lines = self.call("finish", remote_dir, run_id, "true" if cancelled else "false",
                          secrets.token_hex(4),
                          step="run").splitlines()
        if "log-not-saved" in lines:
            print(f"warning: the output could not be saved as {results.LOG_NAME} in {remote_dir} on "
                  f"{self.name} (is its disk full?); the container is kept, its output is in `docker logs "
                  f"{docker.container_name(run_id)}` there.", file=sys.stderr)
        if lines and lines[0] == "absent":
            if absent:
                return None
            raise StepError("run", f"there is no container {docker.container_name(run_id)} on {self.name}, "
                            f"and no state of it in {remote_dir}: it never started",
                            hint="Start it again (it ended before its container started).")
        return exit_code(lines[0] if lines else "")

    def stop(self, run_id, *, step="run"):
        self.call("stop", run_id, step=step)

    def fetch(self, remote_dir, read, *, going=False, hint=""):
        return self.call("fetch", remote_dir, "going" if going else "", step="fetch", hint=hint, read=read)

    def fetch_tasks(self, remote_dir, indexes, read, *, hint=""):
        """The folders remote_dir/INDEX of a sweep's tasks, as one tar stream (those missing left out)."""
        return self.call("fetch_tasks", remote_dir, *map(str, indexes), step="fetch", hint=hint, read=read)

    def logs(self, remote_dir, run_id, on_stdout, on_stderr, *, follow=False):
        return self.stream("logs", remote_dir, run_id, "follow" if follow else "", step="logs",
                           on_stdout=on_stdout, on_stderr=on_stderr)

    def survey(self, run_id=None):
        try:
            out = self.call("survey", self.workdir(), *([run_id] if run_id else []), step="status",
                            hint=self.hint())
        except StepError as e:
            raise self.engine_hint(e) from None
        return sections(out)

    def cell_image(self, image, sha, archive):
        out = self.call("cell", self.workdir(), image, sha, step="build",
                        stdin=lambda pipe: pipe.write(archive))
        found, folder = (out.splitlines() + ["", ""])[:2]
        if not folder:
            return None
        repository = image.rsplit(":", 1)[0]
        return next((n.split("@", 1)[1] for n in found.split() if n.startswith(f"{repository}@")), ""), folder

    def images(self, repository, *, cells=True):
        return sections(self.call("images", repository, *([self.workdir()] if cells else []), step="clean"))

    def remove_cells(self, folders):
        self.call("remove_cells", self.workdir(), *folders, step="clean")

    def remove(self, folders):
        self.call("remove", *folders, step="clean",
                  hint="Files the container wrote as another user (DOCKER_RUN_ARGS --user) need that "
                       "user to remove.")

    def engine_hint(self, error):
        """A better hint for a docker command that could not reach the engine."""
        output = error.output.lower()
        if "permission denied" in output and "docker" in output:
            hint = (f"The user may not use Docker on {self.name}: add it to the `docker` group "
                    "(`sudo usermod -aG docker USER`); the next run's new connection picks that up.")
        elif "cannot connect to the docker daemon" in output:
            hint = f"Docker is not running on {self.name}: start it there (`sudo systemctl start docker`)."
        elif error.code == 127 and re.search(r"\bdocker: (command )?not found", output):  # sh's words for it
            install = "install Docker Engine (or Podman with its `docker` command)"
            hint = (f"`docker` is not installed on {self.name}, or not on the PATH a command over ssh gets "
                    f"there (`ssh {self.name} command -v docker` shows it): {install}, or put its folder on "
                    "PATH in a startup file that non-interactive shells read."
                    if self.argv(0)[0] == "ssh" else
                    f"`docker` is not installed on {self.name} (not on PATH): {install}.")
        else:
            return error
        return StepError(error.step, error.message, output=error.output, hint=hint, code=error.code)


def _shown(action, args):
    """An action as a user would type it: docker's own commands as docker commands."""
    words = {"docker_command": ["docker"], "start": ["docker", "run"]}.get(action, ["server.sh", action])
    text = shlex.join([*words, *args])
    return text if len(text) < 300 else text[:300] + " …"


def _env_writer(env):
    def write(pipe):
        pipe.write("".join(f"{k}={v}\n" for k, v in env.items()).encode())
    return write


def exit_code(line):
    """finish's answer: the exit code, or the state another process saved (it put the container away)."""
    line = line.strip()
    if line.startswith("{"):
        return int(json.loads(line)["State"]["ExitCode"])
    return int(line)


def sections(text):
    """{name: [lines]} of an answer made of `MARK NAME` sections."""
    found, current = {}, None
    for line in text.splitlines():
        if line.startswith(MARK + " "):
            current = found.setdefault(line[len(MARK) + 1:].strip(), [])
        elif current is not None and line.strip():
            current.append(line)
    return found


class Unframe:
    """A text callback that sees the answer only: what comes before the marker line is dropped."""

    def __init__(self, callback):
        self.callback, self.seen, self.held = callback, False, ""

    def __call__(self, text):
        if self.seen:
            self.callback(text)
            return
        self.held += text
        _, mark, rest = self.held.partition(MARK + "\n")
        if mark:
            self.seen, self.held = True, ""
            if rest:
                self.callback(rest)
