"""CLUSTER = "swarm": the service a job becomes, Swarm's objects as read, a one-node swarm's folders
(a run's job: tests/places/test_swarm_engine.py)."""
import dataclasses
import json

import pytest

from pystributed import config, context
from pystributed.errors import ConfigError
from pystributed.places import place_for, swarm, swarm_service

RUN_ID = "20261125-101502-3fa9c1"
IMAGE = "reg:5000/pystributed:abc"


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="me@manager", DOCKER_REGISTRY="reg:5000",
                       REMOTE_WORKDIR="runs",
                       CLUSTER="swarm")


def run_args(*extra):
    return ["--detach", "--name", f"pystributed-{RUN_ID}", "--label", f"pystributed.run={RUN_ID}", "--user",
            "1000:1000",
            "--volume", f"/home/me/runs/{RUN_ID}:/results", "--env-file", "/dev/stdin", "--env",
            "PYSTRIBUTED_RESULTS=/results", *extra, IMAGE]


def test_a_run_is_a_replicated_job_asking_for_gpus_run_by_task_runner():
    args = swarm_service.service_args(run_args(), replicas=12, max_concurrent=None, gpus=2, variables=["A=1"])
    assert args[:12] == ["service", "create", "--detach", "--mode", "replicated-job", "--replicas", "12",
                         "--max-concurrent", "12", "--restart-condition", "none", "--stop-signal"]
    assert args[12:16] == ["SIGINT", "--stop-grace-period", "10s", "--env"]
    assert "PYSTRIBUTED_SLOT={{.Task.Slot}}" in args and "A=1" in args
    assert args[args.index("--generic-resource") + 1] == "gpu=2"
    assert args[args.index("--name") + 1] == f"pystributed-{RUN_ID}"
    assert args[args.index("--mount") + 1] == f"type=bind,source=/home/me/runs/{RUN_ID},target=/results"
    assert args[args.index("--container-label") + 1] == f"pystributed.run={RUN_ID}"
    assert args[-6:] == [IMAGE, "sh", "-c", context.RUN_PYTHON, "sh", "/pystributed/task_runner.py"]
    assert "--volume" not in args and "--detach" in args[:3]


def test_docker_run_options_carry_over_or_are_refused():
    args = swarm_service.service_args(run_args("--gpus", "all", "-v", "vol:/data:ro", "-e", "X=1", "--init",
                                               "-w", "/app"),
                              gpus=0)
    assert "--gpus" not in args and "--generic-resource" not in args  # GPUS_PER_TASK = 0: none asked for
    assert "type=volume,source=vol,target=/data,readonly" in args
    assert (args[args.index("X=1") - 1] == "--env" and "--init" in args
            and args[args.index("/app") - 1] == "--workdir")
    shm = swarm_service.service_args(run_args("--shm-size=1g"))  # a service has no --shm-size
    assert shm[shm.index("type=tmpfs,destination=/dev/shm,tmpfs-size=1g") - 1] == "--mount"
    with pytest.raises(ConfigError, match="--ipc"):
        swarm_service.service_args(run_args("--ipc=host"))
    with pytest.raises(ConfigError, match="--privileged"):  # before anything is built
        place_for(config.load(environ={}, REMOTE_SERVER="m", DOCKER_REGISTRY="r:5000", CLUSTER="swarm",
                              DOCKER_RUN_ARGS=["--privileged"]))


