"""The steps of a remote run, top to bottom: save (done by the magic), build, push, run on the
server, fetch the results. Each step's commands come from docker.py and remote.py."""
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from pystributed import cache as runs_cache
from pystributed import (
    checks,
    context,
    data,
    docker,
    live,
    progress,
    record,
    remote,
    requirements,
    results,
    util,
)
from pystributed.errors import EXIT_HINTS, PystributedError, StepError, remote_cell_error


def run(config, *, code_path=None, source=None, quiet=False, detach=False, on_interrupt=None, variables=None,
        cache=False):
    """Build, push, run and fetch the saved cell (`source`, else read from `code_path`); return a
    RunResult. With `detach`, return as soon as the container has started. Raise RemoteCellError
    if the cell exits non-zero (after its results are fetched), StepError if a step fails.
    `variables` (a variables.Exchange) sends and brings back variables; with `cache`, an earlier
    run of the same build context and settings is reused without contacting the server."""
    code_path = code_path or config.USER_CODE_PATH
    source = check_code(code_path, source)
    check_tools(config)
    run_env = environment(config)  # before anything runs: a missing secret is the user's to fix
    checks.show(config, source, build_excludes(config))
    steps = progress.steps_for(quiet)
    with tempfile.TemporaryFile() as build_context:
        digest = pack(config, code_path, source, build_context, variables)
        key = cache and runs_cache.key(config, digest)
        reused = key and runs_cache.reuse(config, key, variables, steps)
        if reused:
            return reused
        result = results.RunResult(
            results.new_run_id(), server=where(config), started=results.now_iso(),
            source_sha256=hashlib.sha256(source.encode()).hexdigest(), config=dataclasses.asdict(config))
        with _recorded(config, result), remote.shared_connection(config) as shared:
            result = _run(shared, result, steps, code_path=code_path, digest=digest, build_context=build_context,
                          run_env=run_env, detach=detach, on_interrupt=on_interrupt or config.ON_INTERRUPT,
                          variables=variables)
    if variables and result.status == "succeeded":
        variables.collect(result)
        if key:
            runs_cache.remember(config, key, result)
    return result


def _run(config, result, steps, *, code_path, digest, build_context, run_env, detach, on_interrupt, variables):
    with build_context:  # closed before the run itself: not kept on disk for its length
        with steps.step("connect", result.server):
            result.remote_dir, user = make_run_dir(config, result.run_id)
        with _run_dir_removed_on_failure(config, result.remote_dir):
            with steps.step("build", "on the server" if config.TRANSPORT == "remote-build" else "here"):
                if variables:
                    variables.check_python(config, on_server=config.TRANSPORT == "remote-build")
                build(config, digest, build_context, result, steps)
            if config.DOCKER_REGISTRY and config.TRANSPORT == "registry":
                with steps.step("push", config.DOCKER_REGISTRY):
                    push(config, result, steps)
            if not config.is_local and config.TRANSPORT == "registry":
                with steps.step("pull", result.server):
                    pull(config, result, steps)
            mounts = []
            if config.DATA or config.REMOTE_DATA:
                with steps.step("data", result.server):
                    mounts = data.mounts(config, result, steps)
        start = Start(start_command(config, result, user, mounts), run_env)
        if detach:
            with steps.step("start", result.server):
                util.run(remote.command(config, start.script()), step="run", cwd=remote.cwd(config),
                         write_stdin=start.write_env, hint=EXIT_HINTS[125])
            result.status = "running"
            steps.say(f"Run {result.run_id} is running on {result.server}. Follow it and fetch its "
                      f"results with runner.attach({result.run_id!r}) (or, in a shell, "
                      f"`python -m pystributed logs -f {result.run_id}`, then `fetch {result.run_id}`).\n")
            return result
    return follow(config, result, steps, start=start, on_interrupt=on_interrupt,
                  entry=context.entry_point(".", code_path), code_path=code_path)


