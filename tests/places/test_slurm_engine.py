"""A job's tasks on a Slurm cluster (places/slurm_engine.py), every program faked strictly: one job
array, a task waiting with Slurm's reason, success, failure and retry, cancel, attach after a detach.
The fetches run inline here (in the engine they run on a pool), so the calls come in one order."""
import json

import pytest
from fakes import job_engine, tar_of

from pystributed import config, jobs, progress
from pystributed.errors import StepError
from pystributed.places import slurm, slurm_engine
from pystributed.places.slurm_engine import SlurmEngine

SWEEP = "sweep-20261125-101502-3fa9c1"
NAME = f"pystributed-{SWEEP}"
FOLDER = f"/home/me/runs/{SWEEP}"
MARK = "@@pystributed@@"


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000",
                       REMOTE_WORKDIR="runs", CLUSTER="slurm", SLURM_ARGS=["--partition", "gpu"],
                       SLURM_CONTAINERS="docker", MAX_CONCURRENT=4)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(slurm_engine, "POLL", 0)
    monkeypatch.setattr(slurm_engine, "POLL_MAX", 0)


def engine_of(cfg, n, *, retries=0):
    return job_engine(SlurmEngine, slurm.Slurm(cfg), tasks=n, cluster="slurm", folder=FOLDER, retries=retries)


def row(job_id, index, state, *, name=NAME, reason="None", nodes="", array="40"):
    return f"{job_id}|{array}|{'N/A' if index is None else index}|{name}|{state}|{reason}|{nodes}\n"


def expect_jobs(programs, names, rows, gpus="", saved=()):
    """squeue's rows, and the tasks whose folders hold a state (`saved`)."""
    states = "".join(f"{index}\n" for index in saved)
    programs.expect("server", "slurm_jobs", "--states", FOLDER, *names,
                    out=f"{MARK} states\n{states}{MARK} jobs\n{''.join(rows)}{MARK} gpus\n{gpus}")


def expect_retry(programs, index, job_id):
    programs.expect("server", "next_attempt", f"{FOLDER}/{index}", ...)  # (the attempt before's state goes)
    programs.expect("server", "slurm_submit", ..., out=f"{job_id}\n")


def expect_fetch(programs, index, code, log="done\n", cancelled=False):
    state = {"State": {"ExitCode": code}, "Node": "node1", "Gpus": "0", "Cancelled": cancelled}
    programs.expect("server", "fetch", f"{FOLDER}/{index}", "", out=tar_of({
        "output.log": log.encode(), ".pystributed-state.json": json.dumps(state).encode()}))


@pytest.mark.parametrize("args, limit", [([], ""), (["--time", "1:00:00"], "1:00:00"), (["--time=5"], "5"),
                                         (["-t", "10"], "10"), (["-t10"], "10"),
                                         (["--tmp=1G", "-p", "gpu"], "")])
def test_the_time_limit_is_read_as_sbatch_takes_it(args, limit):
    assert slurm_engine.time_limit(args) == limit


def expect_max_array(programs, size="1001"):
    programs.expect("server", "slurm_max_array", out=f"{size}\n")


def test_a_sweep_is_one_job_array_with_the_gpus_and_the_sites_options(cfg, programs):
    engine = engine_of(cfg, 8)
    expect_max_array(programs)
    programs.expect("server", "slurm_submit", f"{FOLDER}.env", f"{FOLDER}/.pystributed-job.sh",
                    slurm.JOB_SCRIPT, "--job-name", NAME, "--chdir", FOLDER,
                    "--output", f"{FOLDER}/.pystributed-slurm-%j.out", "--gres=gpu:1", "--array=0-7%4",
                    "--partition", "gpu", f"{FOLDER}/.pystributed-job.sh", FOLDER,
                    NAME, "1", "docker", f"{FOLDER}.env", "--label", f"pystributed.run={SWEEP}", "--user",
                    "1000:1000", "--volume", f"{FOLDER}:/results", ..., out="40\n")
    engine.start()
    call = programs.calls[-1]
    assert call.stdin == b"TOKEN=s3cret\n"  # ENV and SECRETS in a file of the user's, never on a command line
    assert "--detach" not in call.words and "/dev/stdin" not in call.words
    assert call.words[-6:-4] == ["reg:5000/proj:s", "sh"] and call.words[-1] == "/pystributed/task_runner.py"
    assert engine.job.services == [[NAME, "40", None]]


