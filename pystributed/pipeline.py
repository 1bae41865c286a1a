"""The steps of a run, in the order they happen:

    check → pack → connect → build → push → pull → start → follow → finish → fetch

A `Run` carries what the steps share. Where the container runs is the run's place (places/),
which `connect` reaches; what a run does beyond the seed path are its features (features/), each
called at the named points of features/__init__.py."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from pystributed import context, docker, live, progress, results
from pystributed.config import environment
from pystributed.errors import EXIT_HINTS, PystributedError, StepError, remote_cell_error
from pystributed.places import place_for
from pystributed.results import State


@dataclasses.dataclass(eq=False)
class Run:
    config: object
    place: object
    steps: object
    result: results.RunResult | None = None
    source: str = ""
    code_path: str = ""
    features: list = dataclasses.field(default_factory=list)
    detach: bool = False
    on_interrupt: str = "stop"
    env: dict = dataclasses.field(default_factory=dict)  # ENV and SECRETS, given on docker run's stdin
    excludes: list = dataclasses.field(default_factory=list)  # left out of the build context
    runner_files: dict = dataclasses.field(default_factory=dict)  # {name: bytes} next to cell_runner.py
    requirements: str | None = None  # the requirements file to install
    context: object = None  # the build context, a temporary file
    cleanup: object = None  # an ExitStack: what features made for the build goes when the run ends
    digest: str = ""  # its sha256, with the base image's id (features/base.py)
    lower: str = ""  # the same of all but the cell layer's contents: the image's tag, with the cell's hash
    cell: str = ""  # the cell layer's sha256
    ready: bool = False  # the image is on the server already (features/cell_mount.py): no push, no pull
    platform: str = ""  # the server's, to build for (features/base.py); "" for the engine's own
    user: str = ""  # uid:gid the container runs as
    mounts: list = dataclasses.field(default_factory=list)  # docker run arguments
    stderr: str = ""  # the end of the cell's stderr, and of all its output, for an error
    output: str = ""

    def set(self, state, **fields):
        results.set_state(self.config.LOCAL_RESULTS_DIR, self.result, state, **fields)

    def hooks(self, name):
        return [getattr(feature, name)(self) for feature in self.features]


def run(config, *, code_path=None, source=None, quiet=False, detach=False, on_interrupt=None, features=(),
        engine=None):
    """Build, push, run and fetch the saved cell (`source`, as %%save_for_remote saved it, else read
    from `code_path`); return a RunResult. With `detach`, return as soon as the container has
    started. Raise RemoteCellError if the cell exits non-zero (after its results are fetched),
    StepError if a step fails. On a cluster, once the image is there, `engine(run)` runs it (the
    door's lifecycle.on_cluster: a job of one task)."""
    code_path = code_path or config.USER_CODE_PATH
    run = Run(config, place_for(config), progress.steps_for(quiet), source=check_code(code_path, source),
              code_path=code_path, features=list(features), detach=detach,
              on_interrupt=on_interrupt or config.ON_INTERRUPT)
    check(run)
    with tempfile.TemporaryFile() as run.context, contextlib.ExitStack() as run.cleanup:
        pack(run)
        reused = next(filter(None, run.hooks("reuse")), None)
        if reused:
            return reused
        run.result = results.RunResult(
            results.new_run_id(), server=run.place.name, started=results.now_iso(),
            source_sha256=hashlib.sha256(run.source.encode()).hexdigest(), config=dataclasses.asdict(config))
        with run.place.connection() as run.place:
            ship(run)
            if run.place.queues:
                return engine(run)
            return start(run) if run.detach else follow(run, start=True)


def check(run):
    """Before anything runs: the tools are here, the secrets are set, the features agree."""
    for tool in ["docker"] + ([] if run.config.is_local else ["ssh"]):
        if not shutil.which(tool):
            raise PystributedError(
                f"`{tool}` is not installed here (not found on PATH): pystributed runs it. "
                + ("Install Docker: https://docs.docker.com/engine/install/" if tool == "docker"
                   else "Install the OpenSSH client (e.g. `apt-get install openssh-client`)."))
    run.env = environment(run.config)
    run.requirements = run.config.REQUIREMENTS
    results_dir = Path(run.config.LOCAL_RESULTS_DIR).resolve()
    if Path.cwd() in results_dir.parents:  # the local results are never part of the image
        run.excludes.append(results_dir.relative_to(Path.cwd()).as_posix())
    run.hooks("check")


def check_code(code_path, source=None):
    """The code to run: `source`, a cell %%save_for_remote saved in this kernel (magic.save refused it
    unless it compiled: it is not compiled again), else the file at `code_path`, checked here."""
    if source is not None:
        return source
    if not os.path.isfile(code_path):
        raise PystributedError(
            f"there is no saved cell at {code_path}: mark a cell with %%save_for_remote first "
            "(or set USER_CODE_PATH)")
    source = Path(code_path).read_text(encoding="utf-8")
    if not source.strip():
        raise PystributedError(f"the cell saved at {code_path} is empty: nothing to run")
    try:
        compile(source, code_path, "exec")
    except SyntaxError as e:
        raise PystributedError(f"{code_path} does not compile: {e.msg} (line {e.lineno})") from None
    return source


def pack(run):
    """Write the build context; its hash names the image."""
    run.hooks("before_pack")
    run.digest, run.lower, run.cell = context.write(
        run.context, context_dir=".", code_path=run.code_path, source=run.source,
        base_image=run.config.BASE_IMAGE,
        requirements=run.requirements, excludes=run.excludes, runner_files=run.runner_files)


def ship(run):
    """connect, build, push, pull, and what features mount: all before the container. A run that
    fails here leaves no empty folder on the server, which `list` and `clean` would take for a run
    still starting."""
    try:
        connect(run)
        build(run)
        push(run)
        pull(run)
        run.mounts = [arg for args in run.hooks("mounts") for arg in args]
    except BaseException as e:
        if run.result.remote_dir:
            run.place.discard(run.result.remote_dir)
        run.set(State.INTERRUPTED if isinstance(e, KeyboardInterrupt) else State.FAILED)
        raise
    finally:
        run.context.close()  # not kept on disk for the run's length


def connect(run):
    """Reach the place and make the run's folder there (REMOTE_WORKDIR/<run-id>/)."""
    with run.steps.step("connect", run.place.name):
        run.result.remote_dir, run.user = run.place.prepare(run.result.run_id)
    run.set(State.STARTING)


def build(run):
    """Tag the image by the build context's hash (and the base image's id): an image built from the
    same content before (here, or on the server with TRANSPORT = "remote-build") is used again."""
    on_server = run.config.TRANSPORT == "remote-build"
    engine = run.place.docker if on_server else docker.here
    with run.steps.step("build", "on the server" if on_server else "here"):
        run.hooks("before_build")  # may add to the hashes (the base image's id, features/base.py)
        run.result.image = image = f"{run.config.image_repository}:{run.lower[:16]}-{run.cell[:16]}"
        if docker.has_image(engine, image):
            run.steps.progress("up to date")
            return
        run.ready = any(run.hooks("instead_of_build"))
        if run.ready:
            return
        run.context.seek(0)
        engine(docker.build(image, run.platform), step="build",
               stdin=lambda pipe: shutil.copyfileobj(run.context, pipe, 1 << 20),
               hint="Is the Docker engine running "
                    + ("on the server" if on_server else "here (`docker info`)")
                    + "? Check BASE_IMAGE and REQUIREMENTS.")


def push(run, *, again=False):
    """Push the image, unless the registry has it (docker knows a digest of it there)."""
    config = run.config
    if not config.DOCKER_REGISTRY or config.TRANSPORT != "registry" or run.ready:
        return
    with run.steps.step("push", config.DOCKER_REGISTRY) if not again else contextlib.nullcontext():
        refs = docker.repo_refs(run.result.image)
        known = [d for d in refs if d.startswith(config.image_repository + "@")]
        if known and not again and docker.pushed(run.result.image, refs):
            run.result.image_digest = known[0].split("@", 1)[1]
            run.steps.progress("already there")
            return
        out = docker.here(docker.push(run.result.image), step="push",
                          read=layer_progress(run.steps, "Pushed", "exists"),
                          hint=f"Is {config.DOCKER_REGISTRY} up, and are you logged in here "
                               f"(`docker login {config.DOCKER_REGISTRY.split('/')[0]}` on this machine)?")
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        run.result.image_digest = digest.group(1) if digest else ""


def pull(run):
    config = run.config
    if config.is_local or config.TRANSPORT != "registry" or run.ready:
        return
    with run.steps.step("pull", run.place.name):
        if docker.has_image(run.place.docker, run.result.image):
            run.steps.progress("already there")
            return
        hint = (f"Can the server reach {config.DOCKER_REGISTRY}, and is it logged in there "
                f"(`docker login {config.DOCKER_REGISTRY.split('/')[0]}` on {run.place.name})?")
        read = layer_progress(run.steps, "Pull complete", "exists")
        try:
            run.place.docker(docker.pull(run.result.image), step="pull", read=read, hint=hint)
        except StepError as e:
            if "manifest unknown" not in e.output and not re.search(r"manifest for \S+ not found", e.output):
                raise
            # The registry lost the image we pushed earlier (garbage collection, a reset): push it again.
            run.steps.progress("pushing again")
            push(run, again=True)
            run.place.docker(docker.pull(run.result.image), step="pull", read=read, hint=hint)


def layer_progress(steps, *done_words):
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


def start_args(run):
    """docker run's arguments after `docker run`."""
    return docker.run_detached(run.result.image, run_id=run.result.run_id, results_dir=run.result.remote_dir,
                               user=run.user, env=docker.task_env(run.result.run_id),
                               extra_args=[*run.mounts, *run.config.DOCKER_RUN_ARGS])[2:]


def start(run):
    """Start the container and return (`detach`): the run goes on without us."""
    try:
        with run.steps.step("start", run.place.name):
            run.place.start(start_args(run), run.env)
    # the record says what happened (a container Docker made stays, for list and clean)
    except BaseException as e:
        run.set(State.INTERRUPTED if isinstance(e, KeyboardInterrupt) else State.FAILED)
        raise
    run.set(State.RUNNING)
    run_id = run.result.run_id
    run.steps.say(f"Run {run_id} is running on {run.place.name}. Follow it and fetch its results with "
                  f"runner.attach({run_id!r}) (or, in a shell, `python -m pystributed logs -f {run_id}`, "
                  f"then `fetch {run_id}`).\n")
    return run.result


def follow(run, *, start):
    """Show the container's output as it comes (starting it first if `start`), wait for it,
    fetch its results. On an interrupt, `run.on_interrupt` says what happens ('stop', 'detach')."""
    run.set(State.RUNNING)
    try:
        with run.steps.step("run", f"run {run.result.run_id} on {run.place.name}", live=True):
            try:
                stream(run, start_args(run) if start else None)
                exit_code = run.place.finish(run.result.remote_dir, run.result.run_id)
            except StepError as e:
                raise dropped(run, e) from None
    except KeyboardInterrupt:
        interrupted(run)
        raise
    except StepError:
        if run.result.status != State.DETACHED:  # a dropped connection leaves the run going
            run.set(State.FAILED)
        raise
    run.set(State.SUCCEEDED if exit_code == 0 else State.FAILED, exit_code=exit_code)
    fetch(run)
    run.hooks("after_fetch")
    if exit_code:
        raise remote_cell_error(run.result, run.stderr, run.output,
                                entry=context.entry_point(".", run.code_path), code_path=run.code_path)
    run.hooks("finished")
    return run.result


def stream(run, start):
    stderr_tail, tail = collections.deque(maxlen=400), collections.deque(maxlen=400)
    out, err = live.Redraws("stdout"), live.Redraws("stderr")

    def on_stdout(text):
        out.write(text)
        tail.append(text)

    def on_stderr(text):
        err.write(text)
        stderr_tail.append(text)
        tail.append(text)

    code = run.place.follow(run.result.run_id, live.Unmarked(on_stdout), live.Unmarked(on_stderr),
                            start=start,
                            env=run.env)
    out.close()
    err.close()
    run.stderr, run.output = "".join(stderr_tail), "".join(tail)
    if code:
        raise run.place.engine_hint(StepError(
            "run", f"the container could not be started or followed (exit code {code})",
            output=run.stderr, hint=EXIT_HINTS.get(code, ""), code=code))


def dropped(run, error):
    """ssh's own failure (exit code 255) once the container runs: the run goes on there."""
    if error.code != 255 or run.config.is_local:
        return error
    run.set(State.DETACHED)
    return StepError("run", f"the connection to {run.place.name} dropped (ssh exit code 255)",
                     output=error.output,
                     hint=f"The run goes on there. Follow it again and fetch its results with "
                          f"runner.attach({run.result.run_id!r}) once the server is reachable.")


def interrupted(run):
    run_id, name = run.result.run_id, docker.container_name(run.result.run_id)
    if run.on_interrupt == "detach":
        run.set(State.DETACHED)
        run.steps.say(f"\nInterrupted: run {run_id} goes on on {run.place.name} (container {name}). "
                      f"Reattach with runner.attach({run_id!r}).\n")
        return
    run.steps.say(f"\nInterrupted: stopping container {name} and fetching what results exist ...\n")
    run.set(State.INTERRUPTED)  # before the fetch, which writes run.json
    try:
        run.place.stop(run_id)
        run.result.exit_code = run.place.finish(run.result.remote_dir, run_id)
        run.result.ended = results.now_iso()  # the container's end, after the stop: not the interrupt's
        fetch(run)
    except StepError as e:
        run.steps.say(f"{e}\n")
    run.set(State.INTERRUPTED, exit_code=run.result.exit_code)


def fetch(run, *, going=False):
    """Copy the run folder back to LOCAL_RESULTS_DIR/<run-id>/, with run.json in it. `going`: the
    run still writes there, so a file that changes while it is copied is taken as it was read."""
    result = run.result
    local = Path(run.config.LOCAL_RESULTS_DIR) / result.run_id
    local.parent.mkdir(parents=True, exist_ok=True)

    def add_record(folder, files):
        live.unmark_file(folder / results.LOG_NAME)
        # Set only now: a fetch that fails must not leave the record naming a folder that never landed.
        result.local_path, result.files = local.resolve(), sorted({*files, "run.json"})  # all that is there
        (folder / "run.json").write_text(result.to_json(), encoding="utf-8")

    def read(stream):
        return results.extract(stream, local, finalize=add_record,
                               on_bytes=lambda total: run.steps.progress(results.human_size(total)))

    hint = (f"The results are still on the server in {result.remote_dir}; "
            f"fetch them again with runner.attach({result.run_id!r}).")
    with run.steps.step("fetch", f"to {local}"):
        try:
            _, skipped = run.place.fetch(result.remote_dir, read, going=going, hint=hint)
        except OSError as e:  # the copy went through, writing it here did not (a full disk)
            raise StepError("fetch", f"the results could not be written to {local}: {e}",
                            hint=f"Make room there (or set LOCAL_RESULTS_DIR elsewhere). {hint}") from None
    results.save_record(run.config.LOCAL_RESULTS_DIR, result)
    if skipped:
        run.steps.say(f"fetch: left out (not plain files inside the run folder): {', '.join(skipped)}\n")
    return result
