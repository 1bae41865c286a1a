"""In a real Jupyter kernel: a custom exception handler set before pystributed is imported (the
user's, or another extension's) still handles its exceptions, and ours still shows our errors as
their message. Needs a kernel, not the sandbox."""
import pytest
from kernel import Kernel, error_of, stream_text


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.close()


def test_a_handler_set_before_the_import_is_kept(kernel):
    messages, reply = kernel.execute(
        "class TheirError(Exception):\n"
        "    pass\n"
        "def theirs(shell, etype, value, tb, tb_offset=None):\n"
        "    print('their handler:', value)\n"
        "get_ipython().set_custom_exc((TheirError,), theirs)\n"
        "import pystributed.main as runner\n"
        "%load_ext pystributed\n")
    assert reply["status"] == "ok", messages

    messages, _ = kernel.execute("raise TheirError('still mine')")
    assert stream_text(messages) == "their handler: still mine\n" and error_of(messages) is None

    messages, reply = kernel.execute("runner.main()")  # no config, no saved cell: one of our errors
    error = error_of(messages)
    assert reply["status"] == "error" and error["ename"] == "ConfigError"
    shown = "".join(error["traceback"])  # the message, not our stack
    assert "REMOTE_SERVER" in shown and "Traceback" not in shown and "pystributed/" not in shown
    assert "their handler" not in stream_text(messages)

    messages, reply = kernel.execute("raise ValueError('plain')")  # neither handler's: the usual traceback
    assert error_of(messages)["ename"] == "ValueError" and len(error_of(messages)["traceback"]) > 1
