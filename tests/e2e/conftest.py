"""End-to-end tests on the sandbox (scripts/sandbox.sh): a real local engine, a registry on
127.0.0.1 and a remote engine reached only through sshd. With CI=true a missing piece fails the
tests; elsewhere it skips them."""
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "scripts" / "sandbox.sh"


def unavailable(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the end-to-end sandbox is unavailable: {reason}")
    pytest.skip(reason)


def require_tools(*tools):
    """Each of TOOLS is on PATH, or the tests that need them are unavailable."""
    for tool in tools:
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False).returncode:
            unavailable(f"{tool} is not installed: run `scripts/sandbox.sh install --all`")


def sandbox_variables(*args):
    """What `scripts/sandbox.sh env ARGS` exports, as {name: value}."""
    out = subprocess.run([SANDBOX, "env", *args], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def pystributed(*args, check=True, timeout=300):
    """`python -m pystributed ARGS` (the installed package), in the current folder; the process."""
    proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                          check=False, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def registry_tags(registry, name):
    with urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list", timeout=10) as response:
        return json.load(response)["tags"] or []


def delete_from_registry(registry, name):
    """Every tag of the image NAME, deleted from the sandbox's registry (none where it was never pushed)."""
    base = f"http://{registry}/v2/{name}"
    try:
        tags = registry_tags(registry, name)
    except urllib.error.HTTPError:  # never pushed to
        return
    for tag in tags:
        head = urllib.request.Request(f"{base}/manifests/{tag}", method="HEAD", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                      "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(head, timeout=10) as response:
            digest = response.headers["Docker-Content-Digest"]
        urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/{digest}", method="DELETE"),
                               timeout=10).close()


@pytest.fixture(scope="session")
def sandbox_env():
    """The variables that point pystributed at the sandbox; the sandbox runs while tests do."""
    if os.geteuid() != 0:
        unavailable("the sandbox starts daemons and a user, so it needs root")
    require_tools("dockerd", "docker", "docker-registry", "sshd", "debootstrap", "fish", "tcsh")
    already_running = subprocess.run([SANDBOX, "status"], capture_output=True, check=False).returncode == 0
    subprocess.run([SANDBOX, "start"], check=True)
    env = sandbox_variables()
    yield env
    if not already_running:
        subprocess.run([SANDBOX, "stop"], check=True)


def rig(kind, tools, why_root):
    """Start the rig `kind` (scripts/sandbox.sh start --swarm, --slurm) beside the sandbox, unless it
    runs; yield its variables; stop it afterwards if it was started here. Unavailable (a failure under
    CI=true) when it cannot start."""
    if os.geteuid() != 0:
        unavailable(f"the {kind} rig {why_root}, so it needs root")
    require_tools(*tools)
    running = subprocess.run([SANDBOX, "status", f"--{kind}"], capture_output=True,
                             check=False).returncode == 0
    started = subprocess.run([SANDBOX, "start", f"--{kind}"], capture_output=True, text=True, check=False)
    if started.returncode:
        unavailable(f"the {kind} rig did not start:\n{started.stderr[-3000:]}")
    yield sandbox_variables(f"--{kind}")
    if not running:
        subprocess.run([SANDBOX, "stop", f"--{kind}"], check=False)


def rig_fixtures(kind, tools, why_root, make, *, name):
    """The fixtures of a rig's tests: `{kind}_env`, its variables (the rig runs while the module's
    tests do), and `name`, pystributed aimed at it for one test in its own folder, the test given
    `make(variables, folder)` (its checks of the rig, of what was started from the test's folder)."""
    @pytest.fixture(scope="module", name=f"{kind}_env")
    def variables(sandbox_env):
        yield from rig(kind, tools, why_root)

    @pytest.fixture(name=name)
    def aimed(request, monkeypatch, tmp_path):
        yield from on_rig(make(request.getfixturevalue(f"{kind}_env"), tmp_path), monkeypatch, tmp_path)

    return variables, aimed


# A sweep's task that holds for its parameter `hold` (seconds), and whose `finally:` leaves a mark.
LONG = ("import os, time\n"
        "try:\n"
        "    print('started', flush=True)\n"
        "    time.sleep(hold)\n"
        "finally:\n"
        "    open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'finally.txt'), 'w').write('ran')\n")


def long_sweep(*holds):
    """A detached sweep of LONG (saved in the current folder), a task per hold; its id."""
    Path("long.py").write_text(LONG)
    return pystributed("sweep", "long.py", "--param", "hold=" + ",".join(map(str, holds)), "--detach",
                       "-q").stdout.strip()


def cancel_once_the_first_ended(sweep_id, containers, expected, wait=90):
    """`cancel` of a long_sweep whose first hold is 0, once `containers()` (the sweep's running ones)
    is `expected` and `status` has seen the first task end (no one fetched it: the sweep is
    detached), within `wait` seconds; cancel's output."""
    deadline = time.time() + wait
    while not ("ended, not fetched yet" in pystributed("status", sweep_id).stdout
               and containers() == expected):
        assert time.time() < deadline, pystributed("status", sweep_id).stdout
        time.sleep(1)
    return pystributed("cancel", sweep_id)


def flaky_cell(always):
    """A sweep's cell: x = 1 fails its first attempt, x = `always` every one (line 5); the others print."""
    return ("import os\n"
            "if x == 1 and os.environ.get('PYSTRIBUTED_ATTEMPT', '1') == '1':\n"
            "    raise RuntimeError('flaky the first time')\n"
            f"if x == {always}:\n"
            "    raise ValueError(f'x is {x}')\n"
            "print('fine', x, os.environ['PYSTRIBUTED_TASK'])\n")


def two_tasks_per_container(monkeypatch):
    """A sweep of 5 tasks with TASKS_PER_CONTAINER = 2 and --retries 1 (in the current folder): task 1
    fails once, task 2 always. Each task keeps its own folder, output, state, traceback and retry."""
    monkeypatch.setenv("PYSTRIBUTED_TASKS_PER_CONTAINER", "2")
    Path("cell.py").write_text(flaky_cell(2))
    proc = pystributed("sweep", "cell.py", "--param", "x=0,1,2,3,4", "--retries", "1", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    folder = next(p for p in Path("results").iterdir() if p.name.startswith("sweep-"))
    record = json.loads((folder / "sweep.json").read_text())
    tasks = record["tasks"]
    assert record["per_container"] == 2 and len(record["services"]) == 3  # the first three, then the retries
    assert [t["status"] for t in tasks] == ["succeeded", "succeeded", "failed", "succeeded",
                                            "succeeded"], proc.stdout
    assert [t["attempts"] for t in tasks] == [1, 2, 2, 1, 1]
    assert tasks[2]["error"].startswith("ValueError: x is 2") and 'line 5, in <module>' in tasks[2]["error"]
    for index in (0, 3, 4):  # each its own folder, output and state
        assert (folder / str(index) / "output.log").read_text() == f"fine {index} {index}\n"
        assert json.loads((folder / str(index)
                           / ".pystributed-state.json").read_text())["State"]["ExitCode"] == 0
    assert "fine 1 1" in (folder / "1" / "output.log").read_text()


def interrupted_attach(sweep_id, *, after):
    """`attach SWEEP`, sent SIGINT (as Ctrl-C) once it has followed for `after` seconds; the process. It
    starts with SIGINT's default action, as from a terminal: a suite started in the background of a
    non-interactive shell (`bash .ci/run &`) ignores SIGINT, and a Python started so keeps ignoring it."""
    proc = subprocess.Popen([sys.executable, "-m", "pystributed", "attach", sweep_id], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def interrupted_then_attached(sweep_id, goes_on, *, tasks=3, after=4):
    """`attach SWEEP` interrupted after `after` seconds exits 130 without a traceback, the sweep going
    on (`goes_on()`); a later attach from a new process brings every task's folder: their folder
    (in the current one, the test's)."""
    code, out, err = interrupted_attach(sweep_id, after=after)
    assert code == 130 and "Traceback" not in err, out + err
    assert goes_on(), "the sweep goes on"
    done = pystributed("attach", sweep_id, timeout=180)
    folder = Path("results") / sweep_id
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [str(i) for i in range(tasks)], \
        done.stdout
    assert json.loads((folder / "sweep.json").read_text())["status"] == "succeeded"
    return folder


def on_rig(rig, monkeypatch, folder):
    """pystributed aimed at a rig (its variables, no config file named), in `folder`; `rig` (its
    checks) for the test, then whatever the test left on it is named and removed: what the test
    started (own_ids), never the whole rig's, which other tests and users share."""
    for name, value in rig.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PYSTRIBUTED_CONFIG", raising=False)
    monkeypatch.chdir(folder)
    yield rig
    rig.assert_nothing_left()


def own_ids(folder):
    """The ids of the runs and sweeps started from `folder` (a test's own): the names of their records
    below it (LOCAL_RESULTS_DIR/.runs/, .sweeps/, saved as each starts). A test checks what these made,
    not a whole engine, swarm or queue: another test's or user's detached run may be there, rightly."""
    return {p.stem for p in Path(folder).rglob("*.json") if p.parent.name in (".runs", ".sweeps")}


def owned(name, ids):
    """Whether `name` (a service's, a secret's, a Slurm job's, a container's pystributed.run label)
    belongs to one of `ids`: the id, or its task, retry or secret (ID-INDEX-ATTEMPT, ID-s0)."""
    name = name.removeprefix("pystributed-")
    return any(name == i or name.startswith(i + "-") for i in ids)


@pytest.fixture
def sandbox(sandbox_env, monkeypatch):
    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    return Sandbox(sandbox_env)


class Sandbox:
    def __init__(self, env):
        self.env = env
        self.registry = env["PYSTRIBUTED_DOCKER_REGISTRY"]
        self.ssh = ["ssh", *shlex.split(env["PYSTRIBUTED_SSH_OPTIONS"]), env["PYSTRIBUTED_REMOTE_SERVER"]]

    def docker(self, engine, *args):
        """Run docker on the 'local' or the 'remote' engine directly (as root), for checking."""
        host = (self.env["DOCKER_HOST"] if engine == "local"
                else self.env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"])
        return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True, check=False)

    def remote_shell(self, script):
        return subprocess.run([*self.ssh, script], capture_output=True, text=True, check=True).stdout

    def registry_tags(self, name="pystributed"):
        return registry_tags(self.registry, name)

    def container_events(self, engine, run_id, since):
        out = self.docker(engine, "events", "--since", str(int(since) - 1),
                          "--until", str(int(time.time()) + 1),
                          "--filter", f"label=pystributed.run={run_id}", "--format", "{{.Action}}").stdout
        return out.split()

    def counting_logins(self, monkeypatch):
        """pystributed's ssh from here on connects from a loopback address of its own (other runs on
        the shared sshd are not counted); a function that answers how many logins sshd has logged
        from it since now (only what the log gains: it outlives the sandbox's restarts)."""
        address = f"127.0.{secrets.randbelow(250) + 2}.{secrets.randbelow(250) + 2}"
        monkeypatch.setenv("PYSTRIBUTED_SSH_OPTIONS", f"{self.env['PYSTRIBUTED_SSH_OPTIONS']} -b {address}")
        log = Path(os.environ.get("PYSTRIBUTED_SANDBOX", "/tmp/pystributed-sandbox")) / "ssh" / "sshd.log"
        since = log.stat().st_size

        def logins():
            with open(log, "rb") as f:
                f.seek(since)
                lines = f.read().decode(errors="replace").splitlines()
            return sum(line.startswith("Accepted publickey") and f" from {address} " in line
                       for line in lines)
        return logins

    def assert_ran_remotely(self, run_folder, started):
        """The run's image crossed the registry, and its container ran on the remote engine only."""
        run_id = run_folder.name
        image = json.loads((run_folder / "run.json").read_text())["image"]
        assert image.startswith(f"{self.registry}/pystributed:")
        assert image.rsplit(":", 1)[1] in self.registry_tags()
        assert self.docker("remote", "image", "inspect", image).returncode == 0
        assert "start" in self.container_events("remote", run_id, started)
        assert self.container_events("local", run_id, started) == []


# The sandbox's login users (scripts/sandbox.sh), by their login shell: the Host alias of each in the
# sandbox's ssh_config, the user, and the line its startup files print to stdout before the output
# of every command run over ssh (None: a quiet one).
LOGIN_USERS = {"bash": "pystributed-sandbox", "fish": "pystributed-sandbox-fish",
               "tcsh": "pystributed-sandbox-tcsh", "noisy-bashrc": "pystributed-sandbox-noisy"}
LOGIN_USER_NAMES = {"bash": "pystributed", "fish": "pystributed-fish", "tcsh": "pystributed-tcsh",
                    "noisy-bashrc": "pystributed-noisy"}
LOGIN_BANNERS = {"bash": None, "fish": "Welcome to fish on the GPU box",
                 "tcsh": "Welcome to tcsh on the GPU box",
                 "noisy-bashrc": "Welcome to the GPU cluster! conda base activated"}


def login_user_params(shells=tuple(LOGIN_USERS)):
    """For @pytest.mark.parametrize("login", login_user_params(), indirect=True), or as the params
    of a fixture: one param per login shell, its id the shell's name."""
    return [pytest.param(shell, id=shell) for shell in shells]


class LoginUser:
    def __init__(self, sandbox, shell):
        self.shell, self.alias, self.user = shell, LOGIN_USERS[shell], LOGIN_USER_NAMES[shell]
        self.banner = LOGIN_BANNERS[shell]
        self.home = Path(os.path.expanduser(f"~{self.user}"))
        self.env = {**sandbox.env, "PYSTRIBUTED_REMOTE_SERVER": self.alias}
        self.ssh = ["ssh", *shlex.split(sandbox.env["PYSTRIBUTED_SSH_OPTIONS"]), self.alias]


@pytest.fixture(params=login_user_params())
def login(request, sandbox, monkeypatch):
    """Each of the sandbox's login users in turn; PYSTRIBUTED_REMOTE_SERVER is its Host alias."""
    user = LoginUser(sandbox, request.param)
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_SERVER", user.alias)
    return user


# A run that prints, then holds, and whose `finally:` leaves a mark.
LONG_RUN = ("import os, time\n"
            "try:\n"
            "    print('started', flush=True)\n"
            "    time.sleep(300)\n"
            "finally:\n"
            "    open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'finally.txt'), 'w').write('ran')\n")


def a_cluster_run_followed_then_cancelled(folder):
    """`submit` a long run; `logs -f RUN` from another process shows its output while it runs (on a
    cluster no survey lists its container: the scheduler holds it); `cancel RUN` stops it, its
    `finally:` runs, and it shows as cancelled; `fetch RUN` brings its folder. The run id."""
    (folder / "long.py").write_text(LONG_RUN)
    run_id = pystributed("submit", "long.py").stdout.strip()
    follow = subprocess.Popen([sys.executable, "-m", "pystributed", "logs", "-f", run_id],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 180
    while "started\n" not in lines:
        assert time.time() < deadline and follow.poll() is None, (lines, follow.poll())
        time.sleep(0.5)
    cancelled = pystributed("cancel", run_id, check=False, timeout=240)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    follow.wait(timeout=120)  # it ends with the run
    status = pystributed("status", run_id)
    assert "cancelled" in status.stdout, status.stdout
    pystributed("fetch", run_id)
    assert (folder / "results" / run_id / "finally.txt").read_text() == "ran"
    return run_id
