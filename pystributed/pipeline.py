"""The five steps of a remote run, top to bottom: save (done by the magic), build, push,
run on the server, fetch the results."""
import collections
import os
import sys
from pathlib import Path

from pystributed import context, docker, remote, results, util
from pystributed.errors import PystributedError, RemoteCellError, StepError
from pystributed.progress import Steps

EXIT_HINTS = {
    125: "Docker could not start the container: check DOCKER_RUN_ARGS and the image.",
    126: "The entry point could not be executed: check that the image runs `python`.",
    127: "The entry point was not found: BASE_IMAGE must provide `python` on its PATH.",
    137: "The container was killed (SIGKILL), most likely for running out of memory.",
}


def run(config, *, code_path=None, quiet=False):
    """Build, push, run and fetch the saved cell; return a RunResult. Raise RemoteCellError if
    the cell exits non-zero (after its results are fetched), StepError if a step fails."""
    code_path = code_path or config.USER_CODE_PATH
    check_code(code_path)
    steps = Steps(quiet=quiet)
    run_id = results.new_run_id()
    image = f"{config.image_repository}:{run_id}"
    where = "the local engine" if config.is_local else config.REMOTE_SERVER

    with steps.step("build", image):
        build(config, code_path, image)
    if config.DOCKER_REGISTRY:
        with steps.step("push", config.DOCKER_REGISTRY):
            push(config, image)
    with steps.step("connect", where):
        run_dir, user = make_run_dir(config, run_id)
    if not config.is_local:
        with steps.step("pull", where):
            pull(config, image)
    with steps.step("run", f"run {run_id} on {where}", live=True):
        exit_code, tail = run_container(config, image, run_id, run_dir, user, steps)
    with steps.step("fetch", f"to {Path(config.LOCAL_RESULTS_DIR) / run_id}"):
        result = fetch(config, run_id, run_dir, exit_code)
    if exit_code:
        raise RemoteCellError(result, failure_message(config, result, tail))
    return result


def check_code(code_path):
    if not os.path.isfile(code_path):
        raise PystributedError(
            f"there is no saved cell at {code_path}: mark a cell with %%save_for_remote first "
            "(or set USER_CODE_PATH)")
    source = Path(code_path).read_text(encoding="utf-8")
    try:
        compile(source, code_path, "exec")
    except SyntaxError as e:
        raise PystributedError(f"{code_path} does not compile: {e.msg} (line {e.lineno})") from None


def build(config, code_path, image):
    excludes = []
    results_dir = Path(config.LOCAL_RESULTS_DIR).resolve()
    if Path.cwd() in results_dir.parents:
        excludes.append(results_dir.relative_to(Path.cwd()).as_posix())

    def write_context(stdin):
        context.write(stdin, context_dir=".", code_path=code_path, base_image=config.BASE_IMAGE,
                      requirements=config.REQUIREMENTS, excludes=excludes)

    util.run(docker.build(image), step="build", write_stdin=write_context,
             hint="Is the Docker engine running here (`docker info`)? Check BASE_IMAGE and REQUIREMENTS.")


def push(config, image):
    util.run(docker.push(image), step="push",
             hint=f"Is {config.DOCKER_REGISTRY} up, and are you logged in here "
                  f"(`docker login {config.DOCKER_REGISTRY.split('/')[0]}` on this machine)?")


def make_run_dir(config, run_id):
    """Create REMOTE_WORKDIR/<run-id>/ on the server; return its absolute path and the
    uid:gid the container runs as, so that its files belong to the ssh user."""
    run_dir = f"{remote.workdir(config)}/{run_id}"
    out = util.run(
        remote.command(config, ["mkdir", "-p", "--", run_dir], ["cd", "--", run_dir], ["pwd"],
                       ["id", "-u"], ["id", "-g"]),
        step="connect", cwd=remote.cwd(config),
        hint=f"Check that `ssh {config.REMOTE_SERVER}` works from a terminal here, and that "
             f"REMOTE_WORKDIR ({config.REMOTE_WORKDIR}) can be created there.")
    path, uid, gid = out.splitlines()[-3:]
    if ":" in path:  # docker's --volume would split it there
        raise StepError("connect", f"the run folder {path} holds a ':', which docker cannot mount",
                        hint="Choose a REMOTE_WORKDIR without ':'.")
    return path, f"{uid}:{gid}"