def follow(config, result, steps, *, start, on_interrupt, entry, code_path):
    """Stream the run's output (starting the container first if `start` is given), wait for it,
    fetch its results. What happens on an interrupt: `on_interrupt` ('stop' or 'detach')."""
    result.status = "running"
    record.save(config.LOCAL_RESULTS_DIR, result)
    try:
        with steps.step("run", f"run {result.run_id} on {result.server}", live=True):
            try:
                stderr, output = stream_output(config, result, start)
                result.exit_code = finish(config, result)
            except StepError as e:
                raise dropped(config, result, e) from None
    except KeyboardInterrupt:
        interrupted(config, result, steps, on_interrupt)
        raise
    except StepError:
        if result.status != "detached":  # a dropped connection leaves the run going
            result.status, result.ended = "failed", results.now_iso()
        record.save(config.LOCAL_RESULTS_DIR, result)
        raise
    result.status = "succeeded" if result.exit_code == 0 else "failed"
    try:
        fetch(config, result, steps)
    except StepError:
        record.save(config.LOCAL_RESULTS_DIR, result)  # finished, but not fetched: local_path stays None
        raise
    if result.exit_code:
        raise remote_cell_error(result, stderr, output, entry=entry, code_path=code_path)
    return result


def interrupted(config, result, steps, on_interrupt):
    name = docker.container_name(result.run_id)
    if on_interrupt == "detach":
        result.status = "detached"
        record.save(config.LOCAL_RESULTS_DIR, result)
        steps.say(f"\nInterrupted: run {result.run_id} goes on on {result.server} (container {name}). "
                  f"Reattach with runner.attach({result.run_id!r}).\n")
        return
    steps.say(f"\nInterrupted: stopping container {name} and fetching what results exist ...\n")
    result.status = "interrupted"
    try:
        stop(config, result.run_id)
        result.exit_code = finish(config, result)
        fetch(config, result, steps)
    except StepError as e:
        steps.say(f"{e}\n")
    record.save(config.LOCAL_RESULTS_DIR, result)


def stop(config, run_id, *, step="run"):
    """Interrupt the cell in its container (SIGINT), then stop it."""
    # The container may have ended meanwhile: then `kill` fails, and `stop` has nothing to do.
    script = f"{remote.redirect(docker.interrupt(run_id), '/dev/null')}; {shlex.join(docker.stop(run_id))}"
    util.run(remote.command(config, script), step=step, cwd=remote.cwd(config))


def check_code(code_path, source=None):
    if source is None and not os.path.isfile(code_path):
        raise PystributedError(
            f"there is no saved cell at {code_path}: mark a cell with %%save_for_remote first "
            "(or set USER_CODE_PATH)")
    if source is None:
        source = Path(code_path).read_text(encoding="utf-8")
    if not source.strip():
        raise PystributedError(f"the cell saved at {code_path} is empty: nothing to run")
    try:
        compile(source, code_path, "exec")
    except SyntaxError as e:
        raise PystributedError(f"{code_path} does not compile: {e.msg} (line {e.lineno})") from None
    return source


def check_tools(config):
    needed = ["docker"] + ([] if config.is_local else ["ssh"])
    for tool in needed:
        if not shutil.which(tool):
            raise PystributedError(
                f"`{tool}` is not installed here (not found on PATH): pystributed runs it. "
                + ("Install Docker: https://docs.docker.com/engine/install/" if tool == "docker"
                   else "Install the OpenSSH client (e.g. `apt-get install openssh-client`)."))


def environment(config):
    """ENV, and SECRETS taken from this machine's environment: given to the container at run time
    through the standard input of `docker run --env-file /dev/stdin`, so that no value is ever in
    an image layer, a log, or a command line that `ps` shows on the server."""
    env = dict(config.ENV)
    for name in config.SECRETS:
        if name not in os.environ:
            raise PystributedError(f"SECRETS names {name}, which is not set in this environment: "
                                   f"set it here (e.g. export {name}=...) before running")
        env[name] = os.environ[name]
    for name, value in env.items():
        if "\n" in value or "\0" in value:
            raise PystributedError(f"the value of {name} holds a newline, which docker's --env-file cannot carry")
    return env


class Start:
    """The command that starts the container, and the environment it reads from stdin."""

    def __init__(self, command, env):
        self.command, self.env = command, env

    def script(self):
        return remote.redirect(self.command, "/dev/null", stderr=False)

    def write_env(self, stdin):
        stdin.write("".join(f"{k}={v}\n" for k, v in self.env.items()).encode())


def where(config):
    return "the local engine" if config.is_local else config.REMOTE_SERVER