def test_the_config_chooses_the_swarm_and_refuses_what_it_cannot_do(cfg):
    assert isinstance(place_for(cfg), swarm.Swarm) and cfg.GPUS_PER_TASK == 1 and cfg.MAX_CONCURRENT is None
    for bad, match in [({"REMOTE_SERVER": "local"}, "manager"), ({"TRANSPORT": "remote-build"}, "TRANSPORT"),
                       ({"DATA": ["data/"]}, "REMOTE_DATA"), ({"CLUSTER": "k8s"}, "CLUSTER")]:
        with pytest.raises(ConfigError, match=match):
            config.load(environ={}, **{"REMOTE_SERVER": "m", "DOCKER_REGISTRY": "r:5000", "CLUSTER": "swarm",
                                       **bad})
    env = {"PYSTRIBUTED_REMOTE_SERVER": "m", "PYSTRIBUTED_TRANSPORT": "remote-build",
           "PYSTRIBUTED_GPUS_PER_TASK": "2",
           "PYSTRIBUTED_MAX_CONCURRENT": "3"}
    loaded = config.load(environ=env)
    assert (loaded.GPUS_PER_TASK, loaded.MAX_CONCURRENT) == (2, 3)
    with pytest.raises(ConfigError, match="MAX_CONCURRENT"):
        config.load(environ={}, REMOTE_SERVER="local", MAX_CONCURRENT=0)
    with pytest.raises(ConfigError, match="whole number"):
        config.load(environ={**env, "PYSTRIBUTED_GPUS_PER_TASK": "two"})


NODE = {"ID": "n1", "Description": {"Hostname": "gpu1", "Resources": {"GenericResources": [
    {"NamedResourceSpec": {"Kind": "gpu", "Value": "GPU-a"}},
    {"NamedResourceSpec": {"Kind": "gpu", "Value": "GPU-b"}},
    {"NamedResourceSpec": {"Kind": "fpga", "Value": "F"}}]}},
    "Spec": {"Role": "manager", "Availability": "active", "Labels": {"pystributed.ssh": "gpu-one"}},
    "Status": {"State": "ready", "Addr": "10.0.0.1"}}
WORKER = {"ID": "n2", "Description": {"Hostname": "gpu2"},
          "Spec": {"Role": "worker", "Availability": "drain"},
          "Status": {"State": "ready", "Addr": "10.0.0.2"}}


def test_nodes_as_swarm_describes_them():
    first, second = swarm_service.parse_nodes([json.dumps(NODE), json.dumps(WORKER), "not json"], user="me")
    assert (first.gpus, first.ssh, first.shown, first.ready) == (["GPU-a", "GPU-b"], "gpu-one", "gpu-one",
                                                                 True)
    # by address, as REMOTE_SERVER's user
    assert (second.gpus, second.ssh, second.ready) == ([], "me@10.0.0.2", False)


def test_tasks_as_swarm_describes_them_slot_0_included():
    tasks = [
        {"ID": "t2", "ServiceID": "s", "Slot": 1, "NodeID": "n1", "CreatedAt": "2026-01-01T00:00:02Z",
         "Status": {"State": "running", "ContainerStatus": {"ContainerID": "c2"}},
         "GenericResources": [{"NamedResourceSpec": {"Kind": "gpu", "Value": "GPU-a"}}]},
        {"ID": "t1", "ServiceID": "s", "NodeID": "n2", "CreatedAt": "2026-01-01T00:00:01Z",  # slot 0: omitted
         "Status": {"State": "complete", "ContainerStatus": {"ContainerID": "c1", "ExitCode": 0}}},
        {"ID": "t3", "ServiceID": "s", "Slot": 2, "CreatedAt": "2026-01-01T00:00:03Z",
         "Status": {"State": "pending", "Err": "no suitable node (insufficient resources on 3 nodes)"}},
    ]
    found = swarm_service.parse_tasks([json.dumps(t) for t in tasks])
    assert [(t.id, t.slot) for t in found] == [("t1", 0), ("t2", 1), ("t3", 2)]
    assert found[0].succeeded and found[0].exit_code == 0 and found[1].exit_code is None
    assert found[1].gpus == ["GPU-a"] and found[1].container == "c2" and not found[1].ended
    assert found[2].state in swarm_service.QUEUED and "insufficient resources" in found[2].error


