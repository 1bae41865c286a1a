"""End-to-end on the Slurm rig (scripts/slurm_rig.sh) with SLURM_CONTAINERS = "pyxis": NVIDIA's pyxis and
enroot, built by the rig from ../shared/slurm-containers (beside the checkout; or
$PYSTRIBUTED_SLURM_CONTAINERS_SRC), run each task's container as a job step, as GPU clouds do; the login
user is not root. Where those sources are absent these tests skip, whatever CI says (they are test
infrastructure that a checkout may not have); where they are there, a rig without pyxis fails them."""
import json
import os
from pathlib import Path

import pytest
from conftest import owned, pystributed, rig_fixtures
from test_slurm_e2e import Rig

SOURCES = Path(os.environ.get("PYSTRIBUTED_SLURM_CONTAINERS_SRC")
               or Path(__file__).resolve().parents[3] / "shared" / "slurm-containers")
pytestmark = pytest.mark.skipif(not (SOURCES / "build.sh").is_file(),
                                reason=f"no enroot and pyxis sources in {SOURCES} (build.sh): the Slurm rig "
                                       "has no pyxis")

slurm_env, cluster = rig_fixtures("slurm", ["slurmctld", "slurmd", "sbatch", "munged", "sshd"],
                                  "starts daemons and a user", lambda *made: PyxisRig(*made), name="cluster")


class PyxisRig(Rig):
    """The rig with pyxis as the route: a task's container is a step of its job, in enroot's data folder
    of the login user while it runs (pyxis removes it when the step ends)."""

    def __init__(self, env, folder):
        super().__init__(env, folder)
        self.env = {**env, "PYSTRIBUTED_SLURM_CONTAINERS": "pyxis"}
        assert env.get("PYSTRIBUTED_SANDBOX_PYXIS") == "yes", (
            f"{SOURCES} is there, but the Slurm rig runs no pyxis: {env.get('PYSTRIBUTED_SANDBOX_PYXIS')}")

    def containers(self, run_id):
        """The running steps of the run's (or sweep's) jobs: its containers."""
        jobs = [line.split() for line in self.login("squeue --noheader --format='%i %j'").stdout.splitlines()]
        ids = {job for job, name in (w for w in jobs if len(w) == 2) if owned(name, {run_id})}
        steps = self.login("squeue --steps --noheader --format='%i'").stdout.split()
        return [s for s in steps if s.rsplit(".", 1)[0] in ids and s.rsplit(".", 1)[1].isdigit()]

    def enroot_left(self):
        """enroot's containers of the login user that no job listed by Slurm owns (pyxis_JOBID.STEP)."""
        uid = self.login("id -u").stdout.strip()
        users = Path(self.env["PYSTRIBUTED_SANDBOX_SLURM_DIR"]).parent / "enroot-users"
        data = users / f"user-{uid}" / "data"
        squeue = self.login("squeue --noheader --format='%i %A'").stdout
        listed = {word.split("_")[0] for word in squeue.split()}
        names = [p.name for p in data.iterdir()] if data.is_dir() else []
        return [n for n in names if n.startswith("pyxis_") and n[6:].split(".")[0] not in listed]


def test_the_rig_runs_pyxis_as_a_user_that_is_not_root(cluster):
    assert cluster.login("id -u").stdout.strip() != "0"
    assert "--container-image" in cluster.login("srun --help").stdout


def test_a_run_from_the_cli_comes_back(cluster, tmp_path):
    (tmp_path / "cell.py").write_text("import os\nprint('on', os.environ['PYSTRIBUTED_NODE'], os.getuid())\n"
                                      "open(os.path.join(os.environ['PYSTRIBUTED_RESULTS'], 'out.txt'), 'w')"
                                      ".write('hi')\n")
    proc = pystributed("run", "cell.py")
    assert "on node" in proc.stdout, proc.stdout + proc.stderr
    runs = [p for p in (tmp_path / "results").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1 and (runs[0] / "out.txt").read_text() == "hi"
    assert json.loads((runs[0] / ".pystributed-state.json").read_text())["State"]["ExitCode"] == 0
    cluster.wait_for_no_job(timeout=60)
    assert cluster.enroot_left() == []