def pack(config, code_path, source, build_context, variables=None):
    """Write the build context to `build_context`; return its hash, which names the image."""
    with requirements.prepared(config.REQUIREMENTS, source) as requirements_file:
        return context.write(build_context, context_dir=".", code_path=code_path, source=source,
                             base_image=config.BASE_IMAGE, requirements=requirements_file,
                             excludes=build_excludes(config),
                             runner_files=variables.runner_files() if variables else None)


def build(config, digest, build_context, result, steps):
    """Tag the image by the build context's hash: an image built from the same content before
    (here, or on the server with TRANSPORT = "remote-build") is used again."""
    result.image = f"{config.image_repository}:{digest[:16]}"
    on_server = config.TRANSPORT == "remote-build"
    if image_present(config, result.image, on_server=on_server):
        steps.progress("up to date")
        return
    build_context.seek(0)
    command = remote.command(config, docker.build(result.image)) if on_server else docker.build(result.image)
    util.run(command, step="build", cwd=remote.cwd(config) if on_server else None,
             write_stdin=lambda stdin: shutil.copyfileobj(build_context, stdin, 1 << 20),
             hint="Is the Docker engine running " + ("on the server" if on_server else "here (`docker info`)")
                  + "? Check BASE_IMAGE and REQUIREMENTS.")


def build_excludes(config):
    """Left out of the build context besides .dockerignore: the local results, and DATA (mounted)."""
    excludes = data.excluded(config)
    results_dir = Path(config.LOCAL_RESULTS_DIR).resolve()
    if Path.cwd() in results_dir.parents:
        excludes.append(results_dir.relative_to(Path.cwd()).as_posix())
    return excludes


def image_present(config, image, *, on_server=False):
    command = docker.inspect_image(image)
    if on_server:
        command = remote.command(config, command)
    return util.succeeds(command, cwd=remote.cwd(config) if on_server else None)


def push(config, result, steps, *, again=False):
    """Push the image, unless the registry has it (docker knows a digest of it there)."""
    known = [d for d in util.output(docker.repo_digests(result.image)).split()
             if d.startswith(config.image_repository + "@")]
    if known and not again:
        result.image_digest = known[0].split("@", 1)[1]
        steps.progress("already there")
        return
    out = util.run(docker.push(result.image), step="push", read_stdout=_layer_progress(steps, "Pushed", "exists"),
                   hint=f"Is {config.DOCKER_REGISTRY} up, and are you logged in here "
                        f"(`docker login {config.DOCKER_REGISTRY.split('/')[0]}` on this machine)?")
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
    result.image_digest = digest.group(1) if digest else ""


def make_run_dir(config, run_id):
    """Create REMOTE_WORKDIR/<run-id>/ on the server; return its absolute path and the
    uid:gid the container runs as, so that its files belong to the ssh user."""
    run_dir = f"{remote.workdir(config)}/{run_id}"
    out = util.run(
        remote.command(config, ["mkdir", "-p", "--", run_dir], ["cd", "--", run_dir], ["pwd"],
                       ["id", "-u"], ["id", "-g"]),
        step="connect", cwd=remote.cwd(config),
        hint=f"{remote.connect_hint(config)} REMOTE_WORKDIR ({config.REMOTE_WORKDIR}) must be creatable there.")
    path, uid, gid = out.splitlines()[-3:]
    if ":" in path:  # docker's --volume would split it there
        raise StepError("connect", f"the run folder {path} holds a ':', which docker cannot mount",
                        hint="Choose a REMOTE_WORKDIR without ':'.")
    return path, f"{uid}:{gid}"


@contextlib.contextmanager
def _run_dir_removed_on_failure(config, run_dir):
    """A run that fails before its container starts leaves no empty folder on the server, which
    `list` and `clean` would take for a run still starting (rmdir: a folder with files stays)."""
    try:
        yield
    except BaseException:
        util.succeeds(remote.command(config, ["rmdir", "--", run_dir]), cwd=remote.cwd(config))
        raise