def test_a_one_node_swarm_makes_the_run_folder_and_pulls_there(cfg, programs):
    place = swarm.Swarm(cfg)
    programs.expect("server", "swarm_nodes", out=json.dumps({**NODE,
                                                             "Spec": {**NODE["Spec"], "Labels": {}}}) + "\n")
    programs.expect("server", "rundir", "runs", RUN_ID, out=f"/home/me/runs/{RUN_ID}\n1000\n1000\nmachine "
                                                            "x86_64\n")
    assert place.prepare(RUN_ID) == (f"/home/me/runs/{RUN_ID}", "1000:1000")
    assert place.platform == "linux/amd64"  # what an image built elsewhere is built for
    assert programs.calls[1].argv[-2] == "me@10.0.0.1"  # the node, reached by its address
    programs.expect("server", "docker_command", "pull", IMAGE, out="done\n")
    assert place.docker(["docker", "pull", IMAGE], step="pull") == ""  # on every node that has the run folder
    assert programs.calls[2].argv[-2] == "me@10.0.0.1"


@pytest.mark.parametrize(("gpus_per_task", "platform"), [(1, "linux/amd64"), (0, "")])
def test_the_image_is_built_for_the_gpu_nodes_platform(cfg, programs, monkeypatch, gpus_per_task, platform):
    # An x86_64 node with GPUs beside an arm64 one without: tasks that ask for a GPU go to the first,
    # tasks that do not may go to either (no one platform: Swarm places by the image's).
    cpu_node = {**WORKER, "Spec": {**WORKER["Spec"], "Availability": "active",
                                   "Labels": {"pystributed.ssh": "cpu"}}}
    place = swarm.Swarm(dataclasses.replace(cfg, GPUS_PER_TASK=gpus_per_task))
    place._nodes = swarm_service.parse_nodes([json.dumps(NODE), json.dumps(cpu_node)])
    machines = {"gpu-one": "x86_64", "cpu": "aarch64"}
    for _ in machines:
        programs.expect("server", "rundir", "runs", RUN_ID,
                        out=f"/home/me/runs/{RUN_ID}\n1000\n1000\nmachine M\n")
    real_call = swarm.ssh.Ssh.call
    monkeypatch.setattr(swarm.ssh.Ssh, "call", lambda node, *args,
                        **kwargs: real_call(node, *args, **kwargs).replace(
        "machine M", f"machine {machines[node.name]}"))  # each node answers its own
    place.prepare(RUN_ID)
    assert place.platform == platform


def test_secrets_become_docker_secrets_of_the_job_never_its_spec(cfg, programs):
    place = swarm.Swarm(dataclasses.replace(cfg, SECRETS=["TOKEN"]))
    secret = f"pystributed-{RUN_ID}-s0"
    programs.expect("server", "docker_command", "secret", "create", "--label", f"pystributed.run={RUN_ID}",
                    secret, "-")
    programs.expect("server", "docker_command", "service", "create", "--with-registry-auth", "--secret",
                    f"source={secret},target=pystributed-TOKEN,uid=1000,gid=1000,mode=0400", "--detach", ...,
                    out="svc\n")
    assert place.create(run_args(), {"TOKEN": "s3cret", "A": "1"}, gpus=1) == "svc"
    made, created = programs.calls
    assert made.stdin == b"s3cret"
    assert created.stdin == b"A=1\n" and "PYSTRIBUTED_SECRETS=TOKEN" in created.words
    assert not any("s3cret" in word for word in created.words)
    # A retry of the job (the same job id) uses them; they go with the job's services.
    programs.expect("server", "docker_command", "service", "create", ..., out="svc2\n")
    place.create(run_args(), {"TOKEN": "s3cret"}, job_id=RUN_ID, gpus=1)
    place._nodes = []
    programs.expect("server", "docker_command", "service", "rm", f"pystributed-{RUN_ID}")
    programs.expect("server", "docker_command", "secret", "ls", "--format", "{{.Name}}",
                    out=f"{secret}\npystributed-other-s0\n")
    programs.expect("server", "docker_command", "secret", "rm", secret)
    place.remove_service(f"pystributed-{RUN_ID}", nodes=[])
