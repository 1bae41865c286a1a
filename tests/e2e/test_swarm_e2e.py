"""End-to-end on a real Docker Swarm of three nodes (scripts/swarm_rig.sh, through `sandbox.sh start
--swarm`): each node a dockerd and an sshd in its own network namespace, with 2 fake GPUs that Swarm
counts, and a home of its own (a run folder on one node is not on the others). The rig forms the swarm
with `python -m pystributed cluster init`. With CI=true a rig that cannot start fails these tests."""
import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    LONG,
    SANDBOX,
    a_cluster_run_followed_then_cancelled,
    cancel_once_the_first_ended,
    flaky_cell,
    interrupted_then_attached,
    long_sweep,
    own_ids,
    owned,
    pystributed,
    rig_fixtures,
    two_tasks_per_container,
)
from kernel import Kernel, error_of, stream_text
from test_jobs_e2e import detached_by_an_interrupt_then_attached

GPUS = {f"GPU-7700000{n}-0000-4000-8000-{g:012d}": f"pystributed-swarm{n}" for n in (1, 2, 3) for g in (0, 1)}


# swarm_env: the variables that point pystributed at the rig's manager (the sandbox, whose registry and
# base image it uses, is sandbox_env's to start and stop); swarm: a test's view of the rig.
swarm_env, swarm = rig_fixtures("swarm", ["dockerd", "docker", "docker-registry", "sshd", "debootstrap",
                                          "nsenter", "unshare", "ip"],
                                "makes network namespaces and starts daemons",
                                lambda *made: Rig(*made), name="swarm")


class Rig:
    """The rig, as a test sees it: what the test started from its folder (conftest.own_ids) is all
    it counts, checks or removes; other tests and users share the swarm."""

    def __init__(self, env, folder):
        self.env, self.dir, self.folder = env, Path(env["PYSTRIBUTED_SANDBOX_SWARM_DIR"]), folder

    def docker(self, node, *args):
        """docker on node N's engine directly (as root, for checking)."""
        return subprocess.run(["docker", "-H", f"unix://{self.dir}/node{node}/docker.sock", *args],
                              capture_output=True, text=True, check=False)

    def home(self, node):
        return self.dir / f"node{node}" / "home"

    def services(self):
        """The names of the test's services."""
        return self._own(self.docker(1, "service", "ls", "--format", "{{.Name}}").stdout.split())

    def secrets(self):
        """The names of the test's Swarm secrets."""
        return self._own(self.docker(1, "secret", "ls", "--format", "{{.Name}}").stdout.split())

    def containers(self, node, *, stopped=True):
        """The ids of the test's containers on node N (labelled pystributed.run with its ids); the
        running ones only, unless `stopped`."""
        out = self.docker(node, "ps", *(["--all"] if stopped else []), "--format",
                          '{{.ID}} {{.Label "pystributed.run"}}').stdout
        labelled = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
        return [container for container, run in labelled.items() if self._own([run])]

    def running(self):
        """{node: how many of the test's containers run there}."""
        return {n: len(self.containers(n, stopped=False)) for n in (1, 2, 3)}

    def _own(self, names):
        ids = own_ids(self.folder)
        return [name for name in names if owned(name, ids)]

    def assert_nothing_left(self):
        services = self.services()
        containers = {n: self.containers(n) for n in (1, 2, 3)}
        for service in services:  # for the next test
            self.docker(1, "service", "rm", service)
        for node, ids in containers.items():
            if ids:
                self.docker(node, "rm", "--force", *ids)
        assert services == [], services
        assert all(ids == [] for ids in containers.values()), containers


def sweep_folder(cwd="."):
    found = [p for p in Path(cwd, "results").iterdir() if p.name.startswith("sweep-")]
    assert len(found) == 1, found
    return found[0]


def state(folder):
    return json.loads((folder / ".pystributed-state.json").read_text())


