"""Every `docker` argument list of ours, and running one here. (On a server, a place runs them:
places/server.py, with the commands that need a shell there in server.sh.)"""
from pystributed import context, util
from pystributed.errors import StepError

RUN_LABEL = "pystributed.run"


def here(argv, *, step, hint="", stdin=None, read=None):
    """Run a docker argument list on this machine's engine; its output (or what `read` made of it)."""
    return util.run(argv, step=step, hint=hint, write_stdin=stdin, read_stdout=read)


def has_image(engine, ref):
    """Whether the engine (`here`, or a place's `docker`) has the image."""
    try:
        engine(inspect_image(ref), step="build")
    except StepError:
        return False
    return True


def build(tag, platform=""):
    # "-": the Dockerfile and the context arrive as one tar stream on stdin (see context.py).
    # --quiet: stdout is then the image id alone; errors still go to stderr.
    # --platform only when asked: the machine's own is the default, and old engines want it so.
    return ["docker", "build", "--quiet", *(["--platform", platform] if platform else []), "--tag", tag, "-"]


def inspect_image(ref):
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def inspect_image_platform(ref):
    """Prints the image's id, then its platform (`linux/amd64`)."""
    return ["docker", "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", ref]


def storage_driver():
    """Prints the engine's storage driver's status, as JSON (which names the containerd image store)."""
    return ["docker", "info", "--format", "{{json .DriverStatus}}"]


# `uname -m` on a server, as Docker names the architecture (Go's GOARCH).
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
                 "armv6l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
                 "riscv64": "riscv64"}


def platform_of(machine):
    """The platform (`linux/amd64`) Docker runs on a Linux machine whose `uname -m` is `machine`;
    "" for one we do not know."""
    arch = ARCHITECTURES.get(machine.strip())
    return f"linux/{arch}" if arch else ""


def repo_refs(ref):
    """The image's tags, then its digests in registries it was pushed to (or pulled from)."""
    argv = ["docker", "image", "inspect", "--format",
            "{{range .RepoTags}}{{println .}}{{end}}{{range .RepoDigests}}{{println .}}{{end}}", ref]
    return util.output(argv).split()


def pushed(image, refs):
    """Whether the registry has the tag `image`, whose content it has (a digest in `refs`, repo_refs'
    answer): so if the image has no other tag there; else (the same content built again under a new tag,
    as after pystributed's tags changed) the registry is asked, and one that cannot say is pushed to."""
    repository = image.rsplit(":", 1)[0]
    if [r for r in refs if r.startswith(repository + ":")] == [image]:
        return True
    from pystributed import registry  # only then: `python -m pystributed run` starts sooner without urllib

    return registry.has(image) is True


def python_version(ref):
    """Prints the image's Python major.minor (without the network, whatever its entry point): its
    python3, else its python, as the image's CMD runs it (context.RUN_PYTHON)."""
    return ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c", context.RUN_PYTHON,
            "sh",
            "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]


def push(ref):
    return ["docker", "push", ref]


def pull(ref, platform=""):
    return ["docker", "pull", *(["--platform", platform] if platform else []), ref]


def container_name(run_id):
    return f"pystributed-{run_id}"  # server.sh names it so too


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


def job_run_args(run_args):
    """A Slurm job's `docker run` arguments (places/slurm_job.sh runs them on the node, in the
    foreground, adding the task's name, variables and GPUs): run_detached's after `docker run`,
    without --detach, --name and the variables on stdin (the job reads them from a file), and with
    task_runner.py as the command, which saves the output and the exit code in the task's folder."""
    args = list(run_args)
    for option, size in (("--detach", 1), ("--name", 2), ("--env-file", 2)):
        at = args.index(option)
        del args[at:at + size]
    return [*args, *context.task_command()]


def task_env(run_id, *, sweep_id=None, index=None, attempt=None):
    """The variables every container of ours gets on its command line (ENV and SECRETS go on its stdin)."""
    # The ssh user's uid has no home in the image; libraries want somewhere to cache.
    env = {"PYSTRIBUTED_RESULTS": context.RESULTS_IN_CONTAINER, "PYSTRIBUTED_RUN_ID": run_id, "HOME": "/tmp"}
    if sweep_id:
        env["PYSTRIBUTED_SWEEP_ID"] = sweep_id
    if index is not None:
        env["PYSTRIBUTED_TASK"] = str(index)
    if attempt is not None:
        env["PYSTRIBUTED_ATTEMPT"] = str(attempt)
    return env


def logs(container, *, follow=False):
    return ["docker", "logs", *(["--follow"] if follow else []), container]


def interrupt(container):
    """SIGINT, as Ctrl-C: the cell's `finally:` blocks run."""
    return ["docker", "kill", "--signal", "INT", container]


def stop(container, seconds=10):
    return ["docker", "stop", "--time", str(seconds), container]


def containers_of_service(service, *, running=False):
    return ["docker", "ps", *([] if running else ["--all"]), "--quiet", "--filter",
            f"label=com.docker.swarm.service.name={service}"]


def unplaceable(service):
    """A new version of the service that no node can take: Swarm stops its tasks (see
    swarm.remove_service)."""
    return ["docker", "service", "update", "--detach", "--constraint-add",
            "node.labels.pystributed.cancelled==true",
            service]


def remove_services(*services):
    return ["docker", "service", "rm", *services]


def create_secret(name, job_id):
    """A Swarm secret whose value comes on stdin, labelled with the job it is for."""
    return ["docker", "secret", "create", "--label", f"{RUN_LABEL}={job_id}", name, "-"]


def secrets():
    return ["docker", "secret", "ls", "--format", "{{.Name}}"]


def remove_secrets(*names):
    return ["docker", "secret", "rm", *names]


def remove_images(*refs):
    # No --force: Docker then refuses to remove an image a container uses.
    return ["docker", "image", "rm", "--", *refs]


def runtimes():
    """Prints the engine's runtimes as JSON (`{"runc": …, "nvidia": …}`)."""
    return ["docker", "info", "--format", "{{json .Runtimes}}"]
