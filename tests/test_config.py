import sys

import pytest

from pystributed import config
from pystributed.errors import ConfigError


def write(tmp_path, text, name="config.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_with_only_the_server(tmp_path):
    cfg = config.load(write(tmp_path, "REMOTE_SERVER = 'local'\n"), environ={})
    assert cfg.REMOTE_SERVER == "local" and cfg.is_local
    assert cfg.DOCKER_IMAGE_NAME == "pystributed"
    assert cfg.USER_CODE_PATH == "user_code.py"
    assert cfg.LOCAL_RESULTS_DIR == "results"
    assert cfg.REMOTE_WORKDIR == "pystributed-runs"
    assert cfg.BASE_IMAGE == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert cfg.DOCKER_RUN_ARGS == [] and cfg.REQUIREMENTS is None
    assert cfg.image_repository == "pystributed"


def test_config_py_in_the_working_directory_is_read(tmp_path):
    write(tmp_path, "import os\nREMOTE_SERVER = 'gpu'\nDOCKER_REGISTRY = 'reg:5000'\n_helper = 1\n")
    cfg = config.load(environ={})
    assert cfg.REMOTE_SERVER == "gpu" and cfg.image_repository == "reg:5000/pystributed"


def test_pystributed_config_names_another_file(tmp_path):
    path = write(tmp_path, "REMOTE_SERVER = 'other'\nDOCKER_REGISTRY = 'r'\n", "elsewhere.py")
    assert config.load(environ={"PYSTRIBUTED_CONFIG": path}).REMOTE_SERVER == "other"


def test_environment_overrides_the_file_and_splits_lists(tmp_path):
    path = write(tmp_path, "REMOTE_SERVER = 'gpu'\nDOCKER_REGISTRY = 'r'\nDOCKER_RUN_ARGS = "
                           "['--gpus', 'all']\n")
    cfg = config.load(path, environ={
        "PYSTRIBUTED_REMOTE_SERVER": "other",
        "PYSTRIBUTED_DOCKER_RUN_ARGS": "--shm-size 8g --env 'A=b c'",
        "PYSTRIBUTED_SANDBOX": "/tmp/x",  # not a key, not a typo of one: ignored
    })
    assert cfg.REMOTE_SERVER == "other"
    assert cfg.DOCKER_RUN_ARGS == ["--shm-size", "8g", "--env", "A=b c"]


def test_keyword_overrides_win(tmp_path):
    path = write(tmp_path, "REMOTE_SERVER = 'gpu'\nDOCKER_REGISTRY = 'r'\n")
    assert config.load(path, environ={}, REMOTE_SERVER="local").is_local


def test_missing_server_names_what_to_set():
    with pytest.raises(ConfigError) as excinfo:
        config.load(environ={})
    msg, = excinfo.value.args
    assert msg.startswith("REMOTE_SERVER is not set in config.py (none found in the working directory)")
    assert "'local'" in msg


def test_misspelt_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "REMOTE_SERVER = 'local'\nDOCKER_IMAGE_NAEM = 'x'\n")
    with pytest.raises(ConfigError) as excinfo:
        config.load(path, environ={})
    msg, = excinfo.value.args
    assert msg == f"unknown config key DOCKER_IMAGE_NAEM in {path}: did you mean DOCKER_IMAGE_NAME?"


def test_misspelt_environment_variable_suggests_too():
    with pytest.raises(ConfigError, match=r"REMOTE_SEVRER in \$PYSTRIBUTED_REMOTE_SEVRER: did you "
                                          r"mean REMOTE_SERVER"):
        config.load(environ={"PYSTRIBUTED_REMOTE_SEVRER": "x"})


@pytest.mark.parametrize(("line", "expected"), [
    ("DOCKER_RUN_ARGS = '--gpus all'", ("DOCKER_RUN_ARGS in {} must be a list of strings, e.g. "
                                       "['--gpus', 'all']")),
    ("REMOTE_WORKDIR = 5", "REMOTE_WORKDIR in {} must be a string, not int 5"),
    ("REQUIREMENTS = ['a']", "REQUIREMENTS in {} must be a string or None, not list ['a']"),
])
def test_wrong_types(tmp_path, line, expected):
    path = write(tmp_path, f"REMOTE_SERVER = 'local'\n{line}\n")
    with pytest.raises(ConfigError) as excinfo:
        config.load(path, environ={})
    assert excinfo.value.args[0] == expected.format(path)


