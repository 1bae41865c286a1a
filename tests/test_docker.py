"""Every docker argument list, and asking an engine whether it has an image."""
import pytest

from pystributed import docker
from pystributed.errors import StepError

RUN_ID = "20261125-101502-3fa9c1"


def test_argument_lists():
    assert docker.build("reg/p:1") == ["docker", "build", "--quiet", "--tag", "reg/p:1", "-"]
    assert docker.inspect_image("reg/p:1") == ["docker", "image", "inspect", "--format", "{{.Id}}", "reg/p:1"]
    assert docker.python_version("reg/p:1") == [
        "docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "reg/p:1",
        "-c", 'exec "$(command -v python3 || command -v python)" "$@"', "sh",  # python3, else python
        "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    assert docker.push("reg/p:1") == ["docker", "push", "reg/p:1"]
    assert docker.pull("reg/p:1") == ["docker", "pull", "reg/p:1"]
    assert docker.remove_images("a:1", "b:2") == ["docker", "image", "rm", "--", "a:1", "b:2"]
    assert docker.container_name(RUN_ID) == f"pystributed-{RUN_ID}"


def test_a_platform_is_asked_for_only_when_given():
    assert docker.build("reg/p:1", "linux/amd64") == [
        "docker", "build", "--quiet", "--platform", "linux/amd64", "--tag", "reg/p:1", "-"]
    assert docker.pull("reg/p:1", "linux/arm64") == ["docker", "pull", "--platform", "linux/arm64", "reg/p:1"]
    assert docker.inspect_image_platform("b:1") == [
        "docker", "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", "b:1"]


@pytest.mark.parametrize(("machine", "platform"), [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64"), ("arm64", "linux/arm64"),
    ("ppc64le", "linux/ppc64le"),
    ("x86_64\n", "linux/amd64"), ("", ""), ("sparc64", "")])
def test_the_platform_of_a_servers_machine(machine, platform):
    assert docker.platform_of(machine) == platform


def test_the_run_starts_detached_with_the_users_arguments_last():
    env = {"PYSTRIBUTED_RESULTS": "/results", "A": "x y"}
    assert docker.run_detached("reg/p:1", run_id=RUN_ID, results_dir="/w/it's a run", user="1000:1000",
                               env=env,
                               extra_args=["--gpus", "all", "--user", "0"]) == [
        "docker", "run", "--detach", "--name", f"pystributed-{RUN_ID}", "--label",
        f"pystributed.run={RUN_ID}",
        "--user", "1000:1000", "--volume", "/w/it's a run:/results", "--env-file", "/dev/stdin",
        "--env", "PYSTRIBUTED_RESULTS=/results", "--env", "A=x y", "--gpus", "all", "--user", "0", "reg/p:1"]


def test_repo_refs_are_read_here(programs):
    programs.expect("docker", "image", "inspect", "--format", "{{range .RepoTags}}{{println "
                                                              ".}}{{end}}{{range "
                                                              ".RepoDigests}}{{println .}}{{end}}", "reg/p:1",
                    out="reg/p:1\nreg/p@sha256:1\nother/p@sha256:2\n\n")
    assert docker.repo_refs("reg/p:1") == ["reg/p:1", "reg/p@sha256:1", "other/p@sha256:2"]


def test_an_engine_has_an_image_if_it_can_inspect_it(programs):
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", "a:1", out="sha256:1\n")
    programs.expect("docker", "image", "inspect", "--format", "{{.Id}}", "b:1", code=1,
                    stderr="No such image")
    assert docker.has_image(docker.here, "a:1") is True
    assert docker.has_image(docker.here, "b:1") is False
    assert [call.step for call in programs.calls] == ["build", "build"]


def test_here_runs_the_list_on_this_machine(programs):
    programs.expect("docker", "push", "a:1", code=1, stderr="denied")
    with pytest.raises(StepError) as error:
        docker.here(docker.push("a:1"), step="push", hint="Log in.")
    assert (error.value.step, error.value.output, error.value.hint) == ("push", "denied", "Log in.")
    programs.expect("docker", "build", "--quiet", "--tag", "a:1", "-", out="sha256:1\n")
    assert docker.here(docker.build("a:1"), step="build",
                       stdin=lambda pipe: pipe.write(b"ctx")) == "sha256:1\n"
    assert programs.calls[-1].stdin == b"ctx"
