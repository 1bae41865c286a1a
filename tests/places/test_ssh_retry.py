"""Many runs at once: sshd drops new connections beyond its MaxStartups (10 unauthenticated ones at
once, by default) before they say who they are, and ssh exits 255 with `kex_exchange_identification:`.
Nothing ran on the server then, so the connection is tried again, with pauses of a few seconds in
all; one that never gets through says why (not keys). What runs over a run's shared connection opens
none: only that connection's start is tried again."""
import pytest

from pystributed import config
from pystributed.errors import StepError
from pystributed.places import ssh

RUN_ID = "20261125-101502-3fa9c1"
REFUSED = ("kex_exchange_identification: Connection closed by remote host\r\nConnection closed by "
           "10.0.0.5 port 22\r\n")
RESET = ("kex_exchange_identification: read: Connection reset by peer\r\nConnection reset by "
         "10.0.0.5 port 22\r\n")
OLD_CLIENT = "ssh_exchange_identification: Connection closed by remote host\r\n"


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                       SSH_OPTIONS=["-F", "/cfg"])


@pytest.fixture
def pauses(monkeypatch):
    slept = []
    monkeypatch.setattr(ssh.time, "sleep", slept.append)
    return slept


def master_refused(programs, times, stderr=REFUSED):
    programs.expect("ssh", "-G", ..., out="")
    for _ in range(times):
        programs.expect("ssh", ..., code=255, stderr=stderr)


@pytest.mark.parametrize("stderr", [REFUSED, RESET, OLD_CLIENT], ids=["closed", "reset", "old-client"])
def test_a_refused_master_is_started_again_after_a_pause(cfg, programs, pauses, stderr):
    master_refused(programs, 2, stderr)
    programs.expect("ssh", ...)  # the master starts
    programs.expect("server", "stop", RUN_ID)
    programs.expect("ssh", ...)  # -O exit
    with ssh.Ssh(cfg).connection() as shared:
        assert "ControlMaster=yes" in programs.calls[-1].argv
        assert programs.calls[1].argv == programs.calls[2].argv == programs.calls[3].argv
        shared.stop(RUN_ID)
    assert len(pauses) == 2
    assert ssh.RETRY_DELAYS[0] * 0.5 <= pauses[0] <= ssh.RETRY_DELAYS[0] * 1.5
    assert ssh.RETRY_DELAYS[1] * 0.5 <= pauses[1] <= ssh.RETRY_DELAYS[1] * 1.5


def test_the_pauses_are_a_few_seconds_in_all():
    assert 3 <= sum(ssh.RETRY_DELAYS) <= 8
    assert list(ssh.RETRY_DELAYS) == sorted(ssh.RETRY_DELAYS)  # backing off


def test_a_server_that_keeps_refusing_is_named_as_refusing_not_keys(cfg, programs, pauses):
    master_refused(programs, len(ssh.RETRY_DELAYS) + 1)
    programs.expect("ssh", ...)  # -O exit
    with pytest.raises(StepError) as error, ssh.Ssh(cfg).connection():
        pytest.fail("no connection")
    assert len(pauses) == len(ssh.RETRY_DELAYS)
    e = error.value
    assert e.step == "connect" and e.code == 255
    assert "kex_exchange_identification: Connection closed by remote host" in str(e)
    assert "refused by the server 6 times" in e.message
    assert "MaxStartups" in e.hint and "gpu-box refused new ssh connections" in e.hint
    assert "password prompt" not in e.hint and "known_hosts" not in e.hint


@pytest.mark.parametrize("stderr", [
    "ssh: connect to host gpu-box port 22: Connection refused",
    "me@gpu-box: Permission denied (publickey).",
    "Host key verification failed.",
    "ssh: Could not resolve hostname gpu-box: Name or service not known",
])
def test_other_failures_are_not_tried_again(cfg, programs, pauses, stderr):
    master_refused(programs, 1, stderr)
    programs.expect("ssh", ...)  # -O exit
    with pytest.raises(StepError) as error, ssh.Ssh(cfg).connection():
        pytest.fail("no connection")
    assert pauses == []
    assert error.value.hint.startswith("Check that `ssh gpu-box` works")


def test_a_command_on_its_own_connection_is_tried_again(cfg, programs, pauses):
    # With the user's own multiplexing, or a client that cannot share one, each command may connect.
    programs.expect("server", "rundir", "runs", RUN_ID, code=255, stderr=REFUSED)
    programs.expect("server", "rundir", "runs", RUN_ID, out="/home/me/runs/r\n1000\n1000\n")
    assert ssh.Ssh(cfg).prepare(RUN_ID) == ("/home/me/runs/r", "1000:1000")
    assert len(pauses) == 1


