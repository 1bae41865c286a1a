"""server.sh's slurm_* actions themselves, run by `sh` (dash), with fake `squeue`, `scontrol` and
`sbatch` on PATH that log their words: what one look of the Slurm engine costs the controller, and
what `clean` is told of the jobs' environment files."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pystributed.places import server, slurm

SERVER_SH = Path(server.__file__).parent.parent / "server.sh"
NAME = "pystributed-sweep-20261125-101502-3fa9c1"

FAKE = r"""#!PYTHON
import json, os, sys
prog, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(os.environ["FAKE"], "calls"), "a") as f:
    f.write(json.dumps([prog, *argv]) + "\n")
running = int(os.environ.get("FAKE_RUNNING", "0"))
if prog == "squeue" and os.environ.get("FAKE_SQUEUE_FAILS"):
    sys.exit(1)
elif prog == "squeue" and "--format=%j" in argv:
    print(os.environ.get("FAKE_QUEUED", ""))
elif prog == "squeue" and "--format=%A" in argv:
    print("\n".join(str(100 + i) for i in range(running)))
elif prog == "squeue":
    name = os.environ["FAKE_NAME"]
    print("\n".join(f"{100 + i}|40|{i}|{name}|RUNNING|None|node{i % 2 + 1}" for i in range(running)))
    print(f"40|40|{running}-{running + 3}|{os.environ['FAKE_NAME']}|PENDING|Resources|")
elif prog == "scontrol" and argv == ["show", "config"]:
    print("Configuration data as of 2026-12-07T19:00:00\nMaxArraySize            = "
          + os.environ.get("FAKE_MAX_ARRAY", "1001") + "\nMaxJobCount             = 10000")
elif prog == "scontrol":
    print(f"JobId={argv[-1]} Nodes=node1 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:0)")
elif prog == "sbatch":
    sys.stdin.read()
    print("41")
"""


class Sh:
    def __init__(self, tmp_path):
        self.bin, self.fake = tmp_path / "bin", tmp_path / "fake"
        self.bin.mkdir()
        self.fake.mkdir()
        for prog in ("squeue", "scontrol", "sbatch", "docker"):  # (docker: no containers)
            (self.bin / prog).write_text(FAKE.replace("PYTHON", sys.executable))
            (self.bin / prog).chmod(0o755)

    def __call__(self, *words, stdin="", **env):
        environ = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE": str(self.fake), "FAKE_NAME": NAME, **env}
        proc = subprocess.run([shutil.which("dash") or "sh", "-c", '. "$0" && "$@"', str(SERVER_SH), *words],
                              input=stdin, env=environ, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def calls(self, prog=None):
        path = self.fake / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [call[1:] for call in map(json.loads, lines) if prog in (None, call[0])]


@pytest.fixture
def sh(tmp_path):
    return Sh(tmp_path)


def test_a_look_at_500_running_tasks_is_one_squeue_call_and_no_scontrol(sh, tmp_path):
    """Every 0.5 s in the last wave: one controller call per look, whatever the number of tasks. The
    GPUs each running job was given are read from the files its job script wrote on the shared disk."""
    folder = tmp_path / "runs" / "sweep"
    for index in (0, 1, 7):  # three ended tasks, as their saved state shows
        (folder / str(index)).mkdir(parents=True)
        (folder / str(index) / ".pystributed-state.json").write_text("{}\n")
    (folder / ".pystributed-gpus-100").write_text("1\n")
    (folder / ".pystributed-gpus-101").write_text("0,1\n")
    out = sh("slurm_jobs", "--states", str(folder), NAME, f"{NAME}-3-2", FAKE_RUNNING="500")
    assert len(sh.calls("squeue")) == 1 and sh.calls("scontrol") == []
    squeue, = sh.calls("squeue")
    assert f"--name={NAME},{NAME}-3-2" in squeue and any(w.startswith("--format=") for w in squeue)
    rows = slurm.parse_jobs(out)
    assert len(rows) == 501 and rows[-1].pending and rows[-1].reason == "Resources"
    assert (rows[0].id, rows[0].index, rows[0].nodes, rows[0].gpus) == ("100", 0, "node1", "1")
    assert rows[1].gpus == "0,1" and rows[2].gpus == ""  # (no file: its job script has not written it yet)
    assert sorted(server.sections(out)["states"]) == ["0", "1", "7"]


def test_a_single_runs_look_reads_its_gpus_from_its_folder(sh, tmp_path):
    folder = tmp_path / "runs" / "20261125-101502-3fa9c1"
    folder.mkdir(parents=True)
    (folder / ".pystributed-gpus-100").write_text("0,1\n")
    rows = slurm.parse_jobs(sh("slurm_jobs", str(folder), NAME, FAKE_RUNNING="1"))
    assert [(row.id, row.gpus) for row in rows] == [("100", "0,1"), ("40", "")]
    assert len(sh.calls("squeue")) == 1 and sh.calls("scontrol") == []


def test_the_survey_lists_the_jobs_environment_files_and_the_jobs_slurm_still_lists(sh, tmp_path):
    workdir = tmp_path / "runs"
    (workdir / "sweep-20261125-101509-eeeeee").mkdir(parents=True)
    for name in ("sweep-20261125-101509-eeeeee.env", "sweep-20261125-101509-eeeeee.3-2.env"):
        (workdir / name).write_text("TOKEN=s3cret\n")
    retry = "pystributed-sweep-20261125-101509-eeeeee-3-2"  # (its job waits)
    found = server.sections(sh("survey", str(workdir), FAKE_QUEUED=retry))
    assert sorted(found["envs"]) == ["sweep-20261125-101509-eeeeee.3-2.env",
                                     "sweep-20261125-101509-eeeeee.env"]
    assert found["slurm_jobs"] == [retry]
    squeue, = sh.calls("squeue")
    assert "--format=%j" in squeue and any(w.startswith("--user=") for w in squeue)
    # squeue failing: no answer of its (clean then removes no environment file: a job may wait for a GPU)
    assert "slurm_jobs" not in server.sections(sh("survey", str(workdir), FAKE_SQUEUE_FAILS="1"))


@pytest.mark.parametrize("size", ["1001", "40"])
def test_the_clusters_max_array_size_is_read_from_its_config(sh, size):
    assert sh("slurm_max_array", FAKE_MAX_ARRAY=size).splitlines()[-1] == size
    assert sh.calls("scontrol") == [["show", "config"]]


def test_a_submit_replaces_the_environment_file_whole(sh, tmp_path):
    """A sweep's later arrays save it again while the first one's tasks read it: never a part of it."""
    env_file, script = tmp_path / "s.env", tmp_path / "job.sh"
    env_file.write_text("TOKEN=old\n")
    before = env_file.stat().st_ino
    assert sh("slurm_submit", str(env_file), str(script), "#!/bin/sh\n", "--array=0-9", str(script),
              stdin="TOKEN=s3cret\n").splitlines()[-1] == "41"
    assert env_file.read_text() == "TOKEN=s3cret\n" and env_file.stat().st_ino != before
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == ["s.env"]  # (no .$$ left)