def test_cluster_init_formed_the_swarm_and_status_shows_its_gpus(swarm):
    log = (swarm.dir / "cluster-init.log").read_text()
    assert "pystributed-swarm1: swarm initialised, a manager" in log, log
    assert ("pystributed-swarm2: joined as a worker" in log
            and "pystributed-swarm3: joined as a worker" in log), log
    # What each daemon.json needs: the GPUs are counted already (node-generic-resources),
    # the runtime is not nvidia.
    assert '"default-runtime": "nvidia"' in log and "swarm-resource" in log
    assert '"node-generic-resources"' not in log
    # Again, on the swarm it made: nothing changes.
    again = pystributed("cluster", "init", "pystributed-swarm1", "pystributed-swarm2", "pystributed-swarm3")
    assert "pystributed-swarm1: a manager of its swarm already" in again.stdout
    assert "pystributed-swarm3: in this swarm already" in again.stdout
    status = pystributed("cluster", "status").stdout
    for uuid in GPUS:
        assert f"{uuid} (free)" in status, status
    assert status.count("ready/active") == 3 and "manager" in status
    nodes = swarm.docker(1, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
    assert len([n for n in nodes if n.strip()]) == 3


SWEEP_CELL = """%%remote --sweep lr=0.1,0.01,0.001 --sweep seed=0,1,2,3 --out loss
import json, os, time
started = time.time()
time.sleep(3)
info = {"task": os.environ["PYSTRIBUTED_TASK"], "gpu": os.environ["CUDA_VISIBLE_DEVICES"], "lr": lr,
        "seed": seed, "started": started, "ended": time.time()}
json.dump(info, open(os.path.join(os.environ["PYSTRIBUTED_RESULTS"], "info.json"), "w"))
loss = lr * seed
"""


def test_a_sweep_of_12_tasks_over_6_gpus_from_a_notebook(swarm, tmp_path):
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")
        kernel.execute("lr, seed = 'not', 'these'")  # the task's own values come before the cell
        started = time.time()
        messages, reply = kernel.execute(SWEEP_CELL, timeout=300)
        took = time.time() - started
        assert reply["status"] == "ok", error_of(messages)
        messages, _ = kernel.execute("print(loss); print(_.statuses)")
        out = stream_text(messages)
    finally:
        kernel.close()
    params = [(lr, seed) for lr in (0.1, 0.01, 0.001) for seed in (0, 1, 2, 3)]
    assert out.splitlines()[0] == repr([lr * seed for lr, seed in params]), out
    assert out.splitlines()[1] == repr(["succeeded"] * 12)
    folder = sweep_folder(tmp_path)
    infos = [json.loads((folder / str(i) / "info.json").read_text()) for i in range(12)]
    assert [(i["lr"], i["seed"]) for i in infos] == params
    assert [i["task"] for i in infos] == [str(i) for i in range(12)]
    # Every node ran tasks, each task saw the GPU Swarm gave it, and no two running tasks shared a GPU.
    states = [state(folder / str(i)) for i in range(12)]
    assert [s["Gpus"] for s in states] == [i["gpu"] for i in infos]
    assert {GPUS[i["gpu"]] for i in infos} == {"pystributed-swarm1", "pystributed-swarm2",
                                               "pystributed-swarm3"}
    for a in infos:
        for b in infos:
            if a is not b and a["gpu"] == b["gpu"]:
                assert a["ended"] <= b["started"] or b["ended"] <= a["started"], (a, b)
    # Each task's folder came back from the node it ran on (and only that node has it).
    for i, info in enumerate(infos):
        node = int(GPUS[info["gpu"]][-1])
        remote = swarm.home(node) / "pystributed-runs" / folder.name / str(i)
        assert (remote / "info.json").exists(), remote
        assert (folder / str(i) / "output.log").exists()
        others = [n for n in (1, 2, 3) if n != node]
        assert not any((swarm.home(n) / "pystributed-runs" / folder.name / str(i)).exists() for n in others)
    assert took < 120, took


def test_a_failing_task_is_reported_while_the_others_succeed_and_retries(swarm, tmp_path):
    (tmp_path / "cell.py").write_text(flaky_cell(3))
    proc = pystributed("sweep", "cell.py", "--param", "x=0,1,2,3", "--retries", "1", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    record = json.loads((sweep_folder() / "sweep.json").read_text())
    tasks = record["tasks"]
    assert [t["status"] for t in tasks] == ["succeeded", "succeeded", "succeeded", "failed"], proc.stdout
    assert [t["attempts"] for t in tasks] == [1, 2, 1, 2]
    assert tasks[3]["error"].startswith("ValueError: x is 3") and 'line 5, in <module>' in tasks[3]["error"]
    assert "failed (attempt 2): ValueError: x is 3" in proc.stdout
    assert "RuntimeError: flaky the first time" not in (sweep_folder() / "1" / "output.log").read_text()
    assert "fine 1" in (sweep_folder() / "1" / "output.log").read_text()


def test_tasks_per_container_keeps_each_tasks_folder_exit_code_traceback_and_retry(swarm, monkeypatch):
    # containers of tasks 0-1, 2-3, 4; the job, and a retry each of 1 and 2
    two_tasks_per_container(monkeypatch)


def test_cancel_mid_sweep_stops_every_task_and_leaves_nothing(swarm, tmp_path):
    sweep_id = long_sweep(*[120] * 8)
    deadline = time.time() + 60
    while time.time() < deadline:  # until six run (two wait in the queue)
        running = sum(swarm.running().values())
        if running == 6:
            break
        time.sleep(0.5)
    assert running == 6
    time.sleep(2)
    started = time.time()
    proc = pystributed("cancel", sweep_id)
    assert time.time() - started < 30
    assert proc.stdout.count("cancelled") >= 8, proc.stdout
    folder = tmp_path / "results" / sweep_id
    ran = [p for p in folder.iterdir() if p.is_dir()]
    assert len(ran) == 6, ran
    for task in ran:  # the cell got a KeyboardInterrupt: its `finally:` ran, and its results came back
        assert (task / "finally.txt").read_text() == "ran"
        assert state(task)["State"]["ExitCode"] == 130 and state(task)["Cancelled"] is True
    # (the fixture checks that none of the test's services or containers is left on any node)


def test_a_cancel_leaves_a_task_that_ended_before_it_succeeded_and_fetched(swarm, tmp_path):
    sweep_id = long_sweep(0, 120)  # (6 GPUs: both start; Swarm may start either first)
    proc = cancel_once_the_first_ended(sweep_id, lambda: sum(swarm.running().values()), 1)
    assert "1 succeeded, 0 failed, 1 cancelled" in proc.stdout, proc.stdout
    folder = tmp_path / "results" / sweep_id
    assert state(folder / "0")["State"]["ExitCode"] == 0 and not state(folder / "0").get("Cancelled")
    assert (state(folder / "1")["State"]["ExitCode"] == 130
            and (folder / "1" / "finally.txt").read_text() == "ran")


def test_detach_then_attach_from_a_new_kernel(swarm, tmp_path):
    first = Kernel(tmp_path)
    try:
        first.execute("import pystributed.main as runner")
        messages, reply = first.execute("%%remote --sweep x=1,2,3 --out y --detach\n"
                                        "import time\ntime.sleep(4)\ny = x * 10\n")
        assert reply["status"] == "ok", error_of(messages)
        messages, _ = first.execute("print(_.sweep_id)")
        sweep_id = stream_text(messages).strip()
    finally:
        first.close()
    second = Kernel(tmp_path)
    try:
        second.execute("import pystributed.main as runner")
        messages, reply = second.execute(f"result = runner.attach({sweep_id!r})\nprint(y, result.statuses)")
        assert reply["status"] == "ok", error_of(messages)
        assert stream_text(messages).strip().endswith("[10, 20, 30] ['succeeded', 'succeeded', 'succeeded']")
    finally:
        second.close()


def test_runner_sweep_from_python_after_save_for_remote_declares_the_parameters(swarm, tmp_path):
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")
        messages, reply = kernel.execute("%%save_for_remote --sweep a --sweep b\nc = a + b\n")
        assert reply["status"] == "ok", error_of(messages)
        messages, reply = kernel.execute("r = runner.sweep(a=[1, 2], b=[10], out=['c'], quiet=True)\n"
                                         "print(c, r.params, r.statuses, runner.status(r.sweep_id).statuses)")
        assert reply["status"] == "ok", error_of(messages)
    finally:
        kernel.close()
    assert stream_text(messages).strip() == ("[11, 12] [{'a': 1, 'b': 10}, {'a': 2, 'b': 10}] "
                                             "['succeeded', 'succeeded'] ['succeeded', 'succeeded']")


def test_a_single_run_waits_in_the_queue_while_every_gpu_is_taken(swarm, tmp_path):
    (tmp_path / "hold.py").write_text("import time\ntime.sleep(hold)\n")
    (tmp_path / "one.py").write_text("import os\nshm = os.statvfs('/dev/shm')\nprint('single run on', "
                                     "os.environ['CUDA_VISIBLE_DEVICES'], 'shm GiB', "
                                     "shm.f_blocks * shm.f_frsize >> 30)\n")
    sweep_id = pystributed("sweep", "hold.py", "--param", "hold=10,10,10,10,10,10", "--detach",
                           "-q").stdout.strip()
    deadline = time.time() + 60
    while sum(swarm.running().values()) < 6:
        assert time.time() < deadline
        time.sleep(0.5)
    proc = pystributed("run", "one.py")
    assert "queued: no suitable node (insufficient resources on 3 nodes)" in proc.stdout, proc.stdout
    gpu = proc.stdout.split("single run on ")[1].split()[0]
    assert gpu in GPUS and f"single run on {gpu} shm GiB 8\n" in proc.stdout  # a service's /dev/shm too
    assert proc.stdout.index("queued:") < proc.stdout.index("placed on") < proc.stdout.index("single run on")
    run = next(p for p in (tmp_path / "results").iterdir() if not p.name.startswith(("sweep-", ".")))
    assert "single run on" in (run / "output.log").read_text()
    assert state(run)["State"]["ExitCode"] == 0
    pystributed("attach", "-q", sweep_id)


def test_interrupting_the_kernel_stops_every_task_and_the_display_updates_in_place(swarm, tmp_path):
    kernel = Kernel(tmp_path)
    try:
        kernel.execute("import pystributed.main as runner")

        def interrupt_when_six_run():
            deadline = time.time() + 120
            while time.time() < deadline:
                if sum(swarm.running().values()) == 6:
                    time.sleep(2)
                    kernel.interrupt()
                    return
                time.sleep(0.5)

        watcher = threading.Thread(target=interrupt_when_six_run)
        watcher.start()
        messages, reply = kernel.execute("%%remote --sweep hold=120,120,120,120,120,120,120,120\n" + LONG,
                                         timeout=180)
        watcher.join()
    finally:
        kernel.close()
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "Interrupted: stopping every task of sweep-" in stream_text(messages)
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")
             and "sweep-" in m["content"]["data"].get("text/html", "")]
    ids = {m["content"].get("transient", {}).get("display_id") for m in shown}
    assert len(ids) == 1 and len(shown) >= 3, [m["msg_type"] for m in shown]  # one display, updated in place
    assert "<b>6</b> running" in "".join(m["content"]["data"]["text/html"] for m in shown)
    folder = sweep_folder(tmp_path)
    ran = [p for p in folder.iterdir() if p.is_dir()]
    assert len(ran) == 6 and all((p / "finally.txt").read_text() == "ran" for p in ran)
    record = json.loads((folder / "sweep.json").read_text())
    assert [t["status"] for t in record["tasks"]] == ["cancelled"] * 8


def test_a_sweep_on_one_server_runs_max_concurrent_at_a_time(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSTRIBUTED_MAX_CONCURRENT", "2")
    (tmp_path / "cell.py").write_text(
        "import json, os, time\n"
        "started = time.time()\n"
        "time.sleep(2)\n"
        "json.dump([started, time.time()], "
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 't.json'), 'w'))\n"
        "if x == 2:\n"
        "    raise ValueError('two')\n")
    proc = pystributed("sweep", "cell.py", "--param", "x=0,1,2,3", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    folder = sweep_folder(tmp_path)
    record = json.loads((folder / "sweep.json").read_text())
    assert [t["status"] for t in record["tasks"]] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert record["tasks"][2]["error"].startswith("ValueError: two")
    spans = [json.loads((folder / str(i) / "t.json").read_text()) for i in range(4)]
    for moment in [s for span in spans for s in span]:
        assert sum(1 for a, b in spans if a < moment < b) <= 2  # never more than MAX_CONCURRENT at once
    assert "ValueError: two" in (folder / "2" / "output.log").read_text()
    remote = sandbox.remote_shell(f"ls pystributed-runs/{folder.name}").split()
    assert remote == ["0", "1", "2", "3"]
    assert sandbox.docker("remote", "ps", "-aq", "--filter", f"name=pystributed-{folder.name}").stdout == ""


def poll_listing(sweep_id, state, *, timeout=60):
    """`list` until the sweep's row says `state`; its output."""
    deadline = time.time() + timeout
    while True:
        listing = pystributed("list").stdout
        row = next((line for line in listing.splitlines() if line.startswith(sweep_id)), "")
        if f"  {state}  " in row:
            return listing
        assert time.time() < deadline, listing
        time.sleep(0.5)


@pytest.fixture
def own(monkeypatch, tmp_path):
    """A REMOTE_WORKDIR and an image name of this test's own (so that `clean` touches nothing else's); the
    images it built here are removed afterwards. {"workdir", "image"}."""
    token = secrets.token_hex(3)
    workdir, image = f"sweep-clean-{token}", f"pystributed-test-sweep-clean-{token}"
    monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", workdir)
    monkeypatch.setenv("PYSTRIBUTED_DOCKER_IMAGE_NAME", image)
    (tmp_path / "hold.py").write_text("import time\ntime.sleep(hold)\n")
    yield {"workdir": workdir, "image": image}
    local = subprocess.run(["docker", "image", "ls", "--quiet", "--filter", f"reference=*/{image}"],
                           capture_output=True, text=True, check=False).stdout.split()
    if local:
        subprocess.run(["docker", "image", "rm", "--force", *set(local)], capture_output=True, check=False)


def test_list_and_clean_show_and_remove_an_ended_sweep_on_the_swarm_never_one_going(swarm, own):
    sweep_id = pystributed("sweep", "hold.py", "--param", "hold=0,10", "--detach", "-q").stdout.strip()
    poll_listing(sweep_id, "2 tasks: 1 running, 1 succeeded")
    kept = pystributed("clean", "--older-than", "0s", "--yes").stdout
    assert (f"Kept, still running or starting: {sweep_id}" in kept
            and sweep_id not in kept.split("Kept")[0]), kept
    listing = poll_listing(sweep_id, "2 tasks: 2 succeeded")
    assert f"pystributed-{sweep_id}" in swarm.docker(1, "service", "ls", "--format", "{{.Name}}").stdout
    cleaned = pystributed("clean", "--older-than", "0s", "--yes").stdout
    assert (f"  services   pystributed-{sweep_id}  (sweep {sweep_id}: 2 tasks: 2 succeeded)"
            in cleaned), cleaned
    assert f"/{own['workdir']}/{sweep_id}  (2 tasks: 2 succeeded, last changed " in cleaned, cleaned
    assert cleaned.endswith("Removed.\n"), cleaned
    assert not any((swarm.home(n) / own["workdir"] / sweep_id).exists() for n in (1, 2, 3))
    assert sweep_id not in pystributed("list").stdout, listing
    # (the fixture checks that none of the test's services or containers is left on any node)


def test_list_and_clean_of_a_sweep_on_one_server(sandbox, own, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSTRIBUTED_MAX_CONCURRENT", "2")
    try:
        sweep_id = pystributed("sweep", "hold.py", "--param", "hold=0,6", "--detach", "-q").stdout.strip()
        poll_listing(sweep_id, "2 tasks: 1 running, 1 succeeded")
        kept = pystributed("clean", "--older-than", "0s", "--yes").stdout
        assert (f"Kept, still running or starting: {sweep_id}" in kept
                and sweep_id not in kept.split("Kept")[0]), kept
        poll_listing(sweep_id, "2 tasks: 2 succeeded")
        cleaned = pystributed("clean", "--older-than", "0s", "--yes").stdout
        assert (f"  containers pystributed-{sweep_id}-0, pystributed-{sweep_id}-1  (sweep {sweep_id}: "
                "2 tasks: 2 succeeded; their logs and states are saved first)") in cleaned, cleaned
        assert f"/{own['workdir']}/{sweep_id}  (2 tasks: 2 succeeded, last changed " in cleaned, cleaned
        assert sandbox.docker("remote", "ps", "-aq", "--filter", f"name=pystributed-{sweep_id}").stdout == ""
        assert sandbox.remote_shell(f"ls {own['workdir']}").split() == []
    finally:
        sandbox.remote_shell(f"rm -rf {own['workdir']}")


def test_a_kernel_interrupt_with_on_interrupt_detach_leaves_the_sweep_going_then_attach_brings_it(
        swarm, tmp_path):
    detached_by_an_interrupt_then_attached(tmp_path, lambda: sum(swarm.running().values()) > 0)


def test_secrets_reach_the_tasks_as_docker_secrets_never_the_service_spec(swarm, tmp_path, monkeypatch):
    value = "s3cret-" + secrets.token_hex(4)
    monkeypatch.setenv("PYSTRIBUTED_SECRETS", "API_TOKEN")
    monkeypatch.setenv("API_TOKEN", value)
    (tmp_path / "cell.py").write_text(
        "import os, time\n"
        "time.sleep(hold)\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'ok.txt'), 'w')"
        ".write(str(os.environ['API_TOKEN'] == "
        f"{value!r}))\n")
    sweep_id = pystributed("sweep", "cell.py", "--param", "hold=6,6", "--detach", "-q").stdout.strip()
    wait_until(swarm.services, 30, "the service")
    spec = swarm.docker(1, "service", "inspect", f"pystributed-{sweep_id}").stdout
    assert value not in spec and "API_TOKEN" in spec  # its name (PYSTRIBUTED_SECRETS), not its value
    assert swarm.secrets()  # the job's own
    pystributed("attach", sweep_id, timeout=180)
    folder = tmp_path / "results" / sweep_id
    assert [(folder / str(i) / "ok.txt").read_text() for i in (0, 1)] == ["True", "True"]
    assert swarm.secrets() == []  # removed with it


def test_an_interrupted_attach_exits_130_with_the_sweep_going_and_a_later_attach_brings_every_task(
        swarm, tmp_path):
    sweep_id = long_sweep(10, 11, 12)
    folder = interrupted_then_attached(sweep_id, lambda: f"pystributed-{sweep_id}" in swarm.docker(
        1, "service", "ls", "--format", "{{.Name}}").stdout)
    assert all((folder / str(i) / "finally.txt").read_text() == "ran" for i in range(3))


def sweep_in_background(tmp_path, *args):
    (tmp_path / "hold.py").write_text("import os, time\ntime.sleep(hold)\n"
                                      "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'done.txt'), 'w')"
                                      ".write('1')\n")
    return subprocess.Popen([sys.executable, "-m", "pystributed", "sweep", "hold.py", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, what
        time.sleep(0.5)


def test_a_node_whose_ssh_is_cut_loses_its_tasks_which_are_retried_on_the_others(swarm, tmp_path):
    proc = sweep_in_background(tmp_path, "--param", "hold=8,8,8,8,8,8", "--retries", "1")
    try:
        wait_until(lambda: sum(swarm.running().values()) == 6, 120, "six tasks running")
        # Every sshd of node 3 (the one listening, and each connection's): its ssh is cut, its engine runs on.
        pids = subprocess.run(["ip", "netns", "pids", "pst-swarm3"], capture_output=True, text=True,
                              check=True).stdout.split()
        sshd = [pid for pid in pids if Path(f"/proc/{pid}/comm").exists()
                and Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"]
        assert sshd
        subprocess.run(["kill", *sshd], check=False)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        subprocess.run([SANDBOX, "start", "--swarm"], capture_output=True, check=False)  # its sshd again
    assert proc.returncode == 0, out + err
    folder = sweep_folder(tmp_path)
    assert all((folder / str(i) / "done.txt").exists() for i in range(6)), out
    record = json.loads((folder / "sweep.json").read_text())
    retried = [t for t in record["tasks"] if t["attempts"] == 2]
    assert len(retried) == 2 and all(t["node"] != "pystributed-swarm3" for t in retried), record
    assert "node pystributed-swarm3 was lost" in out, out
    # What ran on node 3 stays there (no one could reach it to put it away): gone with the node, in the field.
    leftover = swarm.containers(3)
    assert leftover, "node 3's containers"
    swarm.docker(3, "rm", "--force", *leftover)


def test_a_node_whose_daemon_dies_mid_sweep_never_holds_the_sweep_open(swarm, tmp_path):
    """Last in this file: the rig is made again afterwards (a restarted node is a plain one)."""
    proc = sweep_in_background(tmp_path, "--param", "hold=15,15,15,15,15,15", "--retries", "1")
    try:
        wait_until(lambda: sum(swarm.running().values()) == 6, 120, "six tasks running")
        started = time.time()
        subprocess.run(["kill", "-9", (swarm.dir / "node3" / "docker.pid").read_text().strip()], check=True)
        out, err = proc.communicate(timeout=300)
        took = time.time() - started
    finally:
        proc.kill()
        subprocess.run([SANDBOX, "stop", "--swarm"], capture_output=True, check=False)
        subprocess.run([SANDBOX, "start", "--swarm"], capture_output=True, check=False)
        for n in (1, 2, 3):  # the containers the old swarm left in the nodes' data roots (the test's)
            leftover = swarm.containers(n)
            if leftover:
                swarm.docker(n, "rm", "--force", *leftover)
    folder = sweep_folder(tmp_path)
    record = json.loads((folder / "sweep.json").read_text())
    assert "node pystributed-swarm3 was lost" in out, out + err
    lost = [t for t in record["tasks"] if "was lost" in (t["error"] or t["why"] or "") or t["attempts"] == 2]
    assert len(lost) == 2, record
    for task in record["tasks"]:  # each back, or named as lost
        assert (folder / str(task["index"]) / "done.txt").exists() or "was lost" in task["error"], task
    assert took < 240


def test_a_run_is_followed_and_cancelled_from_another_process(swarm, tmp_path):
    run_id = a_cluster_run_followed_then_cancelled(tmp_path)
    assert swarm.services() == [], run_id