def options(words):
    return [word for word in words if word.startswith(("--array", "--export", "--dependency"))]


def started_in_arrays(programs, size, **settings):
    """An engine of 25 tasks, started on a cluster whose MaxArraySize is `size`, in 3 arrays (40, 50, 60):
    each submit's words."""
    cfg = config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                      CLUSTER="slurm", SLURM_CONTAINERS="docker", **settings)
    engine = engine_of(cfg, 25)
    expect_max_array(programs, size)
    for ident in ("40", "50", "60"):
        programs.expect("server", "slurm_submit", ..., out=f"{ident}\n")
    engine.start()
    return engine, [call.words for call in programs.calls if "slurm_submit" in call.words]


def test_a_sweep_over_max_array_size_is_several_arrays_each_from_its_offset(programs):
    # 25 tasks, MaxArraySize 10 (indexes 0-9): arrays of 10, 10 and 5, all at once.
    engine, submits = started_in_arrays(programs, "10")
    assert [options(words) for words in submits] == [
        ["--array=0-9", "--export=ALL,PYSTRIBUTED_TASK_OFFSET=0,PYSTRIBUTED_ARRAY_COUNT=25"],
        ["--array=0-9", "--export=ALL,PYSTRIBUTED_TASK_OFFSET=10,PYSTRIBUTED_ARRAY_COUNT=25"],
        ["--array=0-4", "--export=ALL,PYSTRIBUTED_TASK_OFFSET=20,PYSTRIBUTED_ARRAY_COUNT=25"]]
    assert all(words[words.index("--job-name") + 1] == NAME for words in submits)  # one name: one cancel
    assert engine.job.services == [[NAME, "40", None], [NAME, "50", None, 10], [NAME, "60", None, 20]]
    # squeue's array task ids are each array's own: task 3 of the second array is task 13.
    expect_jobs(programs, [NAME], [row("41", 0, "RUNNING", nodes="node1"),
                                   row("53", 3, "RUNNING", nodes="node2", array="50"),
                                   row("60", 4, "PENDING", reason="Resources", array="60")])
    engine.refresh()
    tasks = engine.job.tasks
    assert (tasks[0].node, tasks[13].node, tasks[3].node) == ("node1", "node2", "")
    assert tasks[24].why == "Resources" and tasks[4].why == ""


def test_with_max_concurrent_and_tasks_per_container_each_array_waits_for_the_one_before(programs):
    # 25 tasks, 2 a container: 13 jobs; MaxArraySize 5: arrays of 5, 5 and 3 jobs, one after another.
    engine, submits = started_in_arrays(programs, "5", MAX_CONCURRENT=4, TASKS_PER_CONTAINER=2)
    chunks = "--export=ALL,PYSTRIBUTED_TASKS_PER_CONTAINER=2,PYSTRIBUTED_TASK_COUNT=25"
    assert [options(words) for words in submits] == [
        ["--array=0-4%4", f"{chunks},PYSTRIBUTED_TASK_OFFSET=0,PYSTRIBUTED_ARRAY_COUNT=13"],
        ["--array=0-4%4", f"{chunks},PYSTRIBUTED_TASK_OFFSET=5,PYSTRIBUTED_ARRAY_COUNT=13",
         "--dependency=afterany:40"],
        ["--array=0-2%4", f"{chunks},PYSTRIBUTED_TASK_OFFSET=10,PYSTRIBUTED_ARRAY_COUNT=13",
         "--dependency=afterany:50"]]
    # array task 1 of the third array: job 11, tasks 22 and 23
    expect_jobs(programs, [NAME], [row("61", 1, "RUNNING", nodes="node2", array="60")])
    engine.refresh()
    assert [t.index for t in engine.job.tasks if t.node == "node2"] == [22, 23]