def test_a_command_over_the_shared_connection_runs_once(cfg, programs, pauses):
    # It opens no connection of its own (a new session on the master's), which MaxStartups could refuse;
    # a 255 from it is the run's (a dropped connection), not a refusal to wait out.
    master_refused(programs, 0)
    programs.expect("ssh", ...)  # the master starts
    programs.expect("server", "stop", RUN_ID, code=255, stderr=REFUSED)
    programs.expect("server", "follow", RUN_ID, code=255, stderr=REFUSED)
    programs.expect("ssh", ...)  # -O exit
    err = []
    with ssh.Ssh(cfg).connection() as shared:
        with pytest.raises(StepError) as error:
            shared.stop(RUN_ID)
        assert shared.follow(RUN_ID, lambda text: None, err.append) == 255
    assert pauses == [] and "MaxStartups" not in error.value.hint and "".join(err) == REFUSED


def test_a_command_that_fails_there_is_not_tried_again(cfg, programs, pauses):
    # 255 from the server's own command, whose output merely mentions the words, is not a refusal.
    programs.expect("server", "stop", RUN_ID, code=255, stderr="Error: no such container\n")
    with pytest.raises(StepError):
        ssh.Ssh(cfg).stop(RUN_ID)
    assert pauses == []


def test_a_command_refused_every_time_gets_the_hint(cfg, programs, pauses):
    for _ in range(len(ssh.RETRY_DELAYS) + 1):
        programs.expect("server", "stop", RUN_ID, code=255, stderr=REFUSED)
    with pytest.raises(StepError) as error:
        ssh.Ssh(cfg).stop(RUN_ID)
    assert error.value.code == 255 and "MaxStartups" in error.value.hint


def test_a_stream_is_tried_again_and_the_refusal_is_not_shown(cfg, programs, pauses):
    programs.expect("server", "follow", RUN_ID, code=255, stderr=REFUSED)
    programs.expect("server", "follow", RUN_ID, stdout="hello\n", stderr="a warning\n")
    out, err = [], []
    code = ssh.Ssh(cfg).follow(RUN_ID, out.append, err.append)
    assert code == 0 and "".join(out) == "hello\n" and "".join(err) == "a warning\n"
    assert len(pauses) == 1


def test_a_stream_refused_every_time_fails_to_connect(cfg, programs, pauses):
    for _ in range(len(ssh.RETRY_DELAYS) + 1):
        programs.expect("server", "follow", RUN_ID, ..., code=255, stderr=REFUSED)
    err = []
    with pytest.raises(StepError) as error:
        ssh.Ssh(cfg).follow(RUN_ID, lambda text: None, err.append, start=["--detach", "image"], env={})
    # connect, not a dropped connection: the container was never started, the run does not go on.
    assert error.value.step == "connect" and error.value.code is None
    assert "MaxStartups" in error.value.hint and "kex_exchange_identification" in error.value.output
    assert err == []


def test_a_stream_that_fails_otherwise_shows_its_stderr_and_returns_its_code(cfg, programs, pauses):
    programs.expect("server", "follow", RUN_ID, code=255,
                    stderr="client_loop: send disconnect: Broken pipe\n")
    err = []
    assert ssh.Ssh(cfg).follow(RUN_ID, lambda text: None, err.append) == 255
    assert "".join(err) == "client_loop: send disconnect: Broken pipe\n" and pauses == []


@pytest.mark.parametrize("chunks", [["k"], ["s", "sh_"], ["kex_exchange_identification: "]])
def test_held_back_text_that_could_be_a_refusal_comes_out_when_the_stream_ends(chunks):
    err = []
    held = ssh._HeldBack(err.append)
    for chunk in chunks:
        held(chunk)
    assert err == []
    held.release()
    assert err == ["".join(chunks)]


def test_the_cells_stderr_is_not_held_back():
    err = []
    held = ssh._HeldBack(err.append)
    held("Traceback (most recent call last):\n")
    assert err == ["Traceback (most recent call last):\n"]
    held("kex_exchange_identification: printed by the cell\n")  # once through, all goes through
    assert len(err) == 2 and not held.refused()
    progress = []
    bar = ssh._HeldBack(progress.append)
    bar("  5%|▌         |\r")  # a bar without a newline: at once
    assert progress == ["  5%|▌         |\r"]
