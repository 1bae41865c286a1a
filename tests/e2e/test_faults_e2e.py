"""Faults injected for real: each gives an error naming the step and what to do, and loses nothing."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
from conftest import unavailable

SANDBOX_DIR = Path(os.environ.get("PYSTRIBUTED_SANDBOX", "/tmp/pystributed-sandbox"))
KEYS = SANDBOX_DIR / "ssh"


def pystributed(*args, wait=True):
    cmd = [sys.executable, "-m", "pystributed", *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)


def attach(run_id):
    return subprocess.run([sys.executable, "-c", f"import pystributed.main as r; r.attach({run_id!r})"],
                          capture_output=True, text=True, check=False, timeout=600)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A second sshd for the sandbox's user, which a test may break: kill its connections, or
    point it at a Docker engine that is not there."""

    def __init__(self, folder, docker_host):
        self.folder, self.port = folder, free_port()
        folder.mkdir(exist_ok=True)
        (folder / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {KEYS}/host_key\nPidFile {folder}/sshd.pid\n"
            f"AuthorizedKeysFile {KEYS}/authorized_keys\nAllowUsers pystributed\nPasswordAuthentication no\n"
            f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv DOCKER_HOST={docker_host}\n")
        host_key = (KEYS / "host_key.pub").read_text().split()[:2]
        self.known_hosts(" ".join(host_key))
        self.client(KEYS / "client_key")
        subprocess.run(["/usr/sbin/sshd", "-f", str(folder / "sshd_config"), "-E", str(folder / "sshd.log")],
                       check=True)
        for _ in range(100):  # sshd writes its pid file once it listens
            if (folder / "sshd.pid").exists() and (folder / "sshd.pid").read_text().strip():
                break
            time.sleep(0.05)
        self.pid = int((folder / "sshd.pid").read_text())

    def known_hosts(self, key):
        (self.folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {key}\n")

    def client(self, identity):
        (self.folder / "ssh_config").write_text(
            f"Host faulty\n  HostName 127.0.0.1\n  Port {self.port}\n  User pystributed\n  IdentityFile "
            f"{identity}\n  IdentitiesOnly yes\n  UserKnownHostsFile {self.folder}/known_hosts\n  "
            "StrictHostKeyChecking yes\n")

    def cut_connections(self):
        """Kill every process serving a connection (not the listener): the network is cut."""
        cut, parents = [], [str(self.pid)]
        while parents:
            children = subprocess.run(["pgrep", "-P", ",".join(parents)], capture_output=True, text=True,
                                      check=False).stdout.split()
            cut += children
            parents = children
        for pid in cut:
            with contextlib.suppress(ProcessLookupError):  # one that ended meanwhile (a command's child)
                os.kill(int(pid), signal.SIGKILL)
        return cut

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:  # a test stopped it already
            pass


@pytest.fixture
def server(sandbox, tmp_path, monkeypatch):
    servers = []

    def make(docker_host=None):
        s = Server(tmp_path / f"server{len(servers)}",
                   docker_host or sandbox.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"])
        servers.append(s)
        monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "faulty")
        monkeypatch.setenv("PYSTRIBUTED_SSH_OPTIONS", f"-F {s.folder}/ssh_config")
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def cell(tmp_path):
    def write(source):
        (tmp_path / "user_code.py").write_text(source)
    write("print('hello')\n")
    return write


def run_folders(tmp_path):
    return sorted(p.name for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")) \
        if (tmp_path / "results").exists() else []


def record(tmp_path):
    [path] = (tmp_path / "results" / ".runs").glob("*.json")
    return json.loads(path.read_text())


def test_unreachable_server(server, cell, monkeypatch, tmp_path):
    s = server()
    s.stop()
    time.sleep(0.2)
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: connect failed" in proc.stderr and "Connection refused" in proc.stderr
    assert "works from a terminal here" in proc.stderr
    assert "build" not in proc.stdout  # nothing was built for a server that is not there


def test_a_changed_host_key_is_refused(server, cell, tmp_path):
    s = server()
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    s.known_hosts(" ".join(Path(f"{other}.pub").read_text().split()[:2]))
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: connect failed" in proc.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
    assert "Host key verification failed" in proc.stderr


def test_refused_authentication(server, cell, tmp_path):
    s = server()
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    s.client(stranger)
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: connect failed" in proc.stderr and "Permission denied (publickey)" in proc.stderr


def test_registry_down(sandbox, cell, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", f"127.0.0.1:{free_port()}")
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: push failed" in proc.stderr and "connection refused" in proc.stderr.lower()
    assert "docker login 127.0.0.1:" in proc.stderr and "on this machine" in proc.stderr


@pytest.fixture
def private_registry(sandbox, tmp_path):
    """A registry on 127.0.0.1 that wants a login (htpasswd, user `u`, password `pw`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # bcrypt hashes, as the registry wants; in Python up to 3.12
        except ImportError:
            unavailable("the crypt module (Python < 3.13) makes the registry's password file")
    folder, port = tmp_path / "registry", free_port()
    folder.mkdir()
    (folder / "htpasswd").write_text(f"u:{crypt.crypt('pw', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    (folder / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder}/data\nhttp:\n  addr: "
        f"127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {folder}/htpasswd\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


def test_a_registry_that_refuses_us_says_where_to_log_in(sandbox, cell, private_registry, monkeypatch,
                                                         tmp_path):
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_REGISTRY", private_registry)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # our login, not root's
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: push failed" in proc.stderr and "no basic auth credentials" in proc.stderr
    assert f"docker login {private_registry}` on this machine" in proc.stderr
    # Logged in here but not on the server: the push goes through, the pull is refused there.
    subprocess.run(["docker", "login", "--username", "u", "--password-stdin", private_registry],
                   input="pw", text=True, capture_output=True, check=True)
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: pull failed" in proc.stderr
    assert f"docker login {private_registry}` on pystributed-sandbox" in proc.stderr


def test_remote_engine_down(server, cell, tmp_path):
    server(docker_host=f"unix:///tmp/pst-no-engine-{os.getpid()}.sock")
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: pull failed" in proc.stderr and "Cannot connect to the Docker daemon" in proc.stderr
    assert "Docker is not running on faulty" in proc.stderr


def test_killed_for_memory(sandbox, cell, monkeypatch):
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_RUN_ARGS", "--memory 32m --memory-swap 32m")
    cell("x = bytearray(300 * 1024 * 1024)\nprint('survived')\n")
    proc = pystributed("run")
    assert proc.returncode == 137
    assert "exit code 137" in proc.stderr and "most likely for running out of memory" in proc.stderr


def test_remote_disk_full(sandbox, cell, monkeypatch, tmp_path):
    full = Path(tempfile.mkdtemp(prefix="pst-small-disk-"))  # outside tmp_path: the ssh user must reach it
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(full)], check=True)
    try:
        monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", str(full))
        cell("import os\nopen(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'big'), 'wb').write(b'x' "
             "* 4_000_000)\n")
        proc = pystributed("run")
    finally:
        subprocess.run(["umount", str(full)], check=True)
        full.rmdir()
    assert proc.returncode == 1
    assert "error: OSError: [Errno 28] No space left on device" in proc.stderr


def wait_for_line(proc, text, timeout=60):
    deadline = time.time() + timeout
    for line in proc.stdout:
        if text in line:
            return
        assert time.time() < deadline
    raise AssertionError(f"{text!r} never came")


def test_a_dropped_connection_leaves_the_run_going_and_attach_gets_it_all(server, cell, tmp_path):
    s = server()
    cell("import os, time\nprint('started')\ntime.sleep(4)\n"
         "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'done.txt'), "
         "'w').write('finished')\nprint('finished')\n")
    proc = pystributed("run", wait=False)
    wait_for_line(proc, "started")
    assert s.cut_connections()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "error: run failed: the connection to faulty dropped" in err
    assert "The run goes on there" in err and "runner.attach(" in err
    assert run_folders(tmp_path) == []  # nothing partial presented as a result
    assert record(tmp_path)["status"] == "detached"
    run_id = record(tmp_path)["run_id"]
    attached = attach(run_id)
    assert attached.returncode == 0, attached.stderr
    assert "started\n" in attached.stdout and "finished\n" in attached.stdout
    assert (tmp_path / "results" / run_id / "done.txt").read_text() == "finished"
    assert record(tmp_path)["status"] == "succeeded"


def test_an_interrupted_copy_back_is_never_half_there_and_completes_later(server, cell, tmp_path):
    s = server()
    cell("import os\nwith open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'big.bin'), 'wb') as f:\n"
         "    for _ in range(400):\n        f.write(os.urandom(1 << 20))\n")
    proc = pystributed("run", wait=False)
    results = tmp_path / "results"
    deadline = time.time() + 120
    while not any(p.name.endswith(".partial") for p in results.glob(".*")):
        assert time.time() < deadline and proc.poll() is None, "the copy-back never started"
        time.sleep(0.01)
    s.cut_connections()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "error: fetch failed" in err and "fetch them again with runner.attach(" in err
    assert run_folders(tmp_path) == [] and not list(results.glob(".*.partial"))
    run_id = record(tmp_path)["run_id"]
    attached = attach(run_id)
    assert attached.returncode == 0, attached.stderr
    assert (results / run_id / "big.bin").stat().st_size == 400 << 20


def test_results_cannot_write_outside_the_results_folder(sandbox, cell, tmp_path):
    cell("import os\nr = os.environ['PYSTRIBUTED_RESULTS']\n"
         "os.symlink('/etc/passwd', os.path.join(r, 'passwd'))\nos.symlink('/tmp', os.path.join(r, 'tmp'))\n"
         "open(os.path.join(r, 'ok.txt'), 'w').write('ok')\n")
    proc = pystributed("run")
    assert proc.returncode == 0, proc.stderr
    [run_id] = run_folders(tmp_path)
    folder = tmp_path / "results" / run_id
    assert sorted(p.name for p in folder.iterdir()) == [".pystributed-state.json", "ok.txt", "output.log",
                                                        "run.json"]
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    [left_out] = [line for line in proc.stdout.splitlines() if "left out" in line]
    assert left_out.startswith("fetch: left out (not plain files inside the run folder): ")
    assert "./passwd" in left_out and "./tmp" in left_out


def test_bad_values_are_refused_or_quoted_and_nothing_is_executed(sandbox, cell, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", f"-oProxyCommand=touch {marker}")
    proc = pystributed("run")
    assert proc.returncode == 1 and "is not an ssh destination" in proc.stderr
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", "pystributed-sandbox")
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_IMAGE_NAME", "Bad Name;touch")
    proc = pystributed("run")
    assert proc.returncode == 1 and "is not a valid image name" in proc.stderr
    monkeypatch.delenv("PYSTRIBUTED_DOCKER_IMAGE_NAME")
    workdir = f"/tmp/pst runs/it's; touch {marker}; $(touch {marker}) `touch {marker}`"
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", workdir)
    cell("import os\nprint('ran in', os.environ['PYSTRIBUTED_RESULTS'])\n")
    proc = pystributed("run")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()  # the sandbox's "remote" is this machine: one check covers both sides
    [run_id] = run_folders(tmp_path)
    assert Path(workdir, run_id, "output.log").read_text() == "ran in /results\n"
    bad = pystributed("run", "../../etc/passwd")
    assert bad.returncode == 1 and "../../etc/passwd: no such file" in bad.stderr


def test_secrets_reach_the_run_and_nothing_else(sandbox, cell, monkeypatch, tmp_path):
    secret = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("PST_TOKEN", secret)
    monkeypatch.setenv("PYSTRIBUTED_SECRETS", "PST_TOKEN")
    cell("import os, time\nprint('token length', len(os.environ['PST_TOKEN']))\nprint('waiting', "
         "flush=True)\ntime.sleep(3)\n")
    proc = pystributed("run", wait=False)
    wait_for_line(proc, "waiting")
    # The remote is this machine: every command line of both sides is in one `ps`.
    command_lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert secret not in command_lines
    [run_id] = run_folders(tmp_path)
    folder = tmp_path / "results" / run_id
    assert "token length 20" in (folder / "output.log").read_text()
    assert secret not in (folder / "run.json").read_text()
    image = json.loads((folder / "run.json").read_text())["image"]
    for engine in ("local", "remote"):
        history = sandbox.docker(engine, "history", "--no-trunc", image).stdout
        inspect = sandbox.docker(engine, "image", "inspect", image).stdout
        assert history and secret not in history and secret not in inspect


def test_no_docker_engine_here(sandbox, cell, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix:///tmp/pst-no-engine-{os.getpid()}.sock")
    proc = pystributed("run")
    assert proc.returncode == 1
    assert "error: build failed" in proc.stderr and "Cannot connect to the Docker daemon" in proc.stderr
    assert "Is the Docker engine running here (`docker info`)?" in proc.stderr


def test_no_docker_binary_here(sandbox, cell, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").symlink_to("/usr/bin/ssh")
    monkeypatch.setenv("PATH", str(bin_dir))
    proc = subprocess.run([sys.executable, "-m", "pystributed", "run"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1
    assert "error: `docker` is not installed here (not found on PATH)" in proc.stderr


def test_two_kernels_in_one_folder_run_their_own_cells(sandbox, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from kernel import Kernel, stream_text

    kernels = [Kernel(tmp_path), Kernel(tmp_path)]
    try:
        for k in kernels:
            k.execute("import pystributed.main as runner")
        for i, k in enumerate(kernels):  # the second save overwrites user_code.py
            k.execute(f"%%save_for_remote\nimport time\ntime.sleep(1)\nprint('cell of kernel {i}')\n")
        with ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda k: k.execute("r = runner.main()\nprint('RUN', r.run_id)"), kernels))
    finally:
        for k in kernels:
            k.close()
    run_ids = []
    for i, (messages, reply) in enumerate(done):
        out = stream_text(messages)
        assert reply["status"] == "ok", out
        assert f"cell of kernel {i}\n" in out and f"cell of kernel {1 - i}" not in out
        run_ids.append(out.split("RUN ")[1].split()[0])
    assert run_ids[0] != run_ids[1]
    for i, run_id in enumerate(run_ids):
        assert (tmp_path / "results" / run_id / "output.log").read_text() == f"cell of kernel {i}\n"