@pytest.mark.parametrize("answer, size", [("1001", 1001), ("", 1001), ("40", 40)])
def test_max_array_size_is_the_clusters_or_slurms_default(cfg, programs, answer, size):
    programs.expect("server", "slurm_max_array", out=f"{answer}\n")
    assert slurm.Slurm(cfg).max_array() == size


def test_a_cluster_without_job_arrays_refuses_the_sweep_saying_so(cfg, programs):
    engine = engine_of(cfg, 3)
    expect_max_array(programs, "0")
    with pytest.raises(StepError, match="allows no job arrays"):
        engine.start()


def test_a_waiting_task_shows_slurms_reason_a_running_one_its_node_and_gpu(cfg, programs):
    engine = engine_of(cfg, 2)
    expect_jobs(programs, [NAME], [row("41", 0, "RUNNING", nodes="node2"),
                                   row("40", 1, "PENDING", reason="Resources")], gpus="41 1\n")
    engine.refresh()
    first, second = engine.job.tasks
    assert (first.status, first.node, first.gpu) == ("running", "node2", "1")
    assert (second.status, second.why) == ("queued", "Resources")
    assert "queued: Resources" in str(engine.job.table())


def test_a_failed_task_is_retried_as_a_job_of_its_own_then_succeeds(cfg, programs):
    engine = engine_of(cfg, 2, retries=1)
    engine.job.services = [[NAME, "40", None]]
    expect_jobs(programs, [NAME], [row("41", 0, "COMPLETED", nodes="node1")])  # task 1: forgotten by Slurm
    expect_fetch(programs, 0, 0)
    expect_fetch(programs, 1, 1, log="Traceback (most recent call last):\nValueError: bad\n")
    retry = f"{NAME}-1-2"
    expect_retry(programs, 1, 50)
    expect_jobs(programs, [NAME, retry],
                [row("50", None, "PENDING", name=retry, reason="Priority", array="50")])
    expect_jobs(programs, [NAME, retry], [row("50", None, "RUNNING", name=retry, nodes="node2", array="50")])
    expect_jobs(programs, [NAME, retry], [])
    expect_fetch(programs, 1, 0)
    programs.expect("server", "remove", f"{FOLDER}.env", f"{FOLDER}.1-2.env")  # (what no job removed)
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "succeeded"] and job.status == "succeeded"
    assert [t.attempts for t in job.tasks] == [1, 2]
    words = programs.calls[4].words
    assert ("--export=ALL,PYSTRIBUTED_TASK=1,PYSTRIBUTED_ATTEMPT=2" in words
            and "--array" not in " ".join(words))
    # The retry's environment is sent again, to a file of its own, which its job removes at its end: the
    # array's goes with the array's last task, maybe before the retry starts.
    env_file = f"{FOLDER}.1-2.env"
    assert words[words.index("slurm_submit") + 1] == env_file and words[words.index("docker") + 1] == env_file
    assert programs.calls[4].stdin == b"TOKEN=s3cret\n"
    assert job.services == [[NAME, "40", None], [retry, "50", 1]]


def test_a_task_that_fails_without_retries_shows_its_remote_traceback(cfg, programs):
    engine = engine_of(cfg, 1)
    engine.job.services = [[NAME, "40", None]]
    expect_jobs(programs, [NAME], [row("41", 0, "COMPLETED")])
    expect_fetch(programs, 0, 1,
                 log="Traceback (most recent call last):\n  File \"/app/c.py\"\nValueError: bad\n")
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.watch("stop")
    assert job.statuses == ["failed"] and job.tasks[0].error.startswith("ValueError: bad")


