"""A run on a Slurm cluster (places/slurm.py), every program faked strictly: the run folder made from
the login node, the pull left to the nodes, the run a job of one task on the Slurm engine (one batch
job, its folder the run's, its exit code read from its state file); the container routes; and the
config's checks of the Slurm keys."""
import json
import types

import fakes
import pytest

from pystributed import config, context, docker, jobs, progress, registry
from pystributed.errors import ConfigError, StepError
from pystributed.places import place_for, server, slurm, slurm_routes
from pystributed.places.slurm_engine import SlurmEngine

RUN = "20261125-101502-3fa9c1"
NAME, FOLDER, MARK = docker.container_name(RUN), f"/home/me/runs/{RUN}", server.MARK


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000",
                       REMOTE_WORKDIR="runs", CLUSTER="slurm", GPUS_PER_TASK=2)


@pytest.fixture(autouse=True)
def tags(monkeypatch):
    """The registry's tags (registry.digest), as a dict to change: reg:5000/p:1 is there."""
    found = {"reg:5000/p:1": "sha256:" + "1" * 64}
    monkeypatch.setattr(registry, "digest", lambda ref: found.get(ref))
    return found


def test_the_pull_step_asks_the_registry_for_the_tag_the_nodes_will_pull(cfg, tags, monkeypatch):
    """The nodes pull as each job starts, where a tag the registry lost could not be pushed again:
    the pull step says "manifest unknown" now, which pipeline.pull answers by pushing again."""
    place = place_for(cfg)
    assert place.docker(docker.pull("reg:5000/p:1"), step="pull") == ""
    with pytest.raises(StepError) as error:
        place.docker(docker.pull("reg:5000/p:2"), step="pull")
    assert error.value.step == "pull" and "manifest unknown" in error.value.output

    def cannot_say(ref):
        raise StepError("clean", "HEAD https://reg:5000/v2/p/manifests/2: HTTP 401 Unauthorized")

    monkeypatch.setattr(registry, "digest", cannot_say)
    assert place.docker(docker.pull("reg:5000/p:2"), step="pull") == ""  # (a login): left to the nodes


def test_a_run_is_a_one_task_job_of_the_slurm_engine_its_folder_the_runs(cfg, programs, capsys):
    place = place_for(cfg)
    assert isinstance(place, slurm.Slurm) and place.queues
    programs.expect("server", "rundir", "runs", RUN, out=f"{FOLDER}\n1000\n1000\nmachine x86_64\n")
    programs.expect("server", "slurm_containers", out="docker\n")
    assert place.prepare(RUN) == (FOLDER, "1000:1000") and place.platform == "linux/amd64"
    # The pull is the nodes': nothing is asked of the login node, which has no Docker.
    assert not docker.has_image(place.docker, "reg:5000/p:1")
    assert place.docker(docker.pull("reg:5000/p:1"), step="pull") == ""
    job = jobs.Job(RUN, [jobs.Task(0, {})], single=True, remote_dir=FOLDER, image="reg:5000/p:1",
                   user="1000:1000")
    started = types.SimpleNamespace(steps=progress.steps_for(False), detach=False, env={"A": "1"})
    engine = SlurmEngine(cfg, place, job, sweep=started)
    engine.fetches = fakes.Inline()
    # One batch job, no array: the job script's mode 0 (a run's folder, not a task's below it).
    programs.expect("server", "slurm_submit", f"{FOLDER}.env", f"{FOLDER}/.pystributed-job.sh",
                    slurm.JOB_SCRIPT, "--job-name", NAME, "--chdir", FOLDER,
                    "--output", f"{FOLDER}/.pystributed-slurm-%j.out",
                    "--gres=gpu:2", f"{FOLDER}/.pystributed-job.sh", FOLDER, NAME, "0", "docker",
                    f"{FOLDER}.env", ..., out="7\n")
    engine.start()
    assert programs.calls[-1].stdin == b"A=1\n" and "PYSTRIBUTED_SWEEP_ID" not in programs.calls[-1].words
    looks = [(f"7|7|N/A|{NAME}|PENDING|Resources|\n", "", ""),
             (f"7|7|N/A|{NAME}|RUNNING|None|node2\n", "7 0,1\n", ""),
             (f"7|7|N/A|{NAME}|COMPLETING|None|node2\n", "", "0\n")]  # (its state saved: it has ended)
    for rows, gpus, saved in looks:
        programs.expect("server", "slurm_jobs", "--states", FOLDER, NAME,
                        out=f"{MARK} states\n{saved}{MARK} jobs\n{rows}{MARK} gpus\n{gpus}")
    state = {"State": {"ExitCode": 3}, "Node": "node2", "Gpus": "0,1"}
    programs.expect("server", "fetch", FOLDER, "", out=fakes.tar_of({
        "output.log": b"hello\n", ".pystributed-state.json": json.dumps(state).encode()}))
    programs.expect("server", "remove", f"{FOLDER}.env")
    done = engine.watch("stop")
    task = done.tasks[0]
    assert (task.status, task.exit_code, task.local_path) == ("failed", 3, str(engine.local.resolve()))
    assert (engine.local / "output.log").read_text() == "hello\n"  # the run's folder, no 0/ below it
    shown = capsys.readouterr().out
    assert "queued: Resources" in shown and "placed on node2, GPU 0,1" in shown
    assert shown.index("queued: Resources") < shown.index("placed on")


