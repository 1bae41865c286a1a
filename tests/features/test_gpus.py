"""`--gpus`: checked before the push (an engine without the NVIDIA Container Toolkit is told so),
and `--gpus free` made `--gpus device=UUID` of a GPU without a compute process. nvidia-smi's
answers here are those of a real H200 (../shared/gpu/ of the issue), and made-up ones."""
import pytest

from pystributed import config, features, pipeline, progress, results
from pystributed.errors import StepError
from pystributed.features import gpus
from pystributed.places import local

RUN_ID = "20261126-101502-3fa9c1"
RUNTIMES = ("server", "docker_command", "info", "--format", "{{json .Runtimes}}")
RUNC = '{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}}\n'
NVIDIA = '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}\n'
# Measured on an H200 (nvidia-smi 580.159.04): --query-gpu=index,uuid,memory.used, idle and busy, and
# --query-compute-apps=gpu_uuid,used_memory while one process ran; idle, it printed nothing at all.
H200_IDLE = "0, GPU-df0c8b7c-a9a9-ba23-c71a-d70bf5a53bc9, 0\n"
H200_BUSY = "0, GPU-f4e4fe0e-0e5e-080b-17fa-3fd049dc36fc, 7027\n"
H200_APPS_BUSY = "GPU-f4e4fe0e-0e5e-080b-17fa-3fd049dc36fc, 7018\n"
FOUR = ("0, GPU-a0, 14\n"      # a process that just started: a few MiB, yet busy
        "1, GPU-a1, 500\n"     # no process (memory held otherwise): free
        "2, GPU-a2, 80000\n"
        "3, GPU-a3, 0\n")


def answer(toolkit="", smi="/usr/bin/nvidia-smi", gpus_csv=None, apps_csv=""):
    """server.sh's answer to `gpus [free]`."""
    text = f"@@pystributed@@ toolkit\n{toolkit}\n@@pystributed@@ nvidia-smi\n{smi}\n"
    if gpus_csv is not None:
        text += f"@@pystributed@@ gpus\n{gpus_csv}@@pystributed@@ apps\n{apps_csv}"
    return text


def gpu_mounts(run):
    return [feature.mounts(run) for feature in run.features if isinstance(feature, gpus.Gpus)]


def a_run(args, place_cls=local.Local):
    cfg = config.load(environ={}, REMOTE_SERVER="local", DOCKER_RUN_ARGS=args)
    run = pipeline.Run(cfg, place_cls(cfg), progress.Steps(quiet=True), features=features.for_run(cfg),
                       result=results.RunResult(RUN_ID, config={"DOCKER_RUN_ARGS": list(args)}))
    run.user, run.result.remote_dir, run.result.image = "1000:1000", "/w/r", "img:1"
    return run


@pytest.mark.parametrize(("args", "values"), [
    (["--gpus", "all"], ["all"]), (["--gpus=free", "--shm-size", "1g"], ["free"]),
    (["--gpus", '"device=1,2"'], ['"device=1,2"']), (["--shm-size", "1g"], []), (["--gpus"], []),
])
def test_gpus_are_found_in_both_forms(args, values):
    assert gpus.requested(args) == values


def test_only_a_run_with_gpus_gets_the_feature():
    assert not any(isinstance(f, gpus.Gpus) for f in features.for_run(config.load(environ={},
                                                                                  REMOTE_SERVER="local")))
    assert any(isinstance(f, gpus.Gpus) for f in a_run(["--gpus", "all"]).features)


def test_free_becomes_one_device_in_dockers_syntax():
    assert gpus.with_device(["--gpus", "free", "--ipc=host"], "GPU-a1") == ["--gpus", "device=GPU-a1",
                                                                            "--ipc=host"]
    assert gpus.with_device(["--gpus=free"], "GPU-a1") == ["--gpus=device=GPU-a1"]
    assert gpus.with_device(["--gpus", "all"], "GPU-a1") == ["--gpus", "all"]


def test_the_real_h200_answers_parse():
    [idle] = gpus.parse(H200_IDLE, "")  # no process: an empty answer
    assert (idle.index, idle.uuid, idle.memory_used, idle.processes) == (
        0, "GPU-df0c8b7c-a9a9-ba23-c71a-d70bf5a53bc9", 0, 0)
    [busy] = gpus.parse(H200_BUSY, H200_APPS_BUSY)
    assert busy.memory_used == 7027 and busy.processes == 1


def test_a_gpu_without_a_compute_process_is_taken_even_with_more_memory_used():
    gpu, why = gpus.pick(gpus.parse(FOUR, "GPU-a0, 14\nGPU-a2, 79000\n"))
    assert gpu.uuid == "GPU-a3" and why == "took GPU 3 GPU-a3: no compute process, 0 MiB used"
    gpu, _ = gpus.pick(gpus.parse(FOUR, "GPU-a0, 14\nGPU-a2, 79000\nGPU-a3, 10\n"))
    assert gpu.uuid == "GPU-a1"  # 500 MiB used, but by no compute process: free


def test_when_all_are_busy_the_one_using_the_least_memory_is_taken():
    apps = "GPU-a0, 14\nGPU-a1, 400\nGPU-a2, 79000\nGPU-a3, 0\nGPU-a3, 0\n"
    gpu, why = gpus.pick(gpus.parse(FOUR, apps))
    assert gpu.uuid == "GPU-a3"
    assert why == ("took GPU 3 GPU-a3: all 4 GPUs have compute processes, this one uses the least memory, 0 "
                   "MiB (2 processes)")
    gpu, _ = gpus.pick(gpus.parse("0, GPU-b0, [N/A]\n1, GPU-b1, 5\n1, GPU-b1, 5\n", "GPU-b0, "
                                                                                    "[N/A]\nGPU-b1, 5\n"))
    assert gpu.uuid == "GPU-b1"  # memory unknown counts as most