def test_cancel_scancels_the_jobs_and_fetches_what_ran(cfg, programs):
    engine = engine_of(cfg, 2)
    engine.job.services = [[NAME, "40", None]]
    expect_jobs(programs, [NAME], [row("41", 0, "RUNNING", nodes="node1"), row("40", 1, "PENDING",
                                                                                 reason="Resources")])
    programs.expect("server", "slurm_cancel", NAME)
    expect_fetch(programs, 0, 130, cancelled=True)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.cancel()
    assert (job.statuses, job.status, [t.fetched for t in job.tasks]) == (["cancelled"] * 2, "cancelled",
                                                                          [True, False])


def test_cancel_leaves_tasks_that_had_ended_as_they_went_and_fetches_them(cfg, programs):
    """Tasks that ended while no one fetched them (a detached sweep) are not cancelled by a cancel."""
    engine = engine_of(cfg, 3)
    engine.job.services = [[NAME, "40", None]]
    expect_jobs(programs, [NAME], [row("43", 2, "RUNNING", nodes="node1")], saved=(0, 1))
    programs.expect("server", "slurm_cancel", NAME)
    expect_fetch(programs, 0, 0)
    expect_fetch(programs, 1, 1,
                 log="Traceback (most recent call last):\n  File \"/app/c.py\"\nValueError: bad\n")
    expect_fetch(programs, 2, 130, cancelled=True)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.cancel()
    assert job.statuses == ["succeeded", "failed", "cancelled"] and all(t.fetched for t in job.tasks)
    assert ([t.exit_code for t in job.tasks] == [0, 1, None]
            and job.tasks[1].error.startswith("ValueError: bad"))


def test_a_cancel_leaves_a_task_being_settled_to_its_settle_then_cancels_what_it_left_going(cfg, programs):
    engine = engine_of(cfg, 1)
    engine.job.services = [[NAME, "40", None]]
    engine.job.tasks[0].set(jobs.RUNNING, node="node1")
    engine.busy.add(0)  # its settle (a fetch thread) had begun; it leaves the task as it was
    expect_jobs(programs, [NAME], [], saved=(0,))
    programs.expect("server", "slurm_cancel", NAME)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.cancel()  # (no fetch of it by the cancel: its settle's)
    assert job.statuses == ["cancelled"] and not job.tasks[0].fetched


def test_attach_after_a_detach_fetches_what_ended_and_follows_the_rest(cfg, programs):
    engine = engine_of(cfg, 2)
    engine.job.services = [[NAME, "40", None]]
    engine.job.tasks[0].set(jobs.SUCCEEDED, node="node1")  # ended before the attach, not fetched yet
    expect_fetch(programs, 0, 0)
    expect_jobs(programs, [NAME], [row("42", 1, "RUNNING", nodes="node2")])
    expect_jobs(programs, [NAME], [])
    expect_fetch(programs, 1, 0)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.resume()
    assert job.statuses == ["succeeded", "succeeded"] and all(t.fetched for t in job.tasks)


def test_a_task_that_ended_without_a_state_file_is_tried_again_while_retries_allow(cfg, programs):
    """A job that ended with no state (its node failed: NODE_FAIL) is tried again as one of its own."""
    engine = engine_of(cfg, 1, retries=1)
    engine.job.services = [[NAME, "40", None]]
    expect_jobs(programs, [NAME], [row("41", 0, "NODE_FAIL", nodes="node1")])
    programs.expect("server", "fetch", f"{FOLDER}/0", "", out=tar_of({}))  # an empty folder: it never ran
    expect_retry(programs, 0, 50)
    retry = f"{NAME}-0-2"
    expect_jobs(programs, [NAME, retry], [])
    expect_fetch(programs, 0, 0)
    programs.expect("server", "remove", f"{FOLDER}.env", f"{FOLDER}.0-2.env")
    job = engine.watch("stop")
    assert job.statuses == ["succeeded"] and job.tasks[0].attempts == 2


