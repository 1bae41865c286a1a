"""A rerun of a changed cell without a build. The image's tag is the hash of all but its cell
layer, then the cell layer's (pipeline.build); after each build this feature notes, per server,
the image built for those lower layers (LOCAL_RESULTS_DIR/.images/). A later run whose lower
layers are the same (the same base, requirements, folder and runner; only the cell or its --in
values changed) asks the server whether that image is still there; if so, the cell's files are
sent on the run's connection instead, kept there by their sha256 (REMOTE_WORKDIR/.cells/<sha256>/),
and mounted read-only over the image's own at the same paths. Nothing is built, pushed or pulled,
and the container sees the same files a build would have given it. run.json names both halves,
each by content: the image (its digest) and the cell's files (`cell_archive`, their sha256).

A first run still builds, pushes and pulls (the seed's path), and so does a cell whose layer is
large (--in values of more than CELL_LIMIT: an image layer is the better carrier for those), or
whose paths docker's --mount cannot spell."""
import hashlib
import re
from pathlib import Path

from pystributed import context, record
from pystributed.errors import StepError
from pystributed.features import Feature

INDEX = ".images"
CELL_LIMIT = 1 << 20
MOUNTABLE = re.compile(r"[\w.+@-]+(?:/[\w.+@ -]+)*")  # no ',' (a --mount field separator), '"' or '='


class CellMount(Feature):
    folder = ""  # where the server keeps the cell's files, when mounted
    paths: tuple[str, ...] = ()  # the cell layer's, mounted from there

    def instead_of_build(self, run):
        noted = _entry(run)
        if not noted.is_file():
            return False
        files = context.cell_layer(context.entry_point(".", run.code_path), run.source, run.runner_files)
        if sum(map(len, files.values())) > CELL_LIMIT or not all(MOUNTABLE.fullmatch(p) for p in files):
            return False
        image, archive = noted.read_text(encoding="utf-8").strip(), context.cell_archive(files)
        sha = hashlib.sha256(archive).hexdigest()
        try:
            found = run.place.cell_image(image, sha, archive)
        except StepError:  # the seed's path says better what is wrong
            found = None
        if not found or any(c in found[1] for c in ',"\n'):  # a REMOTE_WORKDIR --mount cannot spell
            return False
        run.result.image, (run.result.image_digest, self.folder) = image, found
        run.result.cell_archive, self.paths = sha, tuple(files)
        run.steps.progress(f"not needed: the cell's files go over {image.rpartition(':')[2]}'s")
        return True

    def mounts(self, run):
        if not self.paths:  # built, pushed and pulled: the image for the next change of the cell
            _entry(run).parent.mkdir(parents=True, exist_ok=True)
            record.write_atomically(_entry(run), run.result.image + "\n")
        return [word for path in self.paths for word in
                ("--mount", f"type=bind,source={self.folder}/{path},target=/{path},readonly")]


def _entry(run):
    """The note of the image of these lower layers on this server."""
    server = hashlib.sha256(run.config.REMOTE_SERVER.encode()).hexdigest()[:8]
    return Path(run.config.LOCAL_RESULTS_DIR) / INDEX / f"{server}-{run.lower[:16]}"
