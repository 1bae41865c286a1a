import builtins


class PystributedError(Exception):
    """An error the user can act on: shown as a message, not as a traceback of ours."""


class ConfigError(PystributedError):
    pass


class UnknownRun(PystributedError):
    """The server has no run of that id in REMOTE_WORKDIR."""


class StepError(PystributedError):
    """A step (build, push, connect, pull, run, fetch) failed; carries the tool's own message."""

    def __init__(self, step, message, *, output="", hint="", code=None):
        self.step, self.message, self.output, self.hint, self.code = step, message, output, hint, code
        text = f"{step} failed: {message}"
        if output.strip():
            text += "\n" + "\n".join("    " + line for line in output.strip().splitlines()[-20:])
        if hint:
            text += f"\n{hint}"
        super().__init__(text)


class RemoteCellError(PystributedError):
    """The cell failed on the server. For a built-in exception type the error raised here is
    also of that type (RemoteValueError is a ValueError), so `except ValueError` works as locally.
    `remote_type`, `remote_message` and `remote_traceback` hold what the server printed."""

    def __init__(self, message, *, result=None, remote_type="", remote_message="", remote_traceback=""):
        self.result, self.remote_type = result, remote_type
        self.remote_message, self.remote_traceback = remote_message, remote_traceback
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message  # not KeyError's repr() of it


EXIT_HINTS = {
    125: "Docker could not start the container: check DOCKER_RUN_ARGS and the image.",
    126: "The entry point could not be executed: check that the image runs `python3` (or `python`).",
    127: "The entry point was not found: BASE_IMAGE must provide `sh`, and `python3` or "
         "`python` on its PATH.",
    137: "The container was killed (SIGKILL), most likely for running out of memory.",
}


def remote_cell_error(result, stderr, output, *, entry, code_path):
    """The error for a run that exited non-zero: the remote exception, its traceback with the
    cell's own line numbers (paths shown as where the cell was saved here), the run, the log."""
    # (A Slurm job's output is one stream, its stderr in output.log with the rest.)
    remote_type, remote_message, trace = parse_traceback(stderr if "Traceback (most" in stderr else output)
    trace = trace.replace(f'File "/app/{entry}"', f'File "{code_path}"')
    head = (f"{remote_type}: {remote_message}" if remote_type
            else f"the cell failed with exit code {result.exit_code}")
    lines = [head, f"(run {result.run_id} on {result.server}, exit code {result.exit_code})"]
    if result.exit_code in EXIT_HINTS:
        lines.append(EXIT_HINTS[result.exit_code])
    if trace:
        lines += [f"Remote traceback (line numbers are the cell's, as saved in {code_path}):"]
        lines += ["  " + line for line in trace.splitlines()]
    elif output.strip():
        lines += ["Remote output (end):"] + ["  " + line for line in output.strip().splitlines()[-30:]]
    lines.append(f"Log: {result.log}" if result.log else "")
    cls = _remote_class(remote_type.rsplit(".", 1)[-1])
    return cls("\n".join(lines).rstrip(), result=result, remote_type=remote_type,
               remote_message=remote_message, remote_traceback=trace)


def parse_traceback(text):
    """(type, message, traceback) of the last Python traceback in `text`, or empty strings."""
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return "", "", ""
    lines = text[start:].rstrip().splitlines()
    # The exception is the first line after the frames (all indented): what follows may be output that a
    # buffer let out at the exit (one stream, as a Slurm job's), or the message's further lines.
    last = next((line for line in lines[1:] if line and not line[0].isspace()), "")
    remote_type, _, message = last.partition(": ")
    if not remote_type.replace(".", "").replace("_", "").isalnum():
        return "", "", "\n".join(lines)
    return remote_type, message, "\n".join(lines)


_classes: dict[str, type] = {}


def _remote_class(name):
    base = getattr(builtins, name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        return RemoteCellError
    if name not in _classes:
        try:
            _classes[name] = type(f"Remote{name}", (RemoteCellError, base), {"__module__": __name__})
        except TypeError:  # a base whose C layout does not mix (e.g. OSError)
            _classes[name] = RemoteCellError
    return _classes[name]
