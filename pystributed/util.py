"""The one way this package runs a program: an argument list, never a shell of ours."""
import codecs
import logging
import shlex
import subprocess
import tempfile
import threading

from pystributed.errors import StepError

log = logging.getLogger("pystributed")


def run(cmd, *, step, hint="", write_stdin=None, read_stdout=None, cwd=None):
    """Run `cmd` to the end and return its stdout; raise StepError naming `step` if it fails.
    `write_stdin(file)` writes the program's input (e.g. a tar stream); `read_stdout(file)`
    consumes its output as it comes (and the return value is then what it returned)."""
    # Files, not pipes: a chatty program can't block on a full pipe while we write its stdin.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = _popen(cmd, step, stdin=subprocess.PIPE if write_stdin else subprocess.DEVNULL,
                      stdout=subprocess.PIPE if read_stdout else out, stderr=err, cwd=cwd)
        value = None
        try:
            if write_stdin:
                with proc.stdin:
                    write_stdin(proc.stdin)
            if read_stdout:
                with proc.stdout:
                    value = read_stdout(proc.stdout)
                    # What the reader left (the padding after a tar stream's end) is read too:
                    # a program writing into a pipe closed early dies of SIGPIPE, at random.
                    while proc.stdout.read(1 << 16):
                        pass
        except BrokenPipeError:
            pass  # the program stopped reading; its exit code and stderr say why
        except Exception as e:
            # A reader's error (a cut-off tar stream) is most often the program's failure:
            # then its own message is the one to show.
            if proc.wait() == 0:
                raise
            value = e
        except BaseException:
            proc.kill()
            raise
        finally:
            returncode = proc.wait()
        stdout, stderr = _read(out), _read(err)
    if returncode:
        if isinstance(value, Exception):
            stderr = f"{stderr}\n({type(value).__name__}: {value})"
        raise StepError(step, f"`{_short(cmd)}` exited with code {returncode}",
                        output=stderr or stdout, hint=hint, code=returncode)
    return value if read_stdout else stdout


def columns(rows):
    """The rows (tuples of strings, the first the heading) as lines of left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def succeeds(cmd, *, cwd=None):
    """Whether `cmd` exits 0 (its output is not wanted): for questions like "is the image there?"."""
    log.debug("$ %s", shlex.join(cmd))
    return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def output(cmd):
    """`cmd`'s stdout, whether or not it succeeds (for looking things up)."""
    log.debug("$ %s", shlex.join(cmd))
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False).stdout


def stream(cmd, *, step, on_stdout, on_stderr, cwd=None, write_stdin=None):
    """Run `cmd`, handing its output to the callbacks as it arrives (chunks, not lines, so a
    progress bar's `\\r` and a print without newline show at once). Return its exit code.
    `write_stdin(file)` writes its (small) input."""
    proc = _popen(cmd, step, stdin=subprocess.PIPE if write_stdin else subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    if write_stdin:
        try:
            with proc.stdin:
                write_stdin(proc.stdin)
        except BrokenPipeError:
            pass  # the program stopped reading (ssh could not connect); its exit code and stderr say why
    pumps = [threading.Thread(target=_pump, args=(pipe, callback), daemon=True)
             for pipe, callback in ((proc.stdout, on_stdout), (proc.stderr, on_stderr))]
    for pump in pumps:
        pump.start()
    try:
        proc.wait()
    except BaseException:
        # Interrupted: the caller decides what happens on the remote side. Our pipes may be
        # held by an ssh ControlMaster until the remote command ends, so don't wait for them.
        proc.terminate()
        proc.wait()
        raise
    for pump in pumps:
        pump.join()
    return proc.returncode


def _pump(pipe, callback):
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with pipe:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            callback(decoder.decode(chunk))
    tail = decoder.decode(b"", final=True)
    if tail:
        callback(tail)


def _popen(cmd, step, **kwargs):
    log.debug("$ %s", shlex.join(cmd))
    try:
        return subprocess.Popen(cmd, **kwargs)
    except FileNotFoundError:
        raise StepError(step, f"`{cmd[0]}` was not found on PATH",
                        hint=f"Install {cmd[0]} (see the README's prerequisites) and try again.") from None


def _read(file):
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


def _short(cmd):
    text = shlex.join(cmd)
    return text if len(text) < 300 else text[:300] + " …"
