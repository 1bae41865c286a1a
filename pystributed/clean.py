"""clean: remove what ended, after showing it. Ended containers (their log and state saved
first), run folders unchanged for a given age, the images of DOCKER_IMAGE_NAME (on the server
and their tags in the registry) that no container and no remaining run needs, the kept files of
cell layers that no run used for an hour, and the ENV and SECRETS files that Slurm jobs which
ended left (places/slurm_job.sh removes its own; not one cancelled while it waited). A run that
goes on, or is starting, is never touched."""
from __future__ import annotations

import dataclasses

from pystributed import docker, listing, registry, results
from pystributed.lifecycle import human_duration, put_away
from pystributed.places import place_for


@dataclasses.dataclass
class Plan:
    """What clean removes (and what it keeps because it runs)."""

    server: str
    older_than: float | None
    containers: list = dataclasses.field(default_factory=list)  # RunState
    folders: list = dataclasses.field(default_factory=list)  # RunState
    images: list = dataclasses.field(default_factory=list)  # refs on the server
    tags: list = dataclasses.field(default_factory=list)  # (ref, digest) in the registry
    # folders of cell layers' files (features/cell_mount.py)
    cells: list = dataclasses.field(default_factory=list)
    envs: list = dataclasses.field(default_factory=list)  # paths of Slurm jobs' ENV and SECRETS files
    image_files: list = dataclasses.field(default_factory=list)  # paths of the pyxis route's images
    running: list = dataclasses.field(default_factory=list)  # RunState, never touched
    images_kept_because: str = ""
    done: bool = False

    @property
    def empty(self):
        return not (self.containers or self.folders or self.images or self.tags or self.cells or self.envs
                    or self.image_files)

    def __str__(self):
        age = f"older than {human_duration(self.older_than)}" if self.older_than is not None else \
            "none: give --older-than AGE (e.g. 7d) to remove run folders"
        lines = [f"On {self.server}:"]
        lines += [getattr(r, "put_away_line", "") or  # (a sweep's: sweep.SweepState)
                  f"  container  {docker.container_name(r.run_id)}  ({r.state}; "
                  "its log and state are saved first)"
                  for r in self.containers]
        lines += [f"  run folder {r.remote_dir}  ({r.state}, last changed {human_duration(r.age)} ago)"
                  for r in self.folders]
        lines += [f"  image      {ref}" for ref in self.images]
        lines += [f"  cell files {folder}  (unused for an hour; a rerun sends them again)"
                  for folder in self.cells]
        lines += [f"  secrets    {path}  (ENV and SECRETS of an ended Slurm job)" for path in self.envs]
        lines += [f"  image file {path}  (imported for pyxis; no job of ours is queued or running)"
                  for path in self.image_files]
        lines += ["In the registry:"] if self.tags else []
        lines += [f"  tag        {ref}  ({digest})" for ref, digest in self.tags]
        if self.empty:
            lines.append("  nothing to remove")
        lines.append(f"Run folders: {age}.")
        if self.running:
            lines.append("Kept, still running or starting: " + ", ".join(r.run_id for r in self.running))
        if self.images_kept_because:
            lines.append(f"Images and tags: none, {self.images_kept_because}.")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        if self.done:
            printer.text(f"{self}\nRemoved.")
        else:
            printer.text(str(self) + ("" if self.empty
                                      else "\nNothing removed yet: clean(yes=True) removes these."))


def clean(config, *, older_than=None, apply=False, confirm=None):
    """Work out what to remove: ended containers (their log and state saved first), the folders of
    ended runs that have not changed for `older_than` seconds, the server's images of DOCKER_IMAGE_NAME
    that no container and no remaining run uses, and the registry tags of those images (and of
    images our runs pushed that nothing needs now). Runs that go on are never touched. With `apply`
    (or when `confirm(plan)` says yes), remove them. Return the Plan."""
    with place_for(config).connection() as place:
        plan = _plan(config, place, older_than)
        if plan.empty or not (apply or (confirm and confirm(plan))):
            return plan
        for run in plan.containers:
            if hasattr(run, "put_away"):  # a sweep's ended tasks (sweep.SweepState)
                run.put_away(config, place)
            else:
                put_away(config, place, run)
        if plan.folders:
            place.remove([r.remote_dir for r in plan.folders])
        if plan.envs:
            place.remove(plan.envs)
        if plan.image_files:
            place.remove([*plan.image_files, *[f"{path}.lock" for path in plan.image_files]])
        if plan.cells:
            place.remove_cells(plan.cells)
        if plan.images:
            place.docker(docker.remove_images(*plan.images), step="clean")
        for ref, digest in plan.tags:
            registry.delete(ref, digest)
        plan.done = True
        return plan


def _plan(config, place, older_than):
    sections = place.survey()
    runs = listing.survey_all(config, place, sections)
    plan = Plan(place.name, older_than)
    plan.running = [r for r in runs.values() if r.active]
    plan.envs = _envs(sections, runs)
    plan.image_files = _image_files(sections)
    ended = [r for r in runs.values() if not r.active]
    plan.containers = [r for r in ended if r.container]
    if older_than is not None:
        plan.folders = [r for r in ended if r.remote_dir and r.age is not None and r.age >= older_than
                        and r.remote_dir.endswith(f"/{r.run_id}")]
    if any(not r.image for r in plan.running):
        plan.images_kept_because = (
            "a run is starting whose image is not known yet: images are left alone until it runs")
        return plan
    gone = {r.run_id for r in plan.folders}
    needed = {r.image for r in runs.values() if r.run_id not in gone and r.image}
    sections = place.images(config.image_repository)
    needed |= set(sections.get("used", []))
    plan.cells = sections.get("cells", [])
    ours = config.image_repository + ":"
    plan.images = sorted(ref for ref in sections.get("images", [])
                         if ref.startswith(ours) and not ref.endswith(":<none>") and ref not in needed)
    if config.DOCKER_REGISTRY:
        pushed = {r.image for r in results.runs(config.LOCAL_RESULTS_DIR)
                  if r.server == plan.server and r.image.startswith(ours)}
        for ref in sorted((pushed | set(plan.images)) - needed):
            digest = registry.digest(ref)
            if digest:
                plan.tags.append((ref, digest))
    return plan


def _image_files(sections):
    """The images that the pyxis route imported into REMOTE_WORKDIR/.pystributed-images (places/slurm_job.sh),
    once no job of ours is queued or running (any of them may start from any): none while one is, or
    where squeue could not say."""
    queued = sections.get("slurm_jobs")
    if queued is None or any(name.startswith("pystributed-") for name in queued):
        return []
    workdir = (sections.get("workdir") or [""])[0]
    return [f"{workdir}/{name}" for name in sections.get("image_files", [])]


def _envs(sections, runs):
    """The Slurm jobs' environment files (REMOTE_WORKDIR/ID.env, a retry's ID.INDEX-ATTEMPT.env) of runs and
    sweeps that ended: neither going on nor with a job that Slurm still lists (one waits for a GPU, and
    reads its file when it starts). None if squeue could not say."""
    if "slurm_jobs" not in sections:
        return []
    workdir = (sections.get("workdir") or [""])[0]
    queued = sections["slurm_jobs"]
    found = []
    for name in sections.get("envs", []):
        run_id = name.split(".")[0]
        if not (results.RUN_ID.fullmatch(run_id) or results.SWEEP_ID.fullmatch(run_id)):
            continue  # (not ours)
        job = docker.container_name(run_id)
        if run_id in runs and runs[run_id].active or any(q == job or q.startswith(f"{job}-") for q in queued):
            continue
        found.append(f"{workdir}/{name}")
    return found
