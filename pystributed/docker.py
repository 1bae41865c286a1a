"""Every `docker` argument list, in one place."""

RUN_LABEL = "pystributed.run"


def build(tag):
    # "-": the Dockerfile and the context arrive as one tar stream on stdin (see context.py).
    # --quiet: stdout is then the image id alone; errors still go to stderr.
    return ["docker", "build", "--quiet", "--tag", tag, "-"]


def inspect_image(ref):
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def repo_digests(ref):
    """Prints the image's digests in registries it was pushed to (or pulled from)."""
    return ["docker", "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", ref]


def python_version(ref):
    """Prints the image's Python major.minor (without the network, whatever its entry point)."""
    return ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", ref,
            "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]


def push(ref):
    return ["docker", "push", ref]


def pull(ref):
    return ["docker", "pull", ref]


def container_name(run_id):
    return f"pystributed-{run_id}"


def run_detached(ref, *, run_id, results_dir, user, env, extra_args=()):
    """Start the run's container in the background: the run goes on if the connection drops.
    More variables come from stdin (--env-file /dev/stdin: values that must not be seen in `ps`).
    `extra_args` (DOCKER_RUN_ARGS) come last, so that they can override ours (e.g. --user)."""
    cmd = ["docker", "run", "--detach", "--name", container_name(run_id),
           "--label", f"{RUN_LABEL}={run_id}", "--user", user,
           "--volume", f"{results_dir}:{env['PYSTRIBUTED_RESULTS']}", "--env-file", "/dev/stdin"]
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, *extra_args, ref]


def inspect_container(run_id):
    return ["docker", "container", "inspect", "--format", "{{.State.Status}}", container_name(run_id)]


def logs(run_id, *, follow=False):
    return ["docker", "logs", *(["--follow"] if follow else []), container_name(run_id)]


def wait(run_id):
    return ["docker", "wait", container_name(run_id)]


def interrupt(run_id):
    # SIGINT: the cell gets a KeyboardInterrupt, as in a notebook, so its `finally:` blocks run
    # and its traceback lands in the log. (Python as PID 1 ignores the SIGTERM of `docker stop`.)
    return ["docker", "kill", "--signal", "INT", container_name(run_id)]


def stop(run_id, seconds=10):
    """Wait up to `seconds` for the container to end, then kill it."""
    return ["docker", "stop", "--time", str(seconds), container_name(run_id)]


def remove(run_id):
    return ["docker", "rm", "--force", container_name(run_id)]


def state_format(*, cancelled=False):
    """A container's state as one line of JSON (saved as .pystributed-state.json in its run folder when it
    is removed, so that its exit code and times outlive it). `cancelled` marks `cancel`'s stop."""
    return ('{"Cancelled":' + ("true" if cancelled else "false") + ',"Name":{{json .Name}},'
            '"Image":{{json .Config.Image}},"State":{{json .State}},"Mounts":{{json .Mounts}}}')


def inspect_state(*containers, cancelled=False):
    return ["docker", "container", "inspect", "--format", state_format(cancelled=cancelled), *containers]


def list_containers(label=RUN_LABEL):
    """The ids of all containers (running or not) with `label` (`key` or `key=value`)."""
    return ["docker", "container", "ls", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}"]


def container_images():
    """The image of every container on the engine, ours or not: those images are in use."""
    return ["docker", "container", "ls", "--all", "--format", "{{.Image}}"]


def list_images(repository):
    return ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--", repository]


def remove_images(*refs):
    # No --force: Docker then refuses to remove an image a container uses.
    return ["docker", "image", "rm", "--", *refs]