def pull(config, image):
    util.run(remote.command(config, docker.pull(image)), step="pull", cwd=remote.cwd(config),
             hint=f"Can the server reach {config.DOCKER_REGISTRY}, and is it logged in there "
                  f"(`docker login` on {config.REMOTE_SERVER})?")


def run_container(config, image, run_id, run_dir, user, steps):
    """Start the container detached, stream its output here, then wait for its exit code and
    keep its output as output.log in the run folder. Return the exit code and the output's end."""
    tail = collections.deque(maxlen=200)
    env = {"PYSTRIBUTED_RESULTS": context.RESULTS_IN_CONTAINER, "PYSTRIBUTED_RUN_ID": run_id,
           # The ssh user's uid has no home in the image; libraries want somewhere to cache.
           "HOME": "/tmp"}
    start = docker.run_detached(image, run_id=run_id, results_dir=run_dir, user=user, env=env,
                                extra_args=config.DOCKER_RUN_ARGS)

    def show(stream):
        def write(text):
            stream.write(text)
            stream.flush()
            tail.append(text)
        return write

    cwd = remote.cwd(config)
    try:
        code = util.stream(remote.command(config, remote.redirect(start, "/dev/null"),
                                          docker.logs(run_id, follow=True)),
                           step="run", on_stdout=show(sys.stdout), on_stderr=show(sys.stderr), cwd=cwd)
    except KeyboardInterrupt:
        steps.say(f"\nInterrupted: stopping container {docker.container_name(run_id)} ...\n")
        util.run(remote.command(config, docker.stop(run_id)), step="run", cwd=cwd)
        finish(config, run_id, run_dir)
        raise
    if code:
        raise StepError("run", f"the container could not be started or followed (exit code {code})",
                        output="".join(tail), hint=EXIT_HINTS.get(code, ""))
    return finish(config, run_id, run_dir), "".join(tail)


def finish(config, run_id, run_dir):
    """Wait for the container, save its log into the run folder, remove it; return its exit code."""
    out = util.run(remote.command(config, docker.wait(run_id),
                                  remote.redirect(docker.logs(run_id), f"{run_dir}/{results.LOG_NAME}"),
                                  remote.redirect(docker.remove(run_id), "/dev/null")),
                   step="run", cwd=remote.cwd(config))
    return int(out.split()[0])


def fetch(config, run_id, run_dir, exit_code):
    local = Path(config.LOCAL_RESULTS_DIR) / run_id
    local.parent.mkdir(parents=True, exist_ok=True)
    files, skipped = util.run(
        remote.command(config, ["tar", "-C", run_dir, "-cf", "-", "."]), step="fetch",
        cwd=remote.cwd(config), read_stdout=lambda stream: results.extract(stream, local),
        hint=f"The results are still on the server in {run_dir}; fetch them again later.")
    if skipped:
        print(f"fetch: left out (not plain files inside the run folder): {', '.join(skipped)}",
              file=sys.stderr)
    return results.RunResult(run_id, exit_code, local.resolve(), files)


def failure_message(config, result, tail):
    lines = [f"the cell failed with exit code {result.exit_code} (run {result.run_id})."]
    if result.exit_code in EXIT_HINTS:
        lines.append(EXIT_HINTS[result.exit_code])
    lines.append(f"Full log: {result.log}; results fetched to {result.local_path}")
    last = tail.strip().splitlines()[-30:]
    if last:
        lines += ["Remote output (end):"] + ["    " + line for line in last]
    return "\n".join(lines)
