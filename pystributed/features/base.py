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

An image built here for a server is built for the server's platform, `docker build --platform`
(its `uname -m`, asked at connect): an Apple Silicon Mac builds `linux/arm64` images by default,
which an `x86_64` GPU server cannot run (`exec format error`); Docker Desktop emulates the other
architecture for the build's RUN steps. The platform is part of the hash. Where BASE_IMAGE here is
of another platform, its variant for the server is pulled first, unless the engine here keeps every
platform of an image (the containerd image store, whose builder takes the variant itself): an
engine with the classic store, and its classic builder, would build on the variant it has.
"""
import hashlib

from pystributed import docker, util
from pystributed.errors import StepError
from pystributed.features import Feature


class BaseImage(Feature):
    def __init__(self):
        self.id = ""  # BASE_IMAGE's image id on the engine that builds, once asked
        self.platform = ""  # its platform (`linux/amd64`), when asked here

    def before_pack(self, run):
        self.id, self.platform = ("", "") if on_server(run.config) else image_id(run, docker.here,
                                                                                 in_step=False)

    def before_build(self, run):
        if on_server(run.config):
            if not self.id:  # asked at connect (places/server.py), else now (pulled first if not there)
                self.id = run.place.base_id or image_id(run, run.place.docker, in_step=True)[0]
        elif not run.config.is_local and run.place.platform:
            # Always: the engine here, not only the base, may be of another architecture.
            run.platform = run.place.platform
            if foreign(self.platform, run.platform) and not keeps_every_platform():
                self.id, self.platform = pulled_for(run, run.platform)
        built_for = f" --platform={run.platform}" if run.platform else ""
        run.digest, run.lower = (hashlib.sha256(f"{h}\nFROM {self.id}{built_for}".encode()).hexdigest()
                                 for h in (run.digest, run.lower))

    def identity(self, run):
        """The id (for the --cache key): asked of the server, with remote-build, before the build."""
        if not self.id:
            self.id, _ = image_id(run, run.place.docker, in_step=False)
        return self.id


def on_server(config):
    return config.TRANSPORT == "remote-build"


def foreign(here, there):
    """Whether an image of platform `here` is not what a server of platform `there` runs (both
    known: an old answer without them changes nothing)."""
    return bool(here and there) and here.split("/")[:2] != there.split("/")[:2]


def keeps_every_platform():
    """Whether the engine here stores images with all their platforms (the containerd image store):
    its `image inspect` then names its own platform whichever variant it holds."""
    return "io.containerd.snapshotter" in util.output(docker.storage_driver())


def image_id(run, engine, *, in_step):
    """(BASE_IMAGE's id on `engine`, its platform), pulled there first if it is not there (shown in
    the step running, `in_step`, else in a step of its own)."""
    base, where = run.config.BASE_IMAGE, "on the server" if on_server(run.config) else "here"
    try:
        return _id_and_platform(engine(docker.inspect_image_platform(base), step="build"))
    except StepError as e:
        if "cannot connect to the docker daemon" in e.output.lower():
            raise StepError("build", e.message, output=e.output, hint=e.hint or "Is the Docker engine "
                            f"running {where}{'' if on_server(run.config) else ' (`docker info`)'}?",
                            code=e.code) from None
    hint = (f"BASE_IMAGE ({base}) is not {where} and could not be pulled: check its name, or `docker pull "
            f"{base}` {where} (after `docker login` if its registry needs one).")
    if in_step:
        run.steps.progress(f"pulling {base}")
        engine(docker.pull(base), step="build", hint=hint)
    else:
        with run.steps.step("base", f"pulling {base} {where}"):
            engine(docker.pull(base), step="build", hint=hint)
    return _id_and_platform(engine(docker.inspect_image_platform(base), step="build", hint=hint))


def pulled_for(run, platform):
    """(BASE_IMAGE's id, its platform) here once pulled for `platform`, in the build step."""
    base = run.config.BASE_IMAGE
    run.steps.progress(f"pulling {base} for {platform}")
    docker.here(docker.pull(base, platform), step="build", hint=(
        f"{run.place.name} runs {platform} images, and BASE_IMAGE ({base}) here is not one: its {platform} "
        f"variant could not be pulled. Use a base image published for {platform} (most on Docker Hub are: "
        f"`docker manifest inspect {base}` lists them), or TRANSPORT = \"remote-build\" to build "
        "on the server."))
    return _id_and_platform(docker.here(docker.inspect_image_platform(base), step="build"))


def _id_and_platform(out):
    found, _, platform = out.strip().partition(" ")
    return found, platform