def engine_hint(config, error):
    """A better hint for a docker command on the server that could not reach its engine."""
    output = error.output.lower()
    if "permission denied" in output and "docker" in output:
        return StepError(error.step, error.message, output=error.output, hint=(
            f"The ssh user may not use Docker on {config.REMOTE_SERVER}: add it to the `docker` group "
            "(`sudo usermod -aG docker USER`); the next run's new connection picks that up."))
    if "cannot connect to the docker daemon" in output:
        return StepError(error.step, error.message, output=error.output, hint=(
            f"Docker is not running on {config.REMOTE_SERVER}: start it there (`sudo systemctl start docker`)."))
    return error


def pull(config, result, steps):
    if image_present(config, result.image, on_server=True):
        steps.progress("already there")
        return
    command = remote.command(config, docker.pull(result.image))
    hint = (f"Can the server reach {config.DOCKER_REGISTRY}, and is it logged in there "
            f"(`docker login {config.DOCKER_REGISTRY.split('/')[0]}` on {config.REMOTE_SERVER})?")
    read = _layer_progress(steps, "Pull complete", "exists")
    try:
        util.run(command, step="pull", cwd=remote.cwd(config), read_stdout=read, hint=hint)
    except StepError as e:
        if "manifest unknown" not in e.output and "not found" not in e.output:
            raise engine_hint(config, e) from None
        # The registry lost the image we pushed earlier (garbage collection, a reset): push it again.
        steps.progress("pushing again")
        push(config, result, steps, again=True)
        util.run(command, step="pull", cwd=remote.cwd(config), read_stdout=read, hint=hint)


def _layer_progress(steps, *done_words):
    """Read docker push/pull output, showing how many layers are through; return the text."""
    def read(stdout):
        lines, seen, done = [], set(), set()
        for raw in stdout:
            line = raw.decode("utf-8", errors="replace")
            lines.append(line)
            layer, _, state = line.partition(": ")
            if re.fullmatch(r"[0-9a-f]{12}", layer):
                seen.add(layer)
                if any(word in state for word in done_words):
                    done.add(layer)
                steps.progress(f"{len(done)}/{len(seen)} layers")
        return "".join(lines)
    return read


def start_command(config, result, user, mounts=()):
    env = {"PYSTRIBUTED_RESULTS": context.RESULTS_IN_CONTAINER, "PYSTRIBUTED_RUN_ID": result.run_id,
           # The ssh user's uid has no home in the image; libraries want somewhere to cache.
           "HOME": "/tmp"}
    return docker.run_detached(result.image, run_id=result.run_id, results_dir=result.remote_dir,
                               user=user, env=env, extra_args=[*mounts, *config.DOCKER_RUN_ARGS])


def stream_output(config, result, start):
    """Show the container's stdout and stderr here as they come (starting it first if `start`
    is given); return the end of its stderr and of all its output, for an error message."""
    stderr_tail, tail = collections.deque(maxlen=400), collections.deque(maxlen=400)
    out, err = live.Redraws("stdout"), live.Redraws("stderr")

    def on_stdout(text):
        out.write(text)
        tail.append(text)

    def on_stderr(text):
        err.write(text)
        stderr_tail.append(text)
        tail.append(text)

    commands = [docker.logs(result.run_id, follow=True)]
    if start:
        commands.insert(0, start.script())
    code = util.stream(remote.command(config, *commands), step="run", on_stdout=on_stdout,
                       on_stderr=on_stderr, cwd=remote.cwd(config), write_stdin=start and start.write_env)
    out.close()
    err.close()
    if code:
        raise engine_hint(config, StepError(
            "run", f"the container could not be started or followed (exit code {code})",
            output="".join(stderr_tail), hint=EXIT_HINTS.get(code, ""), code=code))
    return "".join(stderr_tail), "".join(tail)


def dropped(config, result, error):
    """ssh's own failure (exit code 255) once the container runs: the run goes on there."""
    if error.code != 255 or config.is_local:
        return error
    result.status = "detached"
    return StepError("run", f"the connection to {config.REMOTE_SERVER} dropped (ssh exit code 255)",
                     output=error.output, hint=f"The run goes on there. Follow it again and fetch its results "
                                                f"with runner.attach({result.run_id!r}) once the server is reachable.")