@pytest.mark.parametrize(("key", "value", "why"), [
    ("REMOTE_SERVER", "-oProxyCommand=touch /tmp/x", "is not an ssh destination"),
    ("REMOTE_SERVER", "host; rm -rf /", "is not an ssh destination"),
    ("DOCKER_IMAGE_NAME", "My Image", "is not a valid image name"),
    ("DOCKER_IMAGE_NAME", "-x", "is not a valid image name"),
    ("DOCKER_REGISTRY", "--config=/x", "is not a registry address"),
    ("BASE_IMAGE", "--privileged", "is not an image reference"),
    ("REMOTE_WORKDIR", "a\nb", "must be a non-empty path on one line"),
])
def test_values_that_could_be_read_as_options_are_refused(key, value, why):
    overrides = {"REMOTE_SERVER": "local", key: value}
    with pytest.raises(ConfigError, match=why):
        config.load(environ={}, **overrides)


def test_a_remote_server_needs_a_registry():
    with pytest.raises(ConfigError, match="DOCKER_REGISTRY = '' in the defaults is empty"):
        config.load(environ={}, REMOTE_SERVER="gpu")


def test_a_broken_config_file_says_so(tmp_path):
    path = write(tmp_path, "REMOTE_SERVER = \n")
    with pytest.raises(ConfigError, match=f"{path} could not be loaded: SyntaxError"):
        config.load(path, environ={})


def test_saving_needs_no_server():
    assert config.load(environ={}, require_server=False).USER_CODE_PATH == "user_code.py"


def test_env_and_secrets():
    cfg = config.load(environ={"PYSTRIBUTED_ENV": "A=1 B='two words'", "PYSTRIBUTED_SECRETS": "HF_TOKEN"},
                      REMOTE_SERVER="local")
    assert cfg.ENV == {"A": "1", "B": "two words"} and cfg.SECRETS == ["HF_TOKEN"]
    with pytest.raises(ConfigError, match="SECRETS = \\['bad name'\\] in the arguments holds 'bad name'"):
        config.load(environ={}, REMOTE_SERVER="local", SECRETS=["bad name"])
    with pytest.raises(ConfigError) as excinfo:
        config.load(environ={"PYSTRIBUTED_ENV": '{"A": "1"}'}, REMOTE_SERVER="local")
    assert str(excinfo.value) == ("$PYSTRIBUTED_ENV must be NAME=VALUE words, e.g. PYSTRIBUTED_ENV=\"A=1 "
                                  "B='two words'\", not '{A:'")


def test_data_keys():
    cfg = config.load(environ={"PYSTRIBUTED_DATA": "data/ 'my weights.pt'",
                               "PYSTRIBUTED_CONTEXT_WARN_MB": "50",
                               "PYSTRIBUTED_REMOTE_DATA": "/srv/imagenet=imagenet"}, REMOTE_SERVER="local")
    assert cfg.DATA == ["data/", "my weights.pt"] and cfg.CONTEXT_WARN_MB == 50
    assert cfg.REMOTE_DATA == {"/srv/imagenet": "imagenet"}
    assert config.load(environ={}, REMOTE_SERVER="local").CONTEXT_WARN_MB == 500


@pytest.mark.parametrize(("key", "value", "why"), [
    ("DATA", ["../elsewhere"], "each entry must be a path relative to the notebook's folder"),
    ("DATA", ["/abs/data"], "each entry must be a path relative"),
    ("DATA", ["a:b"], "without '..' or ':'"),
    ("DATA", ["."], "each entry must be a path relative"),
    ("REMOTE_DATA", {"srv/data": "data"}, "the keys are absolute paths on the server"),
    ("REMOTE_DATA", {"/srv/data": "../x"}, "the values are where it appears in the container"),
    ("CONTEXT_WARN_MB", -1, "must be a number"),
    ("CONTEXT_WARN_MB", "big", "must be a number"),
])
def test_data_values_are_checked(key, value, why):
    with pytest.raises(ConfigError, match=why):
        config.load(environ={}, REMOTE_SERVER="local", **{key: value})


