"""IPython has one custom exception handler (`set_custom_exc` replaces it): registering ours keeps
the one set before (another extension's, the user's) for its own exceptions. In a real
InteractiveShell; tests/e2e/test_magic_chain_e2e.py does it in a real kernel."""
import pytest
from IPython.core.interactiveshell import InteractiveShell

from pystributed import magic
from pystributed.errors import PystributedError


class TheirError(Exception):
    pass


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.user_ns["TheirError"] = TheirError
    shell.run_line_magic("colors", "NoColor")
    yield shell
    shell.set_custom_exc((), None)
    InteractiveShell.clear_instance()


def theirs(calls):
    def handler(shell, etype, value, tb, tb_offset=None):
        calls.append(etype)
        print(f"their handler: {value}")
    return handler


def test_a_handler_set_before_is_kept_for_its_exceptions(ip, capsys):
    calls = []
    ip.set_custom_exc((TheirError, KeyError), theirs(calls))
    magic.register(ip)
    assert set(ip.custom_exceptions) == {PystributedError, KeyboardInterrupt, TheirError, KeyError}

    ip.run_cell("raise TheirError('from the other extension')")
    ip.run_cell("raise KeyError('k')")
    assert calls == [TheirError, KeyError]
    assert capsys.readouterr().out.count("their handler:") == 2

    result = ip.run_cell("from pystributed.errors import StepError\nraise StepError('push', 'registry down')")
    assert isinstance(result.error_in_exec, PystributedError) and calls == [TheirError, KeyError]
    out = capsys.readouterr().out
    assert ("StepError: push failed: registry down" in out and "Traceback" not in out
            and "their handler" not in out)

    ip.run_cell("raise ValueError('plain')")  # neither handler's: IPython's own traceback
    out = capsys.readouterr().out
    assert "Traceback" in out and "ValueError: plain" in out and calls == [TheirError, KeyError]


def test_without_an_earlier_handler_ours_alone_is_set(ip, capsys):
    magic.register(ip)
    assert ip.custom_exceptions == (PystributedError, KeyboardInterrupt)
    ip.run_cell("from pystributed.errors import ConfigError\nraise ConfigError('bad key')")
    out = capsys.readouterr().out
    assert "ConfigError: bad key" in out and "Traceback" not in out


def test_registering_again_chains_nothing_more(ip, capsys):
    calls = []
    ip.set_custom_exc((TheirError,), theirs(calls))
    magic.register(ip)  # import pystributed.main ...
    ours = ip.CustomTB
    ip.run_line_magic("load_ext", "pystributed")  # ... then %load_ext pystributed
    magic.register(ip)
    assert ip.CustomTB is ours and ip.custom_exceptions == (PystributedError, KeyboardInterrupt, TheirError)
    ip.run_cell("raise TheirError('once')")
    assert calls == [TheirError] and capsys.readouterr().out.count("their handler: once") == 1


def test_an_extension_that_chains_after_us_keeps_ours(ip, capsys):
    magic.register(ip)
    before, before_types = ip.CustomTB, ip.custom_exceptions
    calls = []

    def later(shell, etype, value, tb, tb_offset=None):  # a later extension that chains, as we do
        if issubclass(etype, TheirError):
            return theirs(calls)(shell, etype, value, tb, tb_offset)
        return before(etype, value, tb, tb_offset=tb_offset)

    ip.set_custom_exc((TheirError, *before_types), later)
    magic.register(ip)  # registering again on top of theirs still handles both
    ip.run_cell("raise TheirError('x')")
    ip.run_cell("from pystributed.errors import StepError\nraise StepError('build', 'no engine')")
    out = capsys.readouterr().out
    assert calls == [TheirError] and "StepError: build failed: no engine" in out and "Traceback" not in out


def test_a_failing_earlier_handler_is_dropped_and_ours_stays(ip, capsys):
    def broken(shell, etype, value, tb, tb_offset=None):
        raise RuntimeError("their handler is broken")

    ip.set_custom_exc((TheirError,), broken)
    magic.register(ip)
    ip.run_cell("raise TheirError('x')")
    captured = capsys.readouterr()
    assert "Custom TB Handler failed, unregistering" in captured.err  # IPython's own way with it
    assert "TheirError: x" in captured.out  # the exception itself is still shown
    assert ip.custom_exceptions == (PystributedError, KeyboardInterrupt)
    ip.run_cell("from pystributed.errors import StepError\nraise StepError('pull', 'gone')")
    out = capsys.readouterr().out
    assert "StepError: pull failed: gone" in out and "Traceback" not in out


def test_an_interrupt_of_a_run_is_one_line_and_any_other_keeps_its_traceback(ip, capsys):
    magic.register(ip)
    # A KeyboardInterrupt raised inside pystributed (here: check_cell asking the cell for .strip()).
    ip.run_cell("import pystributed.magic as m\nclass Cell:\n    def strip(self):\n        raise "
                "KeyboardInterrupt\nm.check_cell(Cell(), 'x.py')")
    ours = capsys.readouterr()
    ip.run_cell("raise KeyboardInterrupt")
    theirs = capsys.readouterr()
    assert "KeyboardInterrupt" in ours.out + ours.err and "Traceback" not in ours.out + ours.err
    assert "An exception has occurred" not in ours.out + ours.err
    assert "Traceback" in theirs.out + theirs.err
