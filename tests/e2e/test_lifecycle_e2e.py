"""Runs that outlive the process that started them, driven through `python -m pystributed` against
the sandbox. Each test has its own DOCKER_IMAGE_NAME and REMOTE_WORKDIR, so that `clean` can
never touch another test's (or another person's) runs, and removes all it made afterwards."""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")


class Own:
    """This test's image name and run folder on the sandbox, and a way to run the CLI."""

    def __init__(self, sandbox, monkeypatch, tmp_path):
        self.sandbox, self.cwd = sandbox, tmp_path
        token = secrets.token_hex(3)
        self.image_name = f"pystributed-test-lifecycle-{token}"
        self.workdir = f"lifecycle-test-{token}"
        self.repository = f"{sandbox.registry}/{self.image_name}"
        monkeypatch.setenv("PYSTRIBUTED_DOCKER_IMAGE_NAME", self.image_name)
        monkeypatch.setenv("PYSTRIBUTED_REMOTE_WORKDIR", self.workdir)
        self.extra_containers = []

    def cli(self, *args, code=0, env=None, cell=None):
        if cell is not None:
            (self.cwd / "user_code.py").write_text(cell)
        proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                              check=False, timeout=300, env={**os.environ, **(env or {})})
        if code is not None and proc.returncode != code:
            raise AssertionError(f"{args}: exit {proc.returncode}, not {code}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def submit(self, cell, **kwargs):
        run_id = self.cli("submit", cell=cell, **kwargs).stdout.strip()
        assert RUN_ID.fullmatch(run_id), run_id  # stdout is the run id alone
        return run_id

    def containers(self, run_id):
        return self.sandbox.docker("remote", "ps", "-aq", "--filter",
                                   f"label=pystributed.run={run_id}").stdout.split()

    def folder_exists(self, run_id):
        return subprocess.run([*self.sandbox.ssh, f"test -d {self.workdir}/{run_id}"],
                              check=False).returncode == 0

    def image_of(self, run_id):
        return json.loads((self.cwd / "results" / ".runs" / f"{run_id}.json").read_text())["image"]

    def remote_images(self):
        out = self.sandbox.docker("remote", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                                  self.repository)
        return set(out.stdout.split())

    def registry_tags(self):
        try:
            return set(self.sandbox.registry_tags(self.image_name))
        except urllib.error.HTTPError:  # the repository was never pushed to
            return set()

    def wait_for_output(self, run_id, text, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if text in self.cli("logs", run_id).stdout:
                return
            time.sleep(0.5)
        raise AssertionError(f"{text!r} did not appear in the output of {run_id}")

    def remove_everything(self):
        """Teardown, as root on the engines: containers, folder, images, tags of this test only."""
        for line in self.sandbox.remote_shell(f"ls {self.workdir} 2>/dev/null || true").split():
            if RUN_ID.fullmatch(line):
                for container in self.containers(line):
                    self.sandbox.docker("remote", "rm", "--force", container)
        for container in self.extra_containers:
            self.sandbox.docker("remote", "rm", "--force", container)
        self.sandbox.remote_shell(f"rm -rf {self.workdir}")
        for engine in ("remote", "local"):
            out = self.sandbox.docker(engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                                      self.repository)
            for ref in out.stdout.split():
                self.sandbox.docker(engine, "image", "rm", ref)
        for tag in self.registry_tags():
            url = f"http://{self.sandbox.registry}/v2/{self.image_name}/manifests/{tag}"
            head = urllib.request.Request(url, method="HEAD", headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                          "application/vnd.oci.image.manifest.v1+json"})
            with urllib.request.urlopen(head, timeout=10) as response:
                digest = response.headers["Docker-Content-Digest"]
            delete = urllib.request.Request(url.replace(tag, digest), method="DELETE")
            urllib.request.urlopen(delete, timeout=10).close()


@pytest.fixture
def own(sandbox, monkeypatch, tmp_path):
    mine = Own(sandbox, monkeypatch, tmp_path)
    yield mine
    mine.remove_everything()


def row(listing, run_id):
    line = next((line for line in listing.splitlines() if line.startswith(run_id)), None)
    assert line, f"{run_id} is not listed:\n{listing}"
    return line


def test_a_run_outlives_its_process_and_is_followed_and_fetched_from_another(own, tmp_path):
    (tmp_path / "user_code.py").write_text(
        "import os, time\n"
        "print('started', flush=True)\n"
        "time.sleep(4)\n"
        "for i in range(3):\n"
        "    print('line', i)\n"
        "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'model.txt'), 'w').write('trained')\n"
        "print('done')\n")
    # `run`, killed (with its ssh children) as a closing laptop would be, once the cell has started.
    proc = subprocess.Popen([sys.executable, "-m", "pystributed", "run"], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if "started" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = json.loads(next((tmp_path / "results" / ".runs").glob("*.json")).read_text())["run_id"]
    assert not (tmp_path / "results" / run_id).exists()

    # A new process follows it from the start to its end.
    followed = own.cli("logs", "-f", run_id).stdout
    assert followed == "started\nline 0\nline 1\nline 2\ndone\n"
    assert row(own.cli("list").stdout, run_id).split()[1:3] == ["exited", "0"]
    assert own.cli("status", run_id).stdout.startswith(f"{run_id} exited 0\n")
    assert own.cli("wait", run_id).returncode == 0
    assert own.containers(run_id) == []  # put away by wait: its log and state are in the run folder

    # fetch, twice: the second copy replaces the first whole, and nothing half-copied is left.
    for _ in range(2):
        # model.txt, output.log, run.json: what `ls` shows (not .pystributed-state.json)
        assert "3 file(s)" in own.cli("fetch", run_id).stdout
        folder = tmp_path / "results" / run_id
        assert (folder / "model.txt").read_text() == "trained"
        assert (folder / "output.log").read_text() == followed
        assert json.loads((folder / ".pystributed-state.json").read_text())["State"]["ExitCode"] == 0
        assert json.loads((folder / "run.json").read_text())["status"] == "succeeded"
        # The index of runs, the note of the image (features/cell_mount.py), the run: no partial folder.
        assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".images", ".runs", run_id]
    # After it was put away, the log comes from output.log, and list says where the results are.
    assert own.cli("logs", run_id).stdout == followed
    assert row(own.cli("list").stdout, run_id).split()[-1] == str(folder)


def test_wait_exits_with_the_runs_code_and_unknown_runs_have_their_own(own):
    run_id = own.submit("import sys\nprint('bye')\nsys.exit(3)\n")
    assert own.cli("wait", run_id, code=3).stderr.strip().endswith(f"{run_id} exited 3")
    assert own.cli("wait", run_id, code=3)  # again: the state outlives the container
    unknown = own.cli("status", "20200101-000000-abcdef", code=66)
    assert "there is no run 20200101-000000-abcdef in" in unknown.stderr
    assert own.cli("logs", "not-a-run", code=2).stderr.endswith("is not a run id (they look like "
                                                                "20261125-101502-3fa9c1)\n")
    offline = own.cli("list", code=69, env={"PYSTRIBUTED_SSH_OPTIONS": "-F /dev/null -p 1",
                                            "PYSTRIBUTED_REMOTE_SERVER": "127.0.0.1"})
    assert offline.stdout.startswith("OFFLINE, from the local index (may be stale): 127.0.0.1: "
                                     "connect failed")


def test_cancel_stops_the_run_and_leaves_no_container(own, tmp_path):
    run_id = own.submit(
        "import os, time\n"
        "try:\n"
        "    print('working', flush=True)\n"
        "    time.sleep(120)\n"
        "finally:\n"
        "    open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'checkpoint.txt'), 'w').write('saved')\n")
    own.wait_for_output(run_id, "working")
    assert row(own.cli("list").stdout, run_id).split()[1] == "running"
    started = time.time()
    assert own.cli("cancel", run_id).stdout == f"{run_id} cancelled\n"
    assert time.time() - started < 30
    assert own.containers(run_id) == []
    assert own.cli("status", run_id).stdout.startswith(f"{run_id} cancelled\n")
    assert own.cli("cancel", run_id).stdout == f"{run_id} cancelled\n"  # again: nothing to do
    own.cli("fetch", run_id)
    # The cell got a KeyboardInterrupt: its finally block ran, and its traceback is in the log.
    assert (tmp_path / "results" / run_id / "checkpoint.txt").read_text() == "saved"
    assert "KeyboardInterrupt" in (tmp_path / "results" / run_id / "output.log").read_text()
    assert json.loads((tmp_path / "results" / run_id / "run.json").read_text())["status"] == "cancelled"


def test_a_run_that_goes_on_is_fetched_while_it_writes(own, tmp_path):
    run_id = own.submit(
        "import os, time\n"
        "with open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'grows.txt'), 'w') as f:\n"
        "    print('writing', flush=True)\n"
        "    for i in range(4000):  # 10 KB every 5 ms, 40 MB at most\n"
        "        f.write(f'line {i:4}\\n' * 1000)\n"
        "        f.flush()\n"
        "        time.sleep(0.005)\n"
        "time.sleep(600)\n")
    own.wait_for_output(run_id, "writing")
    for _ in range(3):  # the file grows as tar reads it: what was read comes, the run goes on
        assert "file(s)" in own.cli("fetch", run_id).stdout
        assert (tmp_path / "results" / run_id / "grows.txt").read_text().startswith("line    0\n")
    assert own.cli("status", run_id).stdout.startswith(f"{run_id} running\n")
    assert own.cli("cancel", run_id).stdout == f"{run_id} cancelled\n"


def test_list_shows_every_state_and_clean_removes_what_it_listed_and_nothing_else(own, sandbox, monkeypatch):
    old = own.cli("run", cell="print('old')\n").stdout  # exited 0, put away
    old = RUN_ID.search(old.splitlines()[-1]).group(0)
    # Built, not mounted over old's image (features/cell_mount.py), once its note is gone; and none of
    # the runs below mounts theirs over it.
    shutil.rmtree(own.cwd / "results" / ".images")
    old_unique = own.cli("run", cell="print('old, with an image of its own')\n").stdout
    old_unique = RUN_ID.search(old_unique.splitlines()[-1]).group(0)
    shutil.rmtree(own.cwd / "results" / ".images")
    failed = own.submit("raise SystemExit(2)\n")  # exited 2, its container still there
    running = own.submit("import time\nprint('on', flush=True)\ntime.sleep(300)\n")
    cancelled = own.submit("import time\nprint('on', flush=True)\ntime.sleep(300)\n")
    interrupted = own.submit("import time\nprint('on', flush=True)\ntime.sleep(300)\n")
    for run_id in (running, cancelled, interrupted):
        own.wait_for_output(run_id, "on")
    own.cli("cancel", cancelled)
    sandbox.docker("remote", "kill", "--signal", "INT", f"pystributed-{interrupted}")  # as an interrupt does
    # A container Docker makes but cannot start: its user is not in the image. (`--gpus` on this engine,
    # which has no GPU, is refused before the push now, with no container: tests/e2e/test_gpus_e2e.py.)
    no_start = own.cli("submit", "-q", cell="print(1)\n", code=1,
                       env={"PYSTRIBUTED_DOCKER_RUN_ARGS": "--user no-such-user"})
    assert "unable to find user no-such-user" in no_start.stderr
    no_start = RUN_ID.search(no_start.stderr).group(0)
    # An ended container of a run in another folder, using the same image as `old`: not ours to
    # clean, and while it is there its image is in use.
    other = "20200101-000000-0ther0".replace("0ther0", secrets.token_hex(3))
    own.extra_containers.append(f"pystributed-{other}")
    sandbox.docker("remote", "run", "--name", f"pystributed-{other}", "--label", f"pystributed.run={other}",
                   own.image_of(old), "true")
    assert own.image_of(old) != own.image_of(old_unique)
    for run_id in (old, old_unique):  # ended two hours ago
        sandbox.remote_shell(f"touch -d '2 hours ago' {own.workdir}/{run_id}")

    listing = own.cli("list").stdout
    states = {run_id: row(listing, run_id).split("  ")[1].strip() for run_id in
              (old, old_unique, failed, running, cancelled, interrupted, no_start)}
    assert states == {old: "exited 0", old_unique: "exited 0", failed: "exited 2", running: "running",
                      cancelled: "cancelled", interrupted: "interrupted", no_start: "failed to start"}
    assert other not in listing  # another REMOTE_WORKDIR's run

    images_before, tags_before = own.remote_images(), own.registry_tags()
    plan = own.cli("clean", "--older-than", "1h", "--dry-run").stdout
    assert plan.endswith("Nothing removed.\n")
    listed = re.findall(r"^  (container|run folder|image|tag) +(\S+)", plan, re.MULTILINE)
    unique_image = own.image_of(old_unique)
    assert sorted(listed) == sorted([
        ("container", f"pystributed-{failed}"), ("container", f"pystributed-{interrupted}"),
        ("container", f"pystributed-{no_start}"),
        ("run folder", f"/home/pystributed/{own.workdir}/{old}"),
        ("run folder", f"/home/pystributed/{own.workdir}/{old_unique}"),
        ("image", unique_image), ("tag", unique_image)]), plan
    assert f"Kept, still running or starting: {running}" in plan
    # The dry run removed nothing.
    assert own.remote_images() == images_before and own.registry_tags() == tags_before
    assert own.containers(failed) and own.folder_exists(old)

    done = own.cli("clean", "--older-than", "1h", "--yes").stdout
    assert re.findall(r"^  (container|run folder|image|tag) +(\S+)", done, re.MULTILINE) == listed
    assert done.endswith("Removed.\n")
    for run_id in (failed, interrupted, no_start):
        assert own.containers(run_id) == [] and own.folder_exists(run_id)
    assert row(own.cli("status", no_start).stdout, no_start) == f"{no_start} failed to start"
    assert not own.folder_exists(old) and not own.folder_exists(old_unique)
    assert own.remote_images() == images_before - {unique_image}
    assert own.registry_tags() == tags_before - {unique_image.rsplit(":", 1)[1]}
    # Nothing else: the running run, the cancelled run's folder, the other workdir's run and its image.
    assert own.containers(running) and own.folder_exists(cancelled)
    assert own.containers(other)
    assert own.image_of(old) in own.remote_images()
    listing = own.cli("list").stdout
    assert row(listing, running).split()[1] == "running" and row(listing, failed).split()[1:3] == ["exited",
                                                                                                   "2"]
    assert old not in listing
    assert own.cli("clean", "--older-than", "1h", "--yes").stdout.startswith(
        "On pystributed-sandbox:\n  nothing to remove\n")


def test_the_runner_functions_from_a_new_kernel(own, tmp_path):
    from kernel import Kernel, stream_text

    first = Kernel(tmp_path)
    try:
        _, reply = first.execute("import pystributed.main as runner")
        messages, reply = first.execute("%%remote --detach\nimport time\nprint('one', flush=True)\n"
                                        "time.sleep(3)\nprint('two')\n")
        assert reply["status"] == "ok", messages
    finally:
        first.close()  # the kernel that started it is gone
    run_id = json.loads(next((tmp_path / "results" / ".runs").glob("*.json")).read_text())["run_id"]
    kernel = Kernel(tmp_path)
    try:
        def result_of(code):
            messages, reply = kernel.execute(code)
            assert reply["status"] == "ok", messages
            return next(m["content"]["data"] for m in messages if m["msg_type"] == "execute_result")

        kernel.execute("import pystributed.main as runner")
        assert result_of(f"runner.status({run_id!r})")["text/plain"].startswith(f"{run_id} running\n")
        messages, reply = kernel.execute(f"runner.logs({run_id!r}, follow=True)")
        assert reply["status"] == "ok" and stream_text(messages) == "one\ntwo\n"
        assert result_of(f"runner.wait({run_id!r}).exit_code")["text/plain"] == "0"
        assert result_of(f"runner.fetch({run_id!r}, quiet=True).files")["text/plain"] == \
            "['.pystributed-state.json', 'output.log', 'run.json']"
        table = result_of("runner.list_runs()")
        assert run_id in table["text/html"] and "exited 0" in table["text/plain"]
        plan = result_of("runner.clean(older_than='0s')")["text/plain"]
        assert f"run folder /home/pystributed/{own.workdir}/{run_id}" in plan
        assert plan.endswith("Nothing removed yet: clean(yes=True) removes these.")
    finally:
        kernel.close()
    assert own.folder_exists(run_id)