def test_tasks_per_container_is_a_clusters_and_at_least_1():
    cfg = config.load(environ={"PYSTRIBUTED_TASKS_PER_CONTAINER": "6"}, REMOTE_SERVER="me@login",
                      DOCKER_REGISTRY="reg:5000", CLUSTER="slurm")
    assert cfg.TASKS_PER_CONTAINER == 6
    assert config.load(environ={}, REMOTE_SERVER="gpu", DOCKER_REGISTRY="r").TASKS_PER_CONTAINER == 1
    with pytest.raises(ConfigError, match="TASKS_PER_CONTAINER = 2 .*one container of a cluster"):
        config.load(environ={}, REMOTE_SERVER="gpu", DOCKER_REGISTRY="r", TASKS_PER_CONTAINER=2)
    with pytest.raises(ConfigError, match="at least 1"):
        config.load(environ={}, REMOTE_SERVER="gpu", DOCKER_REGISTRY="r", TASKS_PER_CONTAINER=0)


@pytest.mark.parametrize("key", config.KEYS)
def test_every_key_has_its_type_checked(key):
    # Each key's check comes from its annotation: a key whose annotation has none is a ConfigError too.
    with pytest.raises(ConfigError, match=f"^{key} in the arguments must be .*, not object <object"):
        config.load(environ={}, **{"REMOTE_SERVER": "local", key: object()})


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("GPUS_PER_TASK", -1, "GPUS_PER_TASK in the arguments must be a whole number (0 or more), not int -1"),
    ("GPUS_PER_TASK", True,
     "GPUS_PER_TASK in the arguments must be a whole number (0 or more), not bool True"),
    ("MAX_CONCURRENT", 0, "MAX_CONCURRENT in the arguments must be a whole number (at least 1), not int 0"),
    ("NODES", 1.0, "NODES in the arguments must be a whole number (at least 1), not float 1.0"),
    ("ENV", {"A": 1}, "ENV in the arguments must be a dict of strings to strings, not dict {'A': 1}"),
])
def test_whole_numbers_and_dicts(key, value, expected):
    with pytest.raises(ConfigError) as excinfo:
        config.load(environ={}, **{"REMOTE_SERVER": "local", key: value})
    assert str(excinfo.value) == expected


def test_numbers_and_none_from_the_environment():
    cfg = config.load(environ={"PYSTRIBUTED_MAX_CONCURRENT": "", "PYSTRIBUTED_REQUIREMENTS": "",
                               "PYSTRIBUTED_GPUS_PER_TASK": "2"}, REMOTE_SERVER="local")
    assert cfg.MAX_CONCURRENT is None and cfg.REQUIREMENTS is None and cfg.GPUS_PER_TASK == 2
    cfg = config.load(environ={"PYSTRIBUTED_MAX_CONCURRENT": "3", "PYSTRIBUTED_REQUIREMENTS": "r.txt"},
                      REMOTE_SERVER="local")
    assert cfg.MAX_CONCURRENT == 3 and cfg.REQUIREMENTS == "r.txt"
    with pytest.raises(ConfigError) as excinfo:
        config.load(environ={"PYSTRIBUTED_NODES": "two"}, REMOTE_SERVER="local")
    assert str(excinfo.value) == "NODES must be a whole number, not 'two'"
    with pytest.raises(ConfigError) as excinfo:
        config.load(environ={"PYSTRIBUTED_CONTEXT_WARN_MB": "1e"}, REMOTE_SERVER="local")
    assert str(excinfo.value) == "CONTEXT_WARN_MB must be a number, not '1e'"


def test_the_slurm_keys_are_read_on_slurm_only():
    # A run on one server or a swarm reads no SLURM_* key: a value meant for Slurm does not stop it.
    for cluster in ("", "swarm"):
        config.load(environ={}, REMOTE_SERVER="me@gpu", DOCKER_REGISTRY="r", CLUSTER=cluster,
                    SLURM_ARGS=["-J", "x"], SLURM_CONTAINERS="podman")
    with pytest.raises(ConfigError, match="SLURM_CONTAINERS = 'podman' in the arguments must be \"docker\""):
        config.load(environ={}, REMOTE_SERVER="me@gpu", DOCKER_REGISTRY="r", CLUSTER="slurm",
                    SLURM_CONTAINERS="podman")
