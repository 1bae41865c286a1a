"""BASE_IMAGE's id in the image's tag and in the --cache key (features/base.py): asked of the engine
that builds, here before the pack or on the server in the build step; pulled only when it is not there."""
import hashlib
import io

import pytest

from pystributed import config, pipeline, progress, results
from pystributed.errors import StepError
from pystributed.features import base, cache
from pystributed.places import local, ssh

INSPECT = ("image", "inspect", "--format", "{{.Id}}")
INSPECT_BASE = ("image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}")
BASE = "lab/base:latest"
DIGEST = "d" * 64
LOWER, CELL = "1" * 64, "c" * 64


def a_run(transport="registry", server="gpu-box", steps=None, results_dir="results"):
    cfg = config.load(environ={}, REMOTE_SERVER=server, DOCKER_REGISTRY="reg:5000", TRANSPORT=transport,
                      BASE_IMAGE=BASE, LOCAL_RESULTS_DIR=results_dir)
    place = local.Local(cfg) if server == "local" else ssh.Ssh(cfg)
    run = pipeline.Run(cfg, place, steps or progress.Steps(quiet=True), digest=DIGEST, lower=LOWER, cell=CELL,
                       result=results.RunResult("20261125-101502-3fa9c1"))
    run.features = [base.BaseImage()]
    return run


def tagged(run, base_id):
    run.digest, run.lower = DIGEST, LOWER
    run.hooks("before_pack")
    run.hooks("before_build")
    assert run.digest == hashlib.sha256(f"{DIGEST}\nFROM {base_id}".encode()).hexdigest()
    assert run.lower == hashlib.sha256(f"{LOWER}\nFROM {base_id}".encode()).hexdigest()
    return run.digest


def test_with_remote_build_the_id_the_connect_step_asked_is_used(programs):
    run = a_run("remote-build")
    run.place.base_id = "sha256:there"  # server.sh's rundir answered it (places/server.py)
    tagged(run, "sha256:there")  # no command of its own


def test_the_base_images_id_here_is_in_the_tag(programs):
    run = a_run()
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:old\n")
    old = tagged(run, "sha256:old")
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:old\n")
    assert tagged(run, "sha256:old") == old  # the same base: the same tag
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:new\n")  # rebuilt under the same tag
    assert tagged(run, "sha256:new") != old


def test_a_base_that_is_not_here_is_pulled_first_in_a_step_of_its_own(programs, capsys):
    run = a_run(steps=progress.Steps())
    programs.expect("docker", *INSPECT_BASE, BASE, code=1, stderr="Error: No such image")
    programs.expect("docker", "pull", BASE)
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:pulled\n")
    tagged(run, "sha256:pulled")
    assert capsys.readouterr().out.startswith(f"base    pulling {BASE} here ... done in ")


def test_a_base_that_cannot_be_pulled_is_named_before_anything_is_built(programs):
    run = a_run()
    programs.expect("docker", *INSPECT_BASE, BASE, code=1, stderr="Error: No such image")
    programs.expect("docker", "pull", BASE, code=1, stderr="pull access denied")
    with pytest.raises(StepError) as excinfo:
        run.hooks("before_pack")
    assert excinfo.value.hint == (f"BASE_IMAGE ({BASE}) is not here and could not be pulled: check its name, "
                                  f"or `docker pull {BASE}` here (after `docker login` if its "
                                  "registry needs one).")


def test_with_remote_build_the_servers_id_is_asked_in_the_build_step(programs):
    run = a_run("remote-build")
    run.hooks("before_pack")  # nothing asked here: the server builds
    programs.expect("server", "docker_command", *INSPECT_BASE, BASE, out="sha256:there\n")
    run.hooks("before_build")
    assert run.digest == hashlib.sha256(f"{DIGEST}\nFROM sha256:there".encode()).hexdigest()


