"""clean: what it plans from the server's survey and images, and that it removes only that."""
import pytest
from test_lifecycle import ENDED, GONE, RUNNING, WORKDIR, connect, container, survey_answer, surveyed

from pystributed import clean as cleaning
from pystributed import config, registry, results
from pystributed.places import server

MARK = server.MARK
IMAGES = (f"{MARK} used\nreg:5000/proj:{RUNNING[-6:]}\nubuntu\n{MARK} images\nreg:5000/proj:{RUNNING[-6:]}\n"
          f"reg:5000/proj:{GONE[-6:]}\nreg:5000/proj:{ENDED[-6:]}\nreg:5000/proj:unused\nreg:5000/proj:<none>\n"
          f"{MARK} cells\n/w/runs/.cells/{'c' * 64}\n")
DIGEST = "sha256:" + "d" * 64
# ENDED removed altogether (no container, no folder)
ONLY_GONE = survey_answer(containers=(container(RUNNING, "running"),)).replace(f"{ENDED} 1764075000.0\n", "")


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj", REMOTE_WORKDIR="runs with space/$(x)",
                       SSH_OPTIONS=["-F", "/cfg"])


@pytest.fixture
def deleted(monkeypatch):
    done = []
    monkeypatch.setattr(registry, "digest",
                        lambda ref: DIGEST if ref.endswith((":unused", GONE[-6:])) else None)
    monkeypatch.setattr(registry, "delete", lambda ref, digest: done.append((ref, digest)))
    return done


def planned(programs, survey=ONLY_GONE):
    connect(programs)
    surveyed(programs, out=survey)
    programs.expect("server", "images", "reg:5000/proj", "runs with space/$(x)", out=IMAGES)


def test_clean_lists_then_removes_only_what_it_listed(cfg, programs, deleted):
    planned(programs)
    plan = cleaning.clean(cfg, older_than=3600)
    assert [r.run_id for r in plan.folders] == [GONE] and plan.containers == [] and not plan.done
    assert [r.run_id for r in plan.running] == [RUNNING]
    # not the running run's, not another repository's, not one without a tag; the removed run's goes too
    assert plan.images == [f"reg:5000/proj:{GONE[-6:]}", f"reg:5000/proj:{ENDED[-6:]}",
                           "reg:5000/proj:unused"]
    assert plan.tags == [(f"reg:5000/proj:{GONE[-6:]}", DIGEST), ("reg:5000/proj:unused", DIGEST)]
    assert deleted == []  # nothing removed yet
    assert str(plan) == "\n".join([
        "On gpu-box:",
        f"  run folder {WORKDIR}/{GONE}  (cancelled, last changed 1h06m ago)",
        f"  image      reg:5000/proj:{GONE[-6:]}",
        f"  image      reg:5000/proj:{ENDED[-6:]}",
        "  image      reg:5000/proj:unused",
        f"  cell files /w/runs/.cells/{'c' * 64}  (unused for an hour; a rerun sends them again)",
        "In the registry:",
        f"  tag        reg:5000/proj:{GONE[-6:]}  ({DIGEST})",
        f"  tag        reg:5000/proj:unused  ({DIGEST})",
        "Run folders: older than 1h00m.",
        f"Kept, still running or starting: {RUNNING}"])
    planned(programs)
    programs.expect("server", "remove", f"{WORKDIR}/{GONE}")
    programs.expect("server", "remove_cells", "runs with space/$(x)", f"/w/runs/.cells/{'c' * 64}")
    programs.expect("server", "docker_command", "image", "rm", "--", f"reg:5000/proj:{GONE[-6:]}",
                    f"reg:5000/proj:{ENDED[-6:]}", "reg:5000/proj:unused")
    plan = cleaning.clean(cfg, older_than=3600, apply=True)
    assert plan.done
    assert deleted == [(f"reg:5000/proj:{GONE[-6:]}", DIGEST), ("reg:5000/proj:unused", DIGEST)]
    assert [call.step for call in programs.calls[-2:]] == ["clean", "clean"]


def test_younger_folders_stay_and_without_an_age_no_folder_goes(cfg, programs, deleted):
    planned(programs)
    assert cleaning.clean(cfg, older_than=4000).folders == []
    planned(programs)
    plan = cleaning.clean(cfg)
    assert (plan.folders == []
            and "Run folders: none: give --older-than AGE (e.g. 7d) to remove run folders." in str(plan))
    assert f"reg:5000/proj:{GONE[-6:]}" not in plan.images  # its run stays, and needs it


def test_an_ended_container_is_put_away_before_anything_is_removed(cfg, programs, deleted):
    planned(programs, survey_answer())
    assert [r.run_id for r in cleaning.clean(cfg, older_than=3600).containers] == [ENDED]
    planned(programs, survey_answer())
    programs.expect("server", "finish", f"{WORKDIR}/{ENDED}", ENDED, "false", ..., out="2\n")
    surveyed(programs, ENDED)
    programs.expect("server", "remove", f"{WORKDIR}/{GONE}")
    programs.expect("server", "remove_cells", "runs with space/$(x)", f"/w/runs/.cells/{'c' * 64}")
    programs.expect("server", "docker_command", "image", "rm", "--", ...)
    plan = cleaning.clean(cfg, older_than=3600, confirm=lambda plan: True)
    assert plan.done and (f"  container  pystributed-{ENDED}  (exited 2; its log and state are saved first)"
                          in str(plan))