@pytest.mark.parametrize("route, words", [
    ("pyxis", ["--import", "/home/me/runs/.pystributed-images/sha256-ab12.sqsh",
               "--", "--container-image=reg:5000#p:1", f"--container-mounts={FOLDER}:/results",
               "--container-workdir=/app"]),
    ("apptainer", ["--", "--nv", "--bind", f"{FOLDER}:/results", "--pwd", "/app", "docker://reg:5000/p:1"]),
])
def test_pyxis_and_apptainer_get_the_variables_then_their_launchers_words(cfg, programs, route, words,
                                                                          monkeypatch):
    monkeypatch.setattr(slurm.registry, "digest", lambda ref: "sha256:ab12")
    place = slurm.Slurm(cfg)
    place.route = route
    start = docker.run_detached("reg:5000/p:1", run_id=RUN, results_dir=FOLDER, user="1000:1000",
                                env=docker.task_env(RUN))[2:]
    env = [word for key, value in docker.task_env(RUN).items() for word in ("--env", f"{key}={value}")]
    programs.expect("server", "slurm_submit", f"{FOLDER}.env", f"{FOLDER}/.pystributed-job.sh",
                    slurm.JOB_SCRIPT, "--job-name", NAME, "--chdir", FOLDER,
                    "--output", f"{FOLDER}/.pystributed-slurm-%j.out",
                    "--gres=gpu:2", f"{FOLDER}/.pystributed-job.sh", FOLDER, NAME, "0", route,
                    f"{FOLDER}.env", *env, *words, *context.task_command(), out="9\n")
    place.submit(start, {}, remote_dir=FOLDER, name=NAME)


def test_a_docker_option_is_refused_clearly(cfg, programs):
    place = slurm.Slurm(cfg)
    place.route = "apptainer"
    start = ["--detach", "--name", NAME, "--env-file", "/dev/stdin", "--cap-add", "SYS_ADMIN", "img"]
    with pytest.raises(StepError, match="--cap-add"):
        place.submit(start, {}, remote_dir=FOLDER, name=NAME)


def test_the_image_file_is_keyed_by_the_digest_else_by_the_refs_hash():
    assert slurm_routes.image_file("/w", "r/p:1", "sha256:ab") == "/w/.pystributed-images/sha256-ab.sqsh"
    keyed = slurm_routes.image_file("/w", "r/p:1", "")
    assert keyed.startswith("/w/.pystributed-images/ref-")
    assert keyed != slurm_routes.image_file("/w", "r/p:2", "")


def test_a_registry_that_will_not_tell_the_digest_keys_the_file_by_the_ref(cfg, monkeypatch):
    def refused(ref):
        raise StepError("clean", "HTTP 401")

    monkeypatch.setattr(slurm.registry, "digest", refused)
    assert "/.pystributed-images/ref-" in slurm.Slurm(cfg).image_file(FOLDER, "reg:5000/p:1")


@pytest.mark.parametrize("ref, pyxis, plain", [
    ("reg:5000/team/p:1", "reg:5000#team/p:1", False),
    ("127.0.0.1:5000/p:1", "127.0.0.1:5000#p:1", True),
    ("localhost/p:1", "localhost#p:1", True),
    ("python:3.12", "python:3.12", False),
    ("library/python:3.12", "library/python:3.12", False),
])
def test_image_names_for_pyxis_and_plain_http_for_apptainer(ref, pyxis, plain):
    assert slurm_routes.pyxis_image(ref) == pyxis and slurm_routes.plain_http(ref) is plain


