"""What every place's engine shares (engine.py): the watch when the place does not answer, the one
process that drives a job (its claim), another process attaching meanwhile, `collect`. Real threads:
the engine's own fetch pool, and a second "process" (a thread with a Job of its own, as `attach` from
another kernel loads it)."""
import threading
import time

import pytest

from pystributed import cell_runner, config, engine, jobs, sweep
from pystributed.errors import StepError
from pystributed.places import ssh

SWEEP = "sweep-20261125-101502-3fa9c1"


@pytest.fixture
def cfg():
    return config.load(environ={}, REMOTE_SERVER="gpu-box", DOCKER_REGISTRY="reg:5000",
                       DOCKER_IMAGE_NAME="proj",
                       REMOTE_WORKDIR="runs", MAX_CONCURRENT=1)


def job_of(n, **fields):
    return jobs.Job(SWEEP, [jobs.Task(i, {"x": i}) for i in range(n)], server="gpu-box",
                    remote_dir=f"/r/{SWEEP}",
                    image="reg:5000/proj:s", **fields)


class Flaky(engine.Engine):
    """An engine whose looks fail `failures` times (an ssh cut, a squeue time-out), then end every task."""

    def __init__(self, *args, failures, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures, self.looks = failures, 0

    def wait(self):
        self.fetches.submit(time.sleep, 0.01)  # a fetch of the pool's going, as looks leave them
        self.looks += 1
        if self.looks <= self.failures:
            raise StepError("status", "ssh: connect to host gpu-box port 22: Connection timed out",
                            output="kex_exchange_identification: read: Connection reset by peer")
        for task in self.job.tasks:
            task.set(jobs.SUCCEEDED)


def flaky(cfg, failures, monkeypatch):
    monkeypatch.setattr(engine, "LOOK_PAUSE", 0.01)
    return Flaky(cfg, ssh.Ssh(cfg), job_of(2), failures=failures, quiet=True)


def test_a_look_that_fails_now_and_then_is_tried_again(cfg, monkeypatch):
    run = flaky(cfg, engine.LOOK_TRIES - 1, monkeypatch)
    run.job.claim()
    job = run.watch("detach")
    assert job.statuses == ["succeeded", "succeeded"] and run.looks == engine.LOOK_TRIES


def test_a_place_that_stays_unreachable_ends_the_watch_the_tasks_going_on_no_thread_left(cfg, monkeypatch):
    run = flaky(cfg, 100, monkeypatch)
    before = threading.active_count()
    run.job.bind(cfg).claim()
    with pytest.raises(StepError) as caught:
        run.watch("detach")
    error = caught.value
    assert run.looks == engine.LOOK_TRIES and "did not answer 5 times in a row" in error.message
    assert "Connection reset by peer" in error.output and "go on there. Attach later" in error.hint
    assert run.job.status == "detached" and jobs.load(cfg, SWEEP).status == "detached"
    assert threading.active_count() <= before  # the fetch pool's threads are gone
    assert jobs.load(cfg, SWEEP).claim()  # and the job is free for an attach


def test_one_process_drives_a_job_at_a_time(cfg):
    first, second = job_of(1).bind(cfg), job_of(1).bind(cfg)
    assert first.claim() and first.claim()  # (again: it holds it)
    assert not second.claim()
    first.release()
    assert second.claim()


def test_an_attach_beside_the_driving_process_starts_nothing_and_ends_with_it(cfg, programs):
    """Two kernels attached to one sweep: the second shows the record as the first saves it (the fake
    programs fail on any command: it runs none), and ends when the first ends the job."""
    driver = job_of(2, status="running").bind(cfg)
    driver.save()
    assert driver.claim()
    got = {}
    beside = threading.Thread(target=lambda: got.update(job=sweep.attach(cfg, SWEEP, quiet=True)))
    beside.start()
    time.sleep(3 * engine.POLL)
    assert beside.is_alive() and "job" not in got
    for task in driver.tasks:
        task.set(jobs.SUCCEEDED)
    driver.set(jobs.SUCCEEDED)
    driver.release()
    beside.join(timeout=10)
    assert got["job"].statuses == ["succeeded", "succeeded"] and not got["job"].claimed


def test_an_attach_takes_the_job_on_when_the_driving_process_ends(cfg, monkeypatch):
    driver = job_of(1, status="running").bind(cfg)
    driver.save()
    driver.claim()
    resumed = []

    class Resumer:
        def __init__(self, job):
            self.job = job

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def resume(self):
            resumed.append(self.job)
            return self.job

    monkeypatch.setattr(sweep, "_engine", lambda config, sweep_id, job, **options: Resumer(job))
    beside = threading.Thread(target=sweep.attach, args=(cfg, SWEEP), kwargs={"quiet": True})
    beside.start()
    time.sleep(2 * engine.POLL)
    assert not resumed
    driver.release()  # its process ended (the kernel died): the lock goes with it
    beside.join(timeout=10)
    assert len(resumed) == 1 and resumed[0].claimed is not None


def test_a_watch_that_fails_lets_the_job_go_for_an_attach_in_the_same_kernel(cfg):
    class Broken(engine.Engine):
        def start(self):
            pass

        def wait(self):
            raise RuntimeError("a bug")

    run = Broken(cfg, ssh.Ssh(cfg), job_of(1), quiet=True)
    with pytest.raises(RuntimeError):
        run.go(detach=False, on_interrupt="stop")
    assert run.job.claimed is None and job_of(1).bind(cfg).claim()


def test_a_detached_jobs_followed_output_stops_showing(cfg, capsys):
    """An interrupt with ON_INTERRUPT = "detach" in a kernel: the followed task's stream goes on until the
    task ends, but its output (figures too) is not shown any more, in whatever cell runs next."""
    go_on = threading.Event()

    def stream(on_stdout, on_stderr):
        on_stdout("before\n")
        go_on.wait(5)
        on_stdout("after\n")
        on_stdout(f"{cell_runner.MARK}{{\"data\": {{\"text/plain\": \"fig\"}}}}{cell_runner.END}")

    run = engine.Engine(cfg, ssh.Ssh(cfg), job_of(1), quiet=True, follow=0)
    run.follow_task(run.job.tasks[0], stream)
    time.sleep(0.2)
    run.detached()
    go_on.set()
    run.followed.join(5)
    said = capsys.readouterr().out
    assert "before" in said and "after" not in said and "fig" not in said  # (a figure: its text here)