def test_the_build_step_tags_the_image_after_the_hooks(programs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = a_run(server="local")
    run.context = io.BytesIO(b"context")
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:b1\n")
    run.hooks("before_pack")
    # The hash of all but the cell layer, with the base's id; then the cell layer's.
    tag = hashlib.sha256(f"{LOWER}\nFROM sha256:b1".encode()).hexdigest()[:16] + "-" + CELL[:16]
    programs.expect("docker", *INSPECT, f"reg:5000/pystributed:{tag}", out="sha256:img\n")
    pipeline.build(run)
    assert run.result.image == f"reg:5000/pystributed:{tag}"


@pytest.mark.parametrize("transport", ["registry", "remote-build"])
def test_the_cache_key_holds_the_base_images_id(programs, tmp_path, transport):
    run = a_run(transport, results_dir=str(tmp_path / "results"))
    feature = run.features[0]
    run.features.append(cache.Cache(base=feature))
    engine = ("server", "docker_command") if transport == "remote-build" else ("docker",)
    keys = []
    for base_id in ("sha256:old", "sha256:old", "sha256:new"):
        programs.expect(*engine, *INSPECT_BASE, BASE, out=base_id + "\n")
        run.hooks("before_pack")
        assert run.hooks("reuse") == [None, None]
        keys.append(run.features[1].key)
        assert feature.id == base_id  # with remote-build: asked once, before the build step
    assert keys[0] == keys[1] != keys[2]
    assert cache.key(run.config, DIGEST, "sha256:old") == keys[0]


def test_an_engine_that_is_not_running_is_not_taken_for_a_missing_base(programs):
    run = a_run()
    programs.expect("docker", *INSPECT_BASE, BASE, code=1,
                    stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the "
                           "docker daemon running?")
    with pytest.raises(StepError) as excinfo:
        run.hooks("before_pack")
    assert excinfo.value.hint == "Is the Docker engine running here (`docker info`)?"


DRIVER_STATUS = ("docker", "info", "--format", "{{json .DriverStatus}}")
CLASSIC = '[["Backing Filesystem","extfs"],["Supports d_type","true"]]\n'
CONTAINERD = '[["driver-type","io.containerd.snapshotter.v1"]]\n'


def built_for(base_id, platform=""):
    return hashlib.sha256(f"{DIGEST}\nFROM "
                          f"{base_id}{f' --platform={platform}' if platform else ''}".encode()).hexdigest()


def test_a_base_of_another_platform_than_the_servers_is_pulled_for_it_and_the_image_built_for_it(programs):
    # An Apple Silicon Mac (BASE_IMAGE here is its linux/arm64 variant), an x86_64 server.
    run = a_run()
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:arm linux/arm64\n")
    run.hooks("before_pack")
    run.place.platform = "linux/amd64"  # (its `uname -m`, at connect)
    programs.expect(*DRIVER_STATUS, out=CLASSIC)  # the classic store: one variant per tag
    programs.expect("docker", "pull", "--platform", "linux/amd64", BASE)
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:x86 linux/amd64\n")
    with run.steps.step("build", "here"):  # (as in the pipeline)
        run.hooks("before_build")
    assert run.platform == "linux/amd64" and run.digest == built_for("sha256:x86", "linux/amd64")


def test_the_containerd_store_has_the_builder_take_the_variant_itself(programs):
    run = a_run()
    # always its own platform
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:index linux/arm64\n")
    run.hooks("before_pack")
    run.place.platform = "linux/amd64"
    programs.expect(*DRIVER_STATUS, out=CONTAINERD)
    run.hooks("before_build")  # nothing pulled, on every run
    assert run.platform == "linux/amd64" and run.digest == built_for("sha256:index", "linux/amd64")


@pytest.mark.parametrize(("server", "here", "there", "platform"), [
    # The base here of the server's platform: built for it all the same (the engine here may not be).
    ("gpu-box", "linux/amd64", "linux/amd64", "linux/amd64"),
    ("gpu-box", "", "linux/amd64", "linux/amd64"),  # an engine that did not say the base's
    ("gpu-box", "linux/arm64", "", ""),  # a server that did not say: the engine's own, as before
    ("local", "linux/arm64", "linux/amd64", ""),  # the local engine runs what it builds
])
def test_the_image_is_built_for_the_servers_platform_with_nothing_pulled_when_the_base_is(programs, server,
                                                                                          here,
                                                                                          there, platform):
    run = a_run(server=server)
    programs.expect("docker", *INSPECT_BASE, BASE, out=f"sha256:b {here}\n")
    run.hooks("before_pack")
    run.place.platform = there
    run.hooks("before_build")
    assert run.platform == platform and run.digest == built_for("sha256:b", platform)


def test_a_base_that_has_no_variant_for_the_servers_platform_says_what_to_do(programs):
    run = a_run()
    programs.expect("docker", *INSPECT_BASE, BASE, out="sha256:arm linux/arm64\n")
    run.hooks("before_pack")
    run.place.platform = "linux/amd64"
    programs.expect(*DRIVER_STATUS, out=CLASSIC)
    programs.expect("docker", "pull", "--platform", "linux/amd64", BASE, code=1,
                    stderr="no matching manifest for linux/amd64 in the manifest list entries")
    with pytest.raises(StepError) as excinfo, run.steps.step("build", "here"):
        run.hooks("before_build")
    assert excinfo.value.step == "build" and "no matching manifest" in excinfo.value.output
    assert excinfo.value.hint.startswith("gpu-box runs linux/amd64 images, and BASE_IMAGE (lab/base:latest) "
                                         "here is not one")
    assert 'TRANSPORT = "remote-build"' in excinfo.value.hint
