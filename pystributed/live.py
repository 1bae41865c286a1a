"""The remote code's output, shown here as it arrives."""
import os
import sys
import time

from pystributed import live_display
from pystributed.cell_runner import END, MARK, PARTIAL, SHOW_LIMIT


class Redraws:
    """Pass text on to a stream at once, except lines that redraw themselves with `\\r`
    (progress bars): of those only the latest state goes out, at most every `interval` seconds,
    so a 10,000-step bar is one updating line, not 10,000 lines in the notebook."""

    def __init__(self, name, interval=0.25, clock=time.monotonic):
        self.name, self.interval, self.clock = name, interval, clock  # name: "stdout"/"stderr"
        self.line = ""  # the current line, since the last newline
        self.shown = ""  # what of it the stream shows
        self.last_redraw = float("-inf")
        # Text that comes raw (a sweep's task logs) loses its marks, and what the cell shows shows.
        self.write = Unmarked(self._write)

    @property
    def stream(self):
        return getattr(sys, self.name)  # looked up each time: Jupyter swaps it per cell

    def _write(self, text):
        out = []
        lines = (self.line + text).split("\n")
        for line in lines[:-1]:
            out.append(self._complete(line))
        self.line = lines[-1]
        if "\r" in self.line:  # keep only the latest state of a redrawn line
            self.line = "\r" + self._visible(self.line)
        out.append(self._partial())
        self._emit("".join(out))

    def close(self):
        """Show the last state of an unfinished line."""
        if self.line and self.shown != self._visible(self.line):
            self._emit("\r" + self._visible(self.line))
        self.line = self.shown = ""

    def _complete(self, line):
        visible = self._visible(line)
        if "\r" in line or self.shown and not visible.startswith(self.shown):
            text = "\r" + visible + "\n"
        else:
            text = visible[len(self.shown):] + "\n"
        self.shown = ""
        return text

    def _partial(self):
        visible = self._visible(self.line)
        if "\r" not in self.line and visible.startswith(self.shown):
            text, self.shown = visible[len(self.shown):], visible  # print(..., end=""): show now
            return text
        now = self.clock()
        if now - self.last_redraw < self.interval or visible == self.shown:
            return ""
        self.last_redraw, self.shown = now, visible
        return "\r" + visible

    @staticmethod
    def _visible(line):
        """What a terminal would show of `line`, near enough: its last non-empty redraw."""
        redraws = [part for part in line.split("\r") if part]
        return redraws[-1] if redraws else ""

    def _emit(self, text):
        if text:
            self.stream.write(text)
            self.stream.flush()


class Unmarked:
    """A text callback that gets the container's output without cell_runner's PARTIAL marks (a
    mark may be cut between two pieces: its start waits for the rest). What the cell shows (a
    MARK ... END marker) goes to `on_shown` ({"data": MIME bundle, "metadata", "file"}), in its
    place among the text: by default live_display.show (the notebook shows it)."""

    def __init__(self, callback, on_shown=None):
        self.callback, self.held, self.on_shown = callback, "", on_shown

    def __call__(self, text):
        text, self.held = (self.held + text).replace(PARTIAL, ""), ""
        if MARK in text:
            text = self._shown(text)
        cut = text.rfind(PARTIAL[0])
        if cut >= 0 and PARTIAL.startswith(text[cut:]) and not self.held:
            text, self.held = text[:cut], text[cut:]
        if text:
            self.callback(text)

    def _shown(self, text):
        """Pass on the text before each whole marker, then the marker; hold one not yet whole
        (one longer than any cell_runner writes is text)."""
        while MARK in text:
            before, _, rest = text.partition(MARK)
            body, end, text = rest.partition(END)
            if not end and len(rest) <= SHOW_LIMIT + 10000:
                self.held = MARK + rest
                return before
            if before:
                self.callback(before)
            shown = live_display.parse(body) if end else {"data": {"text/plain": MARK + rest}}
            (self.on_shown or live_display.show)(shown)
        return text


def unmark(text):
    return text.replace(PARTIAL, "")


def unmark_file(path):
    """The saved output (output.log, as `docker logs` wrote it) without the marks."""
    if not path.is_file():
        return
    part = path.with_name(f".{path.name}.unmarked")
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as src, \
            open(part, "w", encoding="utf-8", errors="surrogateescape", newline="") as dst:
        write = Unmarked(dst.write, on_shown=lambda shown: dst.write(live_display.text_of(shown)))
        for chunk in iter(lambda: src.read(1 << 20), ""):
            write(chunk)
        dst.write(write.held)
    os.replace(part, path)
