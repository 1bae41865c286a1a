class PystributedError(Exception):
    """An error the user can act on: shown as a message, not as a traceback of ours."""


class ConfigError(PystributedError):
    pass


class StepError(PystributedError):
    """A step (build, push, connect, pull, run, fetch) failed; carries the tool's own message."""

    def __init__(self, step, message, *, output="", hint=""):
        self.step, self.message, self.output, self.hint = step, message, output, hint
        text = f"{step} failed: {message}"
        if output.strip():
            text += "\n" + "\n".join("    " + line for line in output.strip().splitlines()[-20:])
        if hint:
            text += f"\n{hint}"
        super().__init__(text)


class RemoteCellError(PystributedError):
    """The cell ran and exited non-zero on the remote; the message ends with its output."""

    def __init__(self, result, message):
        self.result = result
        super().__init__(message)