def finish(config, result, *, cancelled=False):
    """Wait for the container, save its log and its final state (.pystributed-state.json) into the run
    folder, remove it; return its exit code. If the log cannot be saved (a full disk), the
    container stays, so that its log is not lost.

    Another process may put the same container away at the same time (a notebook following the
    run, and `wait` or `cancel` in a shell): each writes under names of its own and renames, so
    that neither leaves a truncated log; one that finds the container gone reads the exit code
    from the state the other saved."""
    run_id = result.run_id
    name = docker.container_name(run_id)
    log, state = f"{result.remote_dir}/{results.LOG_NAME}", f"{result.remote_dir}/{results.STATE_NAME}"
    token = secrets.token_hex(4)
    log_part, state_part = f"{result.remote_dir}/.{results.LOG_NAME}.{token}", f"{state}.{token}"
    put_away = " && ".join([
        remote.redirect(docker.logs(run_id), log_part),
        remote.redirect(docker.inspect_state(name, cancelled=cancelled), state_part, stderr=False),
        shlex.join(["mv", "-f", "--", log_part, log]), shlex.join(["mv", "-f", "--", state_part, state]),
        remote.redirect(docker.remove(run_id), "/dev/null")])
    # Not put away: say so only if the container is still there to hold the log.
    kept = f"if {remote.redirect(docker.inspect_container(run_id), '/dev/null')}; then echo log-not-saved; fi"
    out = util.run(remote.command(config, (
        f"{{ {shlex.join(docker.wait(run_id))} && {{ {put_away} || "
        f"{{ {shlex.join(['rm', '-f', '--', log_part, state_part])}; {kept}; }}; }}; }} "
        f"|| {shlex.join(['cat', '--', state])}")), step="run", cwd=remote.cwd(config))
    result.ended = results.now_iso()
    if "log-not-saved" in out:
        print(f"warning: the output could not be saved as {results.LOG_NAME} in {result.remote_dir} on "
              f"{result.server} (is its disk full?); the container is kept, its output is in "
              f"`docker logs {name}` there.", file=sys.stderr)
    first = out.strip().splitlines()[0]
    if first.startswith("{"):  # put away by another process already
        return int(json.loads(first)["State"]["ExitCode"])
    return int(first)


def fetch(config, result, steps, *, going=False):
    """Copy the run folder back to LOCAL_RESULTS_DIR/<run-id>/, with run.json in it. `going`: the
    run still writes there, so a file that changes while it is copied is taken as it was read."""
    local = Path(config.LOCAL_RESULTS_DIR) / result.run_id
    local.parent.mkdir(parents=True, exist_ok=True)

    def add_record(folder, files):
        # Set only now: a fetch that fails must not leave the record naming a folder that never landed.
        result.local_path, result.files = local.resolve(), files
        (folder / "run.json").write_text(result.to_json(), encoding="utf-8")

    def on_bytes(total):
        steps.progress(results.human_size(total))

    hint = (f"The results are still on the server in {result.remote_dir}; "
            f"fetch them again with runner.attach({result.run_id!r}).")
    with steps.step("fetch", f"to {local}"):
        tar = ["tar", "-C", result.remote_dir, "-cf", "-", "."]
        # GNU tar exits 1 for "file changed as we read it" (its archive is still whole); only a
        # run that goes on may do that to it.
        try:
            _, skipped = util.run(
                remote.command(config, f"{shlex.join(tar)} || [ $? -eq 1 ]" if going else tar), step="fetch",
                cwd=remote.cwd(config), hint=hint,
                read_stdout=lambda stream: results.extract(stream, local, finalize=add_record, on_bytes=on_bytes))
        except OSError as e:  # the copy went through, writing it here did not (a full disk)
            raise StepError("fetch", f"the results could not be written to {local}: {e}",
                            hint=f"Make room there (or set LOCAL_RESULTS_DIR elsewhere). {hint}") from None
    record.save(config.LOCAL_RESULTS_DIR, result)
    if skipped:
        steps.say(f"fetch: left out (not plain files inside the run folder): {', '.join(skipped)}\n")
    return result


class _recorded:
    """Save the run's record if a step before the container fails or is interrupted."""

    def __init__(self, config, result):
        self.config, self.result = config, result

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None and self.result.status == "starting":  # later, follow() says what happened
            self.result.status = "interrupted" if issubclass(kind, KeyboardInterrupt) else "failed"
            self.result.ended = results.now_iso()
        record.save(self.config.LOCAL_RESULTS_DIR, self.result)
