"""server.sh's `gpus` action, run for real by `sh` (dash and bash) through the Local place, with a
PATH of the test's own: a fake nvidia-smi (or none) and the toolkit's hook (or none). The
sandbox's e2e test (tests/e2e/test_gpus_e2e.py) runs it over ssh under each login shell."""
import shutil

import pytest

from pystributed import config
from pystributed.errors import StepError
from pystributed.features import gpus
from pystributed.places import local, server

FAKE_SMI = r"""#!/bin/sh
# Answers only what server.sh asks, from the files next to it, as nvidia-smi does.
here=$(dirname "$0")
case "$*" in
"--query-gpu=index,uuid,memory.used --format=csv,noheader,nounits") file=$here/gpus.csv ;;
"--query-compute-apps=gpu_uuid,used_memory --format=csv,noheader,nounits") file=$here/apps.csv ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
while IFS= read -r line; do printf '%s\n' "$line"; done <"$file"
exit "$(while IFS= read -r code; do printf '%s' "$code"; done <"$here/code")"
"""


@pytest.fixture(params=["dash", "bash"])
def bin_dir(request, tmp_path, monkeypatch):
    """PATH is this folder alone: sh (dash or bash), dd for the loader, and what a test puts there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "sh").symlink_to(shutil.which(request.param))
    (folder / "dd").symlink_to(shutil.which("dd"))
    (folder / "dirname").symlink_to(shutil.which("dirname"))
    (folder / "code").write_text("0\n")
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path))
    return folder


def smi(folder, gpus_csv, apps_csv="", code=0):
    (folder / "nvidia-smi").write_text(FAKE_SMI)
    (folder / "nvidia-smi").chmod(0o755)
    (folder / "gpus.csv").write_text(gpus_csv)
    (folder / "apps.csv").write_text(apps_csv)
    (folder / "code").write_text(f"{code}\n")


def place():
    return local.Local(config.load(environ={}, REMOTE_SERVER="local"))


def test_nothing_installed_answers_empty_sections(bin_dir):
    assert server.sections(place().call("gpus", step="gpus")) == {"toolkit": [], "nvidia-smi": []}
    # `free` asks nvidia-smi only where there is one
    assert server.sections(place().call("gpus", "free", step="gpus")) == {"toolkit": [], "nvidia-smi": []}


def test_the_toolkits_hooks_and_nvidia_smi_are_found_on_path(bin_dir):
    for name in ("nvidia-container-runtime-hook", "nvidia-cdi-hook"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    smi(bin_dir, "0, GPU-a, 0\n")
    found = server.sections(place().call("gpus", step="gpus"))
    assert found == {"toolkit": [f"{bin_dir}/nvidia-container-runtime-hook", f"{bin_dir}/nvidia-cdi-hook"],
                     "nvidia-smi": [f"{bin_dir}/nvidia-smi"]}


def test_free_answers_the_gpus_and_no_process_as_nothing(bin_dir):
    smi(bin_dir, "0, GPU-df0c8b7c-a9a9-ba23-c71a-d70bf5a53bc9, 0\n")  # the H200's, idle: apps print nothing
    found = server.sections(place().call("gpus", "free", step="gpus"))
    assert found["gpus"] == ["0, GPU-df0c8b7c-a9a9-ba23-c71a-d70bf5a53bc9, 0"] and found["apps"] == []
    gpu, why = gpus.choose(place())
    assert gpu.uuid == "GPU-df0c8b7c-a9a9-ba23-c71a-d70bf5a53bc9" and why.endswith("no compute "
                                                                                   "process, 0 MiB used")


def test_the_free_one_of_several_is_chosen(bin_dir):
    smi(bin_dir, "0, GPU-a0, 7027\n1, GPU-a1, 14\n2, GPU-a2, 300\n", "GPU-a0, 7018\nGPU-a1, 14\n")
    gpu, _ = gpus.choose(place())
    assert gpu.index == 2


def test_a_failing_nvidia_smi_says_why_on_stderr(bin_dir):
    smi(bin_dir, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", code=9)
    with pytest.raises(StepError) as error:
        gpus.choose(place())
    assert error.value.code == 9 and "couldn't communicate with the NVIDIA driver" in error.value.output
