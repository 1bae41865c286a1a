"""One status line per step, with its duration."""
import contextlib
import sys
import time


class Steps:
    def __init__(self, out=None, *, quiet=False):
        self.out, self.quiet = out, quiet

    def say(self, text):
        if not self.quiet:
            out = self.out or sys.stdout  # looked up now: Jupyter swaps sys.stdout per cell
            out.write(text)
            out.flush()

    @contextlib.contextmanager
    def step(self, name, detail="", *, live=False):
        """Print `name detail ...` and, when done, its duration. With `live`, other output may
        come in between, so the start and the end each get a line of their own."""
        start = time.monotonic()
        self.say(f"{name:<8}{detail} ...{chr(10) if live else ' '}")
        finished = "failed"
        try:
            yield
            finished = "done"
        finally:
            took = f"{finished} in {time.monotonic() - start:.1f}s"
            self.say(f"{name:<8}{took}\n" if live else f"{took}\n")