def test_shm_size_is_left_to_the_node_whose_dev_shm_both_routes_share():
    args = ["--shm-size", "1g", "--label", "l=1", "--env", "A=1", "reg:5000/p:1", "python"]
    assert slurm_routes.split(args, "pyxis") == (["A=1"], [], "reg:5000/p:1", ["python"])


def test_apptainer_is_told_of_a_plain_http_registry():
    args = slurm_routes.apptainer_args(["--env", "A=1", "127.0.0.1:5000/p:1", "python"])
    assert args == ["--env", "A=1", "--env", "APPTAINER_NOHTTPS=1", "--env", "SINGULARITY_NOHTTPS=1",
                    "--", "--nv", "--pwd", "/app", "docker://127.0.0.1:5000/p:1", "python"]


@pytest.mark.parametrize("key, value, words", [
    ("SLURM_CONTAINERS", "podman", "must be \"docker\""),
    ("SLURM_ARGS", ["--array=0-3"], "pystributed sets itself"),
    ("SLURM_ARGS", ["--gres", "gpu:1"], "pystributed sets itself"),
    ("TRANSPORT", "remote-build", "must be 'registry' with CLUSTER = 'slurm'"),
    ("REMOTE_SERVER", "local", "needs the cluster's login node"),
])
def test_the_slurm_keys_are_checked(key, value, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        config.load(environ={}, **{"REMOTE_SERVER": "me@login", "DOCKER_REGISTRY": "reg:5000",
                                   "CLUSTER": "slurm", key: value})


def test_slurm_args_come_from_the_environment_as_words():
    cfg = config.load(environ={"PYSTRIBUTED_SLURM_ARGS": "--partition gpu --time=01:00:00"},
                      REMOTE_SERVER="h", DOCKER_REGISTRY="r:5000", CLUSTER="slurm")
    assert cfg.SLURM_ARGS == ["--partition", "gpu", "--time=01:00:00"] and cfg.is_cluster


def test_a_run_over_two_nodes_is_one_allocation_of_one_task_per_node(cfg, programs):
    cfg = config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                      CLUSTER="slurm", GPUS_PER_TASK=1, NODES=2, SLURM_ARGS=["--partition", "gpu"])
    place = slurm.Slurm(cfg)
    place.route = "docker"
    programs.expect("server", "slurm_submit", f"{FOLDER}.env", f"{FOLDER}/.pystributed-job.sh",
                    slurm.JOB_SCRIPT, "--job-name", NAME, "--chdir", FOLDER,
                    "--output", f"{FOLDER}/.pystributed-slurm-%j.out",
                    "--gres=gpu:1", "--nodes=2", "--ntasks-per-node=1", "--partition", "gpu",
                    f"{FOLDER}/.pystributed-job.sh", FOLDER, NAME, "ranks", "docker", f"{FOLDER}.env", ...,
                    out="8\n")
    job = jobs.Job(RUN, [jobs.Task(0, {})], single=True, remote_dir=FOLDER, image="reg:5000/p:1",
                   user="1000:1000")
    SlurmEngine(cfg, place, job, sweep=types.SimpleNamespace(steps=progress.steps_for(True), env={})).start()


@pytest.mark.parametrize("overrides, words", [
    ({"NODES": 2}, "only with CLUSTER = \"slurm\""),
    ({"NODES": 2, "CLUSTER": "swarm"}, "only with CLUSTER = \"slurm\""),
    ({"NODES": 0, "CLUSTER": "slurm"}, "at least 1"),
    ({"CLUSTER": "slurm", "SLURM_ARGS": ["--nodes=2"]}, "NODES asks for nodes"),
    ({"CLUSTER": "slurm", "SLURM_ARGS": ["-N", "2"]}, "pystributed sets itself"),
])
def test_nodes_are_for_slurm_only(overrides, words):
    with pytest.raises(ConfigError, match=words):
        config.load(environ={}, REMOTE_SERVER="me@gpu", DOCKER_REGISTRY="reg:5000", **overrides)


def test_a_sweep_over_several_nodes_is_refused_before_anything_runs():
    from pystributed import sweep
    from pystributed.errors import PystributedError

    cfg = config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", CLUSTER="slurm",
                      NODES=2)
    with pytest.raises(PystributedError, match="for a single run"):
        sweep.run(cfg, params=[{"x": 1}], source="x\n")