def test_nothing_is_removed_unless_confirmed(cfg, programs, deleted):
    planned(programs)
    asked = []
    plan = cleaning.clean(cfg, older_than=3600, confirm=lambda plan: asked.append(plan) or False)
    assert asked == [plan] and not plan.done and deleted == []


def test_a_starting_run_whose_image_is_unknown_keeps_every_image(cfg, programs, deleted):
    connect(programs)
    surveyed(programs, out=survey_answer(containers=()))  # RUNNING: a young folder, no container, no image
    plan = cleaning.clean(cfg, older_than=3600)
    assert plan.images == [] and plan.tags == []
    assert str(plan).endswith("Images and tags: none, a run is starting whose image is not known yet: "
                              "images are left alone until it runs.")


def test_tags_our_runs_pushed_that_nothing_needs_go_too(cfg, programs, deleted, monkeypatch):
    results.save_record("results", results.RunResult("20261101-000000-000000", server="gpu-box",
                                                     image="reg:5000/proj:unused"))
    results.save_record("results", results.RunResult("20261101-000000-000001", server="elsewhere",
                                                     image="reg:5000/proj:x"))
    connect(programs)
    surveyed(programs, out=ONLY_GONE)
    programs.expect("server", "images", "reg:5000/proj", "runs with space/$(x)",
                    out=f"{MARK} used\n{MARK} images\n")
    plan = cleaning.clean(cfg)
    assert plan.images == [] and plan.tags == [("reg:5000/proj:unused", DIGEST)]


def test_an_empty_plan_says_so(cfg, programs):
    connect(programs)
    surveyed(programs, out=f"{MARK} now\n1\n{MARK} containers\n")
    programs.expect("server", "images", "reg:5000/proj", "runs with space/$(x)",
                    out=f"{MARK} used\n{MARK} images\n")
    plan = cleaning.clean(cfg, older_than=0, apply=True)
    assert plan.empty and not plan.done
    assert str(plan) == "On gpu-box:\n  nothing to remove\nRun folders: older than 0s."


def test_the_environment_files_ended_slurm_jobs_left_go_those_of_jobs_that_wait_stay(cfg, programs, deleted):
    """A Slurm job removes its ENV and SECRETS file itself (places/slurm_job.sh); one cancelled while it
    waited, or on a lost node, leaves it: clean removes those of runs and sweeps that ended."""
    sweep, waiting = "sweep-20261125-101509-eeeeee", "sweep-20261125-101510-ffffff"
    envs = [f"{GONE}.env", f"{ENDED}.env", f"{RUNNING}.env", f"{sweep}.env", f"{sweep}.3-2.env",
            f"{waiting}.4-2.env", "notes.env"]
    listed = f"{MARK} envs\n" + "\n".join(envs) + f"\n{MARK} slurm_jobs\npystributed-{waiting}-4-2\nother\n"
    survey = ONLY_GONE.replace(f"{MARK} containers", f"{listed}{MARK} containers")
    planned(programs, survey)
    plan = cleaning.clean(cfg)
    gone = [f"{WORKDIR}/{name}" for name in (f"{GONE}.env", f"{ENDED}.env", f"{sweep}.env",
                                             f"{sweep}.3-2.env")]
    assert plan.envs == gone  # not the running run's, not the waiting retry's, not a file of no run
    assert f"  secrets    {WORKDIR}/{sweep}.3-2.env  (ENV and SECRETS of an ended Slurm job)" in str(plan)
    planned(programs, survey)
    programs.expect("server", "remove", *gone)
    programs.expect("server", "remove_cells", ...)
    programs.expect("server", "docker_command", "image", "rm", "--", ...)
    assert cleaning.clean(cfg, apply=True).done


def test_without_squeues_answer_no_environment_file_goes(cfg, programs, deleted):
    """squeue failed: a job that waits for a GPU would find its file gone when it starts."""
    survey = ONLY_GONE.replace(f"{MARK} containers", f"{MARK} envs\n{GONE}.env\n{MARK} containers")
    planned(programs, survey)
    assert cleaning.clean(cfg).envs == []


def test_the_pyxis_routes_image_files_go_once_no_job_of_ours_is_queued():
    files = {"workdir": ["/home/me/runs"], "image_files": [".pystributed-images/sha256-ab.sqsh"]}
    assert cleaning._image_files({**files, "slurm_jobs": ["other"]}) == [
        "/home/me/runs/.pystributed-images/sha256-ab.sqsh"]
    assert cleaning._image_files({**files, "slurm_jobs": ["pystributed-sweep-20261125-101502-3fa9c1"]}) == []
    assert cleaning._image_files(files) == []  # (squeue could not say)
