"""BASE_IMAGE's identity in the image's tag. The tag is the hash of the build context, which names
BASE_IMAGE only by its name: rebuilt or pulled anew under the same tag (a team's `lab/base:latest`),
the base would change while an unchanged cell's image stayed "up to date" on the old one. So the
base image's id, as the engine that builds has it, is added to the hash: a base that moved makes
the cell build again, on the new base, and --cache run again.

The id is asked of the engine that builds: this machine's before the pack (TRANSPORT = "registry",
or REMOTE_SERVER = "local"), the server's in the build step, over the run's one connection
(TRANSPORT = "remote-build"; with --cache, the cache asks it first, before connecting). A base
that is there is not pulled (docker build would not pull it either); one that is not is pulled
first, so that its id is known before the build.
"""
import hashlib

from pystributed import docker
from pystributed.errors import StepError
from pystributed.features import Feature


class BaseImage(Feature):
    def __init__(self):
        self.id = ""  # BASE_IMAGE's image id on the engine that builds, once asked

    def before_pack(self, run):
        self.id = "" if on_server(run.config) else image_id(run, docker.here, in_step=False)

    def before_build(self, run):
        if on_server(run.config) and not self.id:
            self.id = image_id(run, run.place.docker, in_step=True)
        run.digest = hashlib.sha256(f"{run.digest}\nFROM {self.id}".encode()).hexdigest()

    def identity(self, run):
        """The id (for the --cache key): asked of the server, with remote-build, before the build."""
        if not self.id:
            self.id = image_id(run, run.place.docker, in_step=False)
        return self.id


def on_server(config):
    return config.TRANSPORT == "remote-build"


def image_id(run, engine, *, in_step):
    """BASE_IMAGE's id on `engine`, pulled there first if it is not there (shown in the step
    running, `in_step`, else in a step of its own)."""
    base, where = run.config.BASE_IMAGE, "on the server" if on_server(run.config) else "here"
    try:
        return engine(docker.inspect_image(base), step="build").strip()
    except StepError as e:
        if "cannot connect to the docker daemon" in e.output.lower():
            raise StepError("build", e.message, output=e.output, hint=e.hint or f"Is the Docker engine running "
                            f"{where}{'' if on_server(run.config) else ' (`docker info`)'}?", code=e.code) from None
    hint = (f"BASE_IMAGE ({base}) is not {where} and could not be pulled: check its name, or `docker pull {base}` "
            f"{where} (after `docker login` if its registry needs one).")
    if in_step:
        run.steps.progress(f"pulling {base}")
        engine(docker.pull(base), step="build", hint=hint)
    else:
        with run.steps.step("base", f"pulling {base} {where}"):
            engine(docker.pull(base), step="build", hint=hint)
    return engine(docker.inspect_image(base), step="build", hint=hint).strip()
