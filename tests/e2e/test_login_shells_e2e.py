"""The CLI against each of the sandbox's login users (scripts/sandbox.sh): bash, fish, tcsh, and a bash
whose ~/.bashrc prints a line before anything else, as on many GPU servers. Whatever the login shell
and whatever its startup files print, the server commands must do what they do for bash: their
arguments (a REMOTE_WORKDIR with a space and a quote) reach the server unchanged, and no welcome line
gets into the cell's output or the CLI's. The tests share one DOCKER_IMAGE_NAME, so the image is built
once and reused; each has its own REMOTE_WORKDIR, so that `clean` only ever touches its own runs."""
import os
import re
import secrets
import shutil
import subprocess
import sys
import time

import pytest
from conftest import delete_from_registry

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
LINE = "it's a $HOME \\ test!"  # quotes, spaces, a variable, a backslash, a '!': printed as they are
CELL = ("import os\n"
        f"print({LINE!r})\n"
        "open(os.environ['PYSTRIBUTED_RESULTS'] + '/r.txt', 'w').write('ok')\n")


def only_run_folder(cwd):
    runs = [name for name in os.listdir(cwd / "results") if not name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def row(listing, run_id):
    line = next((line for line in listing.splitlines() if line.startswith(run_id)), None)
    assert line, f"{run_id} is not listed:\n{listing}"
    return line


def remove_images(env, image_name):
    """The images of IMAGE_NAME on both engines and its tags in the registry, as root."""
    repository = f"{env['PYSTRIBUTED_DOCKER_REGISTRY']}/{image_name}"
    for host in (env["DOCKER_HOST"], env["PYSTRIBUTED_SANDBOX_REMOTE_DOCKER_HOST"]):
        out = subprocess.run(["docker", "-H", host, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                              repository], capture_output=True, text=True, check=False).stdout
        for ref in out.split():
            subprocess.run(["docker", "-H", host, "image", "rm", ref], capture_output=True, check=False)
    delete_from_registry(env["PYSTRIBUTED_DOCKER_REGISTRY"], image_name)


@pytest.fixture(scope="module")
def image_name(sandbox_env):
    name = f"pystributed-test-shells-{secrets.token_hex(3)}"
    yield name
    remove_images(sandbox_env, name)


class AsUser:
    """The CLI as one login user, in its own REMOTE_WORKDIR (a space and a quote in it)."""

    def __init__(self, sandbox, login, image_name, cwd):
        self.sandbox, self.login, self.cwd = sandbox, login, cwd
        self.top = f"runs dir {secrets.token_hex(3)}"
        self.workdir = f"{self.top}/it's"
        self.env = {**os.environ, **login.env, "PYSTRIBUTED_DOCKER_IMAGE_NAME": image_name,
                    "PYSTRIBUTED_REMOTE_WORKDIR": self.workdir}

    def cli(self, *args, code=0):
        proc = subprocess.run([sys.executable, "-m", "pystributed", *args], capture_output=True, text=True,
                              check=False, timeout=300, cwd=self.cwd, env=self.env)
        if code is not None and proc.returncode != code:
            raise AssertionError(f"{args}: exit {proc.returncode}, not {code}\n{proc.stdout}\n{proc.stderr}")
        if self.login.banner:  # the login's welcome line stays out of all the CLI says
            assert self.login.banner not in proc.stdout + proc.stderr, f"{args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def remote_folder(self, run_id):
        return self.login.home / self.workdir / run_id

    def remove_everything(self):
        """Teardown, as root: this test's containers and its REMOTE_WORKDIR."""
        runs = {path.stem for path in (self.cwd / "results" / ".runs").glob("*.json")}
        if (self.login.home / self.workdir).is_dir():
            runs.update(name for name in os.listdir(self.login.home / self.workdir) if RUN_ID.fullmatch(name))
        for run_id in runs:
            out = self.sandbox.docker("remote", "ps", "-aq", "--filter",
                                      f"label=pystributed.run={run_id}").stdout
            for container in out.split():
                self.sandbox.docker("remote", "rm", "--force", container)
        shutil.rmtree(self.login.home / self.top, ignore_errors=True)


@pytest.fixture
def as_user(sandbox, login, image_name, tmp_path):
    mine = AsUser(sandbox, login, image_name, tmp_path)
    yield mine
    mine.remove_everything()


def test_run_prints_the_cells_output_and_fetches_its_results(as_user, login, tmp_path):
    (tmp_path / "user_code.py").write_text(CELL)
    proc = as_user.cli("run", "user_code.py")
    run_id = only_run_folder(tmp_path)
    assert RUN_ID.fullmatch(run_id), run_id
    assert f"\n{LINE}\n" in "\n" + proc.stdout
    assert (tmp_path / "results" / run_id / "r.txt").read_text() == "ok"
    assert (tmp_path / "results" / run_id / "output.log").read_text() == f"{LINE}\n"
    # REMOTE_WORKDIR reached the server as it was written: the run folder is there, the user's.
    assert (as_user.remote_folder(run_id) / "r.txt").read_text() == "ok"
    assert as_user.remote_folder(run_id).owner() == login.user


def test_submit_then_logs_fetch_list_and_clean(as_user, tmp_path):
    (tmp_path / "user_code.py").write_text(CELL)
    run_id = as_user.cli("submit", "user_code.py").stdout.strip()
    assert RUN_ID.fullmatch(run_id), run_id  # stdout is the run id alone
    assert as_user.cli("wait", run_id).returncode == 0
    assert as_user.cli("logs", run_id).stdout == f"{LINE}\n"
    as_user.cli("fetch", run_id)
    assert (tmp_path / "results" / run_id / "r.txt").read_text() == "ok"
    assert (tmp_path / "results" / run_id / "output.log").read_text() == f"{LINE}\n"
    assert row(as_user.cli("list").stdout, run_id).split()[1:3] == ["exited", "0"]

    folder = as_user.remote_folder(run_id)
    assert folder.is_dir()
    time.sleep(1)  # ended and unchanged for more than 0s
    cleaned = as_user.cli("clean", "--older-than", "0s", "--yes").stdout
    assert f"\n  run folder {folder}  (exited 0, " in cleaned, cleaned  # the path as it is, spaces and all
    assert cleaned.endswith("Removed.\n"), cleaned
    assert not folder.exists()
    assert run_id not in as_user.cli("list").stdout