@pytest.mark.parametrize(("gpus_csv", "apps_csv"), [
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", ""),
    ("index, uuid, memory.used [MiB]\n0, GPU-a, 3 MiB\n", ""),  # a header: not the format asked
    ("0, GPU-a, 3\n", "GPU-a, 424, 7018\n"),  # three fields: not the query asked
])
def test_an_answer_of_another_form_is_not_guessed_at(gpus_csv, apps_csv):
    with pytest.raises(ValueError):
        gpus.parse(gpus_csv, apps_csv)


def test_an_engine_with_the_nvidia_runtime_is_asked_once(programs):
    programs.expect(*RUNTIMES, out=NVIDIA)
    run = a_run(["--gpus", "all"])
    run.hooks("before_build")
    assert not any(gpu_mounts(run))  # nothing to mount, nothing to change for `all`
    assert run.config.DOCKER_RUN_ARGS == ["--gpus", "all"]


def test_the_toolkits_hook_without_a_runtime_is_enough(programs):
    programs.expect(*RUNTIMES, out=RUNC)
    programs.expect("server", "gpus", out=answer(toolkit="/usr/bin/nvidia-container-runtime-hook\n"))
    a_run(["--gpus", '"device=1"']).hooks("before_build")


def test_no_runtime_and_no_toolkit_is_refused_before_anything_is_built_or_pushed(programs):
    programs.expect(*RUNTIMES, out=RUNC)
    programs.expect("server", "gpus", out=answer(smi=""))
    run = a_run(["--gpus", "all"])
    with pytest.raises(StepError) as error:
        pipeline.build(run)  # the strict fake fails on any docker build, inspect or push
    assert error.value.step == "gpus"
    assert str(error.value).startswith(
        "gpus failed: `--gpus all` cannot work on the local engine: its Docker engine has no `nvidia` "
        "runtime (runtimes: io.containerd.runc.v2, runc) and no NVIDIA Container Toolkit hook")
    assert "Nothing was pushed." in error.value.message and "nvidia-ctk runtime configure" in error.value.hint


def test_free_without_nvidia_smi_is_named_before_the_push(programs):
    programs.expect(*RUNTIMES, out=NVIDIA)
    programs.expect("server", "gpus", out=answer(smi=""))
    with pytest.raises(StepError) as error:
        a_run(["--gpus", "free"]).hooks("before_build")
    assert "`--gpus free` needs nvidia-smi on the local engine" in error.value.message
    assert "device=1" in error.value.hint


def test_free_is_picked_after_the_pull_and_reaches_docker_run(programs):
    programs.expect(*RUNTIMES, out=NVIDIA)
    programs.expect("server", "gpus", out=answer())
    programs.expect("server", "gpus", "free",
                    out=answer(gpus_csv=FOUR, apps_csv="GPU-a0, 14\nGPU-a2, 79000\n"))
    run = a_run(["--shm-size", "1g", "--gpus", "free"])
    run.steps = progress.Steps()
    run.hooks("before_build")
    run.mounts = [arg for args in run.hooks("mounts") for arg in args]
    assert run.steps.rows[-1][0] == "gpus" and run.steps.rows[-1][5].startswith("took GPU 3 GPU-a3:")
    args = pipeline.start_args(run)  # docker run's: DOCKER_RUN_ARGS come right before the image
    assert args[args.index("img:1") - 4:args.index("img:1")] == ["--shm-size", "1g", "--gpus",
                                                                 "device=GPU-a3"]
    assert run.result.config["DOCKER_RUN_ARGS"] == ["--shm-size", "1g", "--gpus", "device=GPU-a3"]


def test_a_failing_nvidia_smi_is_shown_with_its_words(programs):
    programs.expect("server", "gpus", "free", code=9,
                    stderr="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")
    with pytest.raises(StepError) as error:
        gpus.choose(local.Local(config.load(environ={}, REMOTE_SERVER="local")))
    assert "couldn't communicate with the NVIDIA driver" in error.value.output
    assert "is the NVIDIA driver loaded there" in error.value.hint


def test_no_gpu_listed_is_an_error(programs):
    programs.expect("server", "gpus", "free", out=answer(gpus_csv=""))
    with pytest.raises(StepError, match="lists no GPU"):
        gpus.choose(local.Local(config.load(environ={}, REMOTE_SERVER="local")))


def test_a_place_not_reached_with_a_shell_is_left_alone(programs):
    from pystributed.places import Place

    class Cluster(Place):  # CLUSTER = "swarm" gives GPUs its own way (GPUS_PER_TASK)
        name = "a cluster"

        def __init__(self, config):
            self.config = config

    run = a_run(["--gpus", "free"], place_cls=Cluster)
    run.hooks("before_build")  # the strict fake: no command at all
    assert not any(gpu_mounts(run)) and run.config.DOCKER_RUN_ARGS == ["--gpus", "free"]


def test_the_magics_gpus_free_reaches_the_feature():
    from IPython.core.magic_arguments import parse_argstring

    from pystributed import magic

    base = config.load(environ={}, REMOTE_SERVER="local", DOCKER_RUN_ARGS=["--shm-size", "1g"])
    options = magic.overrides(parse_argstring(magic.RemoteMagics.remote, "--gpus free"), base)
    assert options == {"DOCKER_RUN_ARGS": ["--shm-size", "1g", "--gpus", "free"]}
    cfg = config.load(environ={}, REMOTE_SERVER="local", **options)
    assert any(isinstance(f, gpus.Gpus) for f in features.for_run(cfg))