def test_with_tasks_per_container_an_array_task_runs_its_chunk_each_task_settled_alone(programs, capsys):
    cfg = config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                      CLUSTER="slurm", SLURM_CONTAINERS="docker", MAX_CONCURRENT=4, TASKS_PER_CONTAINER=2,
                      SLURM_ARGS=["--partition", "gpu", "--time=00:10:00"])
    engine = engine_of(cfg, 3)
    engine.steps = progress.steps_for(False)
    expect_max_array(programs)
    programs.expect("server", "slurm_submit", ..., out="40\n")
    engine.start()
    assert ("note: each array task runs 2 tasks one after another: its time limit "
            "(--time 00:10:00 in SLURM_ARGS) must cover 2 of them") in capsys.readouterr().out
    words = programs.calls[-1].words
    assert "--array=0-1%2" in words and engine.job.per_container == 2  # two jobs: tasks 0-1 and task 2
    assert "--export=ALL,PYSTRIBUTED_TASKS_PER_CONTAINER=2,PYSTRIBUTED_TASK_COUNT=3" in words
    expect_jobs(programs, [NAME], [row("41", 0, "RUNNING", nodes="node2"), row("40", 1, "PENDING",
                                                                                 reason="Resources")])
    # array task 0 ended: tasks 0 and 1
    expect_jobs(programs, [NAME], [row("40", 1, "RUNNING", nodes="node1")])
    programs.expect("server", "fetch_tasks", FOLDER, "0", "1", out=tar_of({  # the job's tasks in one stream
        "0/output.log": b"done\n",
        "0/.pystributed-state.json": json.dumps({"State": {"ExitCode": 0}}).encode(),
        "1/output.log": b"Traceback (most recent call last):\nValueError: bad\n",
        "1/.pystributed-state.json": json.dumps({"State": {"ExitCode": 1}}).encode()}))
    expect_jobs(programs, [NAME], [])
    expect_fetch(programs, 2, 0)
    programs.expect("server", "remove", f"{FOLDER}.env")
    engine.look(fetch=False)
    assert [t.status for t in engine.job.tasks] == ["running", "running", "queued"]
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "failed", "succeeded"] and "ValueError: bad" in job.tasks[1].error


def test_the_looks_back_off_while_tasks_wait_and_not_in_the_last_wave(cfg, programs, monkeypatch):
    monkeypatch.setattr(slurm_engine, "POLL", 0.5)
    monkeypatch.setattr(slurm_engine, "POLL_MAX", 5.0)
    pauses = []
    monkeypatch.setattr(slurm_engine.time, "sleep", pauses.append)
    engine = engine_of(cfg, 2)
    engine.job.services = [[NAME, "40", None]]
    for _ in range(6):  # task 1 waits for a GPU: Slurm starts it when one frees, whatever we look at
        expect_jobs(programs, [NAME], [row("41", 0, "RUNNING", nodes="node1"), row("40", 1, "PENDING")])
    expect_jobs(programs, [NAME], [row("42", 1, "RUNNING", nodes="node1")], saved=[0])
    expect_fetch(programs, 0, 0)
    expect_jobs(programs, [NAME], [row("42", 1, "RUNNING", nodes="node1")])
    expect_jobs(programs, [NAME], [], saved=[0, 1])
    expect_fetch(programs, 1, 0)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "succeeded"]
    assert pauses[:6] == [0.75, 1.125, 1.6875, 2.0, 2.0, 2.0]  # up to POLL_RUNNING while some run
    assert pauses[6:] == [0.5, 0.5]  # the last wave (and its fetch): its end is the sweep's


def test_a_task_that_saved_its_state_has_ended_before_slurm_says_its_job_has(cfg, programs):
    engine = engine_of(cfg, 2)
    engine.job.services = [[NAME, "40", None]]
    running = [row("41", 0, "RUNNING", nodes="node1"), row("42", 1, "RUNNING", nodes="node2")]
    expect_jobs(programs, [NAME], running)
    expect_jobs(programs, [NAME], running, saved=[0])  # its container ended; its job ends in a moment
    expect_fetch(programs, 0, 0)
    expect_jobs(programs, [NAME], running[1:], saved=[0, 1])
    expect_fetch(programs, 1, 0)
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.watch("stop")
    assert job.statuses == ["succeeded", "succeeded"]


