"""End-to-end on the Slurm rig (scripts/slurm_rig.sh) with SLURM_CONTAINERS = "pyxis": NVIDIA's pyxis and
enroot, built by the rig from ../shared/slurm-containers (beside the checkout; or
$PYSTRIBUTED_SLURM_CONTAINERS_SRC), run each task's container as a job step, as GPU clouds do; the login
user is not root. Where those sources are absent these tests skip, whatever CI says (they are test
infrastructure that a checkout may not have); where they are there, a rig without pyxis fails them."""
import os
import shlex
from pathlib import Path

import pytest
from conftest import pystributed, rig_fixtures

# What the Docker route passes on the rig, the pyxis route passes too: the same tests, run here with this
# module's `cluster` (pyxis as the route, its containers the jobs' steps).
from test_slurm_e2e import (
    Rig,
    cancel_mid_sweep,
    cli_run_comes_back,
    test_a_cell_over_two_nodes_meets_at_master_addr_and_returns_rank_0s_value,
    test_a_detached_sweeps_secret_leaves_the_shared_disk_with_its_array,
    test_a_rank_that_fails_fails_the_run_with_its_traceback,
    test_a_run_is_followed_and_cancelled_from_another_process,
    test_a_runs_secret_leaves_the_shared_disk_with_its_job_before_anyone_waits_for_it,
    test_a_sweep_of_8_tasks_over_4_gpus_from_a_notebook_one_failing,
    test_an_interrupted_attach_exits_130_and_a_later_attach_from_a_new_process_brings_everything,
    test_tasks_per_container_keeps_each_tasks_folder_exit_code_traceback_and_retry,
)

__all__ = [
    "test_a_cell_over_two_nodes_meets_at_master_addr_and_returns_rank_0s_value",
    "test_a_detached_sweeps_secret_leaves_the_shared_disk_with_its_array",
    "test_a_rank_that_fails_fails_the_run_with_its_traceback",
    "test_a_run_is_followed_and_cancelled_from_another_process",
    "test_a_runs_secret_leaves_the_shared_disk_with_its_job_before_anyone_waits_for_it",
    "test_a_sweep_of_8_tasks_over_4_gpus_from_a_notebook_one_failing",
    "test_an_interrupted_attach_exits_130_and_a_later_attach_from_a_new_process_brings_everything",
    "test_tasks_per_container_keeps_each_tasks_folder_exit_code_traceback_and_retry",
]

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

    def assert_nothing_left(self):
        """A task's job ends seconds after the task saved its state: pyxis then removes its container."""
        try:
            self.wait_for_no_job(timeout=30)
        finally:
            super().assert_nothing_left()
        assert self.enroot_left() == []

    def containers(self, run_id):
        """The run's (or sweep's tasks', or ranks') containers that run its cell: those whose output.log is
        there, and no state yet (a step lives on for seconds after its container's command ended, while pyxis
        removes the container)."""
        script = ("for d in $(find ~ -maxdepth 2 -type d -name \"$1\") $(find ~ -maxdepth 3 -path \"*/$1/*\" "
                  "-type d); do [ -f \"$d/output.log\" ] && [ ! -f \"$d/.pystributed-state.json\" ] && "
                  "[ ! -f \"$d/.pystributed-rank-state.json\" ] && echo \"$d\"; done; true")
        return self.login(f"sh -c {shlex.quote(script)} sh {shlex.quote(run_id)}").stdout.split()

    def enroot_left(self):
        """enroot's containers of the login user that no job listed by Slurm owns (pyxis_JOBID_JOBID.STEP)."""
        uid = self.login("id -u").stdout.strip()
        users = Path(self.env["PYSTRIBUTED_SANDBOX_SLURM_DIR"]).parent / "enroot-users"
        data = users / f"user-{uid}" / "data"
        squeue = self.login("squeue --noheader --format='%i %A'").stdout
        listed = {word.split("_")[0] for word in squeue.split()}
        names = [p.name for p in data.iterdir()] if data.is_dir() else []
        return [n for n in names
                if n.startswith("pyxis_") and n[6:].split("_")[0].split(".")[0] not in listed]


def test_the_rig_runs_pyxis_as_a_user_that_is_not_root(cluster):
    assert cluster.login("id -u").stdout.strip() != "0"
    assert "--container-image" in cluster.login("srun --help").stdout


def test_a_run_from_the_cli_comes_back(cluster, tmp_path):
    cli_run_comes_back(tmp_path, "os.getuid()")
    cluster.wait_for_no_job(timeout=60)
    assert cluster.enroot_left() == []


def test_cancel_mid_sweep_leaves_no_job_and_no_container(cluster, tmp_path):
    cancel_mid_sweep(cluster, tmp_path, wait=300)


def test_cluster_status_shows_the_nodes_gpus_route_sharing_and_max_array_size(cluster):
    shown = pystributed("cluster", "status").stdout
    assert "node1" in shown and "node2" in shown and "gpu (default)" in shown, shown
    assert "containers: pyxis (SLURM_CONTAINERS says so; the login node shows pyxis" in shown, shown
    assert "GPUs: " in shown, shown
    assert "shared with the nodes: " in shown and "MaxArraySize: " in shown, shown
