"""`cluster status` with CLUSTER = "slurm" (cluster_slurm.py): one call to the login node (server.sh's
slurm_status) says the partitions, nodes and GPUs, the route and what found it, REMOTE_WORKDIR's sharing
and MaxArraySize."""
from pystributed import cluster, cluster_slurm, config

MARK = "@@pystributed@@"
ANSWER = (f"{MARK}\n{MARK} nodes\nnode1|gpu*|mixed|gpu:a100:4(S:0-1)|gpu:a100:3(IDX:0-2)|\n"
          "node1|debug|mixed|gpu:a100:4(S:0-1)|gpu:a100:3(IDX:0-2)|\nnode2|gpu*|idle|gpu:2|gpu:0|\n"
          "cpu1|cpu|idle|(null)|(null)|\n"
          f"{MARK} route\npyxis|srun takes --container-image (NVIDIA's pyxis plugin)\n"
          f"{MARK} max_array_size\n1001\n{MARK} workdir\n")


def status(programs, workdir_lines, **keys):
    cfg = config.load(environ={}, REMOTE_SERVER="login", CLUSTER="slurm", REMOTE_WORKDIR="runs",
                      DOCKER_REGISTRY="reg:5000", **keys)
    programs.expect("server", "slurm_status", "runs", out=ANSWER + workdir_lines)
    return cluster.status(cfg)


def test_partitions_nodes_gpus_route_sharing_and_max_array_size(programs):
    shown = str(status(programs, "nfs\nruns/x/0/.pystributed-state.json\n"))
    lines = shown.splitlines()
    assert lines[0].split() == ["PARTITION", "NODE", "STATE", "GPUS", "FREE", "GPUS", "IN", "USE"]
    assert lines[2].split() == ["debug", "node1", "mixed", "1", "3"] and "gpu (default)  node2" in shown
    assert "GPUs: 3 free, 3 in use" in shown  # node1 counted once, though in two partitions
    assert "containers: pyxis (srun takes --container-image" in shown
    assert "shared with the nodes: yes: a job on a node wrote runs/x/0/.pystributed-state.json" in shown
    assert "MaxArraySize: 1001" in shown


def test_a_route_set_in_the_config_and_a_workdir_no_job_wrote_yet(programs):
    shown = str(status(programs, "ext2/ext3\n", SLURM_CONTAINERS="docker"))
    assert "containers: docker (SLURM_CONTAINERS says so; the login node shows pyxis" in shown
    assert "shared with the nodes: not known: it is on ext2/ext3" in shown


def test_gpus_in_gres_strings():
    gres = ("gpu:4", "gpu:a100:2(S:0-1),shard:8", "(null)", "")
    assert [cluster_slurm._gpus(g) for g in gres] == [4, 2, 0, 0]