def test_a_chunks_tasks_that_a_stop_kept_from_starting_run_again_without_using_a_retry(programs):
    """Array task 0 (tasks 0 and 1) reached its --time limit (or was preempted) while task 0 ran: task 0
    failed, task 1 never started. Task 1 is queued again as a job of its own, though --retries is 0."""
    cfg = config.load(environ={}, REMOTE_SERVER="me@login", DOCKER_REGISTRY="reg:5000", REMOTE_WORKDIR="runs",
                      CLUSTER="slurm", SLURM_CONTAINERS="docker", TASKS_PER_CONTAINER=2)
    engine = engine_of(cfg, 2)
    engine.job.services, engine.job.per_container = [[NAME, "40", None]], 2
    expect_jobs(programs, [NAME], [], saved=(0, 1))
    unstarted = {"State": {"ExitCode": 143, "Error": "stopped before it started"}, "Cancelled": False,
                 "Unstarted": True}
    programs.expect("server", "fetch_tasks", FOLDER, "0", "1", out=tar_of({
        "0/output.log": b"Terminated\n",
        "0/.pystributed-state.json": json.dumps({"State": {"ExitCode": 143}}).encode(),
        "1/.pystributed-state.json": json.dumps(unstarted).encode()}))
    expect_retry(programs, 1, 50)
    retry = f"{NAME}-1-2"
    expect_jobs(programs, [NAME, retry], [row("50", None, "PENDING", name=retry, reason="Priority",
                                              array="50")])
    expect_jobs(programs, [NAME, retry], [])
    expect_fetch(programs, 1, 0)
    programs.expect("server", "remove", f"{FOLDER}.env", f"{FOLDER}.1-2.env")
    engine.look()
    engine.look()
    shown = engine.job.tasks[1].status  # waiting again: queued, not "retrying" (it never ran)
    job = engine.watch("stop")
    assert shown == "queued"
    assert job.statuses == ["failed", "succeeded"] and [t.attempts for t in job.tasks] == [1, 2]
    assert job.tasks[1].requeued == 1 and job.tasks[1].error == ""
    assert "--export=ALL,PYSTRIBUTED_TASK=1,PYSTRIBUTED_ATTEMPT=2" in programs.calls[3].words


def test_a_cancel_cancels_the_tasks_that_a_stop_kept_from_starting(cfg, programs):
    """Seen ended by the cancel's look (a detached sweep's), a task that never started is cancelled, not
    failed."""
    engine = engine_of(cfg, 1)
    engine.job.services = [[NAME, "40", None]]
    engine.job.tasks[0].set(jobs.RUNNING, node="node1", attempts=1)
    expect_jobs(programs, [NAME], [], saved=(0,))
    programs.expect("server", "slurm_cancel", NAME)
    state = {"State": {"ExitCode": 143}, "Unstarted": True, "Cancelled": False}
    programs.expect("server", "fetch", f"{FOLDER}/0", "",
                    out=tar_of({".pystributed-state.json": json.dumps(state).encode()}))
    programs.expect("server", "remove", f"{FOLDER}.env")
    assert engine.cancel().statuses == ["cancelled"]


def test_a_task_whose_folder_cannot_be_fetched_is_fetched_again_then_fails_saying_where_it_is(cfg, programs):
    """The login node drops the fetch: the task ran, so it is not run again (that would cost its work);
    the next looks fetch it again, and after FETCH_TRIES failures it fails, naming its folder."""
    engine = engine_of(cfg, 1, retries=1)
    engine.job.services = [[NAME, "40", None]]
    for _ in range(slurm_engine.FETCH_TRIES):
        expect_jobs(programs, [NAME], [], saved=(0,))
        programs.expect("server", "fetch", f"{FOLDER}/0", "", code=255,
                        stderr="Connection reset by peer\n")
    programs.expect("server", "remove", f"{FOLDER}.env")
    job = engine.watch("stop")
    assert job.statuses == ["failed"] and job.tasks[0].attempts == 1
    assert "Connection reset by peer" in job.tasks[0].error and f"fetch {SWEEP}" in job.tasks[0].error
