"""`cluster init`: what it reads of a host, and what it says each daemon.json needs (cluster.py)."""
import json

from pystributed import cluster, config

GPU_A, GPU_B = "GPU-f4e4fe0e-0e5e-080b-17fa-3fd049dc36fc", "GPU-df0c0000-0000-0000-0000-000000000000"


def advertised(*uuids):
    return [{"NamedResourceSpec": {"Kind": "gpu", "Value": u}} for u in uuids]


def test_a_host_with_gpus_that_swarm_does_not_count_is_told_what_to_add_and_why():
    host = cluster.Host("gpu1", gpus=[(0, GPU_A), (1, GPU_B)], nvidia_smi="ok",
                        info={"DefaultRuntime": "runc", "Runtimes": {"runc": {}}})
    advice = host.advice()
    settings = json.loads(advice.split("needs (merged with what is there; then `sudo systemctl "
                                       "restart docker`):")[1]
                          .split("\n  - ")[0])
    assert settings == {"node-generic-resources": [f"gpu={GPU_A}", f"gpu={GPU_B}"],
                        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
                        "default-runtime": "nvidia"}
    assert "/etc/docker/daemon.json on gpu1" in advice and 'swarm-resource = "DOCKER_RESOURCE_GPU"' in advice
    assert "Swarm counts only the GPUs a daemon advertises" in advice


def test_a_ready_host_and_one_without_gpus():
    ready = cluster.Host("gpu1", gpus=[(0, GPU_A)], nvidia_smi="ok",
                         info={"DefaultRuntime": "nvidia", "Runtimes": {"nvidia": {}},
                               "GenericResources": advertised(GPU_A)})
    assert ready.advice() == "" and ready.advertised == [GPU_A]
    cpu = cluster.Host("cpu1", info={"DefaultRuntime": "runc"})
    assert cpu.advice().startswith("no GPU (no nvidia-smi there): tasks that ask for GPUs")


def test_what_a_host_says_of_itself(programs):
    cfg = config.load(environ={}, REMOTE_SERVER="gpu1", TRANSPORT="remote-build")
    info = {"Swarm": {"LocalNodeState": "inactive"}, "DefaultRuntime": "runc"}
    programs.expect("server", "cluster_node", out=("@@pystributed@@ address\n10.0.0.5\n@@pystributed@@ "
                                                   f"info\n{json.dumps(info)}\n@@pystributed@@ "
                                                   f"gpus\n0, {GPU_A}\n"))
    host = cluster._host(cluster.ssh.Ssh(cfg))
    assert (host.name, host.address, host.gpus, host.nvidia_smi) == ("gpu1", "10.0.0.5", [(0, GPU_A)], "ok")
    assert host.swarm == {"LocalNodeState": "inactive"}
