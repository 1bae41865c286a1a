"""Many runs at once against one server: 24 `python -m pystributed run` processes started together
against the sandbox, whose sshd keeps OpenSSH's default MaxStartups (10:30:100: while 10 connections
are not yet logged in, it drops 30% of new ones, more as there are more). The connections it drops
are tried again (places/ssh.py), so all 24 succeed, each with its own results.

Whether 24 processes on a small machine have more than 10 connections in their handshakes at the
same moment depends on its speed; so that the test does not, 10 other clients (TCP connections that
never say who they are, as a slow client's look to sshd) hold the start slots while the runs start,
until sshd has dropped some of the runs' connections, and for 2 seconds more: the server is as busy
as on a shared server where many start at once, and the runs must get through once it is less so."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

RUNS = 24
OTHER_CLIENTS = 10  # MaxStartups' first number


def test_24_runs_started_at_once_all_succeed_with_their_own_results(sandbox, tmp_path):
    ssh_dir = Path(sandbox.env["DOCKER_HOST"].removeprefix("unix://")).parents[1] / "ssh"
    assert "maxstartups" not in (ssh_dir / "sshd_config").read_text().lower(), \
        "the sandbox's sshd keeps the default"
    port = int(re.search(r"^Port ([0-9]+)$", (ssh_dir / "sshd_config").read_text(), re.MULTILINE).group(1))
    log = ssh_dir / "sshd.log"
    log_start = log.stat().st_size
    others = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(OTHER_CLIENTS)]
    env = {**os.environ, **sandbox.env}
    procs = []
    for index in range(RUNS):
        folder = tmp_path / f"kernel-{index}"
        folder.mkdir()
        (folder / "cell.py").write_text(
            "import os\n"
            f"print('index', {index})\n"
            f"open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'index.txt'), 'w').write('{index}')\n")
        procs.append(subprocess.Popen([sys.executable, "-m", "pystributed", "run", "cell.py"], cwd=folder,
                                      env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 30
        while "past MaxStartups" not in since(log, log_start) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)
    finally:
        for other in others:
            other.close()
    outcomes = [(proc, *proc.communicate(timeout=600)) for proc in procs]
    assert "past MaxStartups" in since(log, log_start), "sshd dropped none of the runs' connections"
    failed = [f"run {i}: exit "
              f"{p.returncode}\n{err}" for i, (p, _, err) in enumerate(outcomes) if p.returncode]
    assert not failed, f"{len(failed)} of {RUNS} failed:\n" + "\n".join(failed)
    run_ids = set()
    for index, (_, out, _) in enumerate(outcomes):
        results = tmp_path / f"kernel-{index}" / "results"
        (run_id,) = [name for name in os.listdir(results) if not name.startswith(".")]
        run_ids.add(run_id)
        assert f"index {index}\n" in out
        assert (results / run_id / "index.txt").read_text() == str(index)
        assert f"index {index}\n" in (results / run_id / "output.log").read_text()
    assert len(run_ids) == RUNS


def since(log, offset):
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
