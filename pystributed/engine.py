"""Running a job's tasks, whatever the place: what every place's engine shares (the display, the
watch with its interrupt, fetching a task's folder, the values, the record). Each place's engine
(places/server_engine.py, places/swarm_engine.py; a place names its own, `Place.engine`) adds:

    start()          start the tasks (or queue them)
    wait()           until every task has ended, fetching each one's folder as it ends
    cancel()         stop every task (their cells get a KeyboardInterrupt), fetch what they wrote
    resume()         after a detach (attach): follow what goes on, fetch what ended
    refresh()        (status) bring the tasks' states up to date without fetching
    logs(task, out, err, follow=)   a task's output; its exit code
    goes_on_alone()  whether the tasks go on when this process stops (an interrupt with "detach")
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import secrets
import shutil
import threading
import time
from pathlib import Path

from pystributed import docker, live, progress, results
from pystributed.config import environment
from pystributed.errors import StepError, parse_traceback
from pystributed.job_view import Display
from pystributed.jobs import CANCELLED, ENDED, FAILED, RUNNING, SUCCEEDED

POLL = 0.5
LOOK_TRIES, LOOK_PAUSE = 5, 2.0  # a place that does not answer: looked at again, so many times, after so long


class Engine:
    def __init__(self, config, place, job, *, sweep=None, collect=None, follow=None, quiet=False,
                 finalize=None):
        self.config, self.place, self.job = config, place, job.bind(config)
        # collect(job): what the caller takes from the tasks' folders once they are here (the --out values);
        # finalize(folder, files): what it adds to a task's folder before it lands (a run's run.json)
        self.sweep, self.collect, self.follow = sweep, collect or (lambda job: None), follow
        self.finalize = finalize
        self.steps = sweep.steps if sweep else progress.steps_for(quiet)
        self.display = Display(self.steps)
        self.local = Path(config.LOCAL_RESULTS_DIR) / job.sweep_id
        job.local_path = str(self.local.resolve())
        self.fetches = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        self.followed = None
        self.lock = threading.Lock()
        self.busy = set()  # a cluster's: the indexes of the tasks being fetched and settled
        self.fetch_failed = collections.Counter()  # index -> its fetches that failed in a row (a dropped ssh)

    def env(self, index=None, attempt=None):
        """The container's variables (on the command line; ENV and SECRETS go on its stdin)."""
        return docker.task_env(self.job.sweep_id, sweep_id=None if self.job.single else self.job.sweep_id,
                               index=index, attempt=attempt)

    def secrets(self):
        """ENV and SECRETS: the sweep's, or read again here after an attach."""
        return self.sweep.env if self.sweep else environment(self.config)

    def go(self, *, detach, on_interrupt):
        self.job.claim()  # (a new job's: no other process knows it yet)
        try:
            self.start()
            self.job.set(RUNNING)
            if detach:
                return self.detached()
            return self.watch(on_interrupt)
        finally:  # however it ends, this process drives it no more (a kernel lives on: attach there)
            self.job.release()

    def detached(self):
        self.job.set("detached")
        self.job.release()  # an attach, from here or elsewhere, drives it next
        sweep_id = self.job.sweep_id
        what = f"Run {sweep_id}" if self.job.single else f"Sweep {sweep_id} ({len(self.job.tasks)} tasks)"
        self.steps.say(f"{what} goes on on {self.place.name}. "
                       f"Follow it and fetch its results with runner.attach({sweep_id!r}) (or, in a shell, "
                       f"`python -m pystributed attach {sweep_id}`).\n")
        return self.job

    def tick(self):
        """After each look: the record saved (once for all the tasks it changed), the display drawn."""
        self.job.flush()
        self.display.update(self.job)

    def watch(self, on_interrupt):
        try:
            self.waited()
        except KeyboardInterrupt:
            if on_interrupt == "detach" and self.goes_on_alone():
                self.detached()
                raise
            self.steps.say(f"\nInterrupted: stopping every task of {self.job.sweep_id} and fetching what "
                           "results exist ...\n")
            self.cancel()
            raise
        except BaseException:
            self.job.release()
            raise
        return self.done()

    def waited(self):
        """wait(), tried again when the place does not answer (an ssh cut, a squeue time-out): after
        LOOK_TRIES failures in a row, the watch ends and says the tasks go on there."""
        failures, since = 0, time.monotonic()
        while True:
            try:
                return self.wait()
            except StepError as e:
                # In a row: a wait that went on a while since the last failure starts the count again.
                failures = 1 if time.monotonic() - since > 60 else failures + 1
                since = time.monotonic()
                if failures >= LOOK_TRIES:
                    self.lost_touch(e)
                self.steps.say(f"{e.step}: {e.message.splitlines()[0]}; looking again ...\n")
                time.sleep(min(LOOK_PAUSE * failures, 10))

    def lost_touch(self, error):
        """The place stays unreachable: no thread of ours is left, the job goes on there."""
        self.fetches.shutdown(wait=True, cancel_futures=True)
        self.job.set("detached")
        self.job.release()
        sweep_id = self.job.sweep_id
        raise StepError(error.step, f"{self.place.name} did not answer {LOOK_TRIES} times in a row: "
                        f"{error.message}", output=error.output,
                        hint=f"The tasks of {sweep_id} go on there. Attach later with runner.attach("
                        f"{sweep_id!r}) (or `python -m pystributed attach {sweep_id}`).") from None

    def done(self):
        self.fetches.shutdown(wait=True)
        if self.followed is not None:  # the followed task's last output
            self.followed.join(timeout=5)
        job = self.job
        self.collect(job)
        job.set(SUCCEEDED if job.ok else CANCELLED if CANCELLED in job.statuses else FAILED,
                ended=results.now_iso())
        if self.local.exists() and not job.single:
            (self.local / "sweep.json").write_text(job.to_json(), encoding="utf-8")
        job.release()
        self.display.end(job)
        return job

    def fetch_task(self, task, place, remote_dir, *, going=False):
        """Copy the task's folder to LOCAL_RESULTS_DIR/<sweep-id>/<index>/ (whole, or not at all);
        whether it came."""
        local = self.local if self.job.single else self.local / str(task.index)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            place.fetch(remote_dir, lambda stream: results.extract(stream, local, finalize=self.finalize),
                        going=going,
                        hint=f"The task's results are still in {remote_dir} on {task.node or place.name}.")
        except (StepError, OSError) as e:
            task.set(why=f"its results could not be fetched: {said(e)}")
            self.fetch_failed[task.index] += 1
            self.steps.say(f"task {task.index}: {task.why}\n")
            return False
        self.landed(task, local)
        return True

    def not_fetched(self, task, remote_dir, where):
        """A task whose folder did not come: it fails (a cancelled one stays so), and says where its
        results are."""
        sweep_id = self.job.sweep_id
        task.set(CANCELLED if task.status == CANCELLED else FAILED,
                 error=f"{task.why}\nIts results are still in {remote_dir} on {where}: fetch them with "
                 f"runner.fetch({sweep_id!r}) (or `python -m pystributed fetch {sweep_id}`).")

    def fetch_tasks(self, tasks, place, remote_dir):
        """The folders of several tasks that ended together (a container's chunk) in one stream, each
        then at LOCAL_RESULTS_DIR/<sweep-id>/<index>/ as fetch_task leaves it."""
        if len(tasks) == 1:
            return self.fetch_task(tasks[0], place, self.job.task_dir(tasks[0]))
        batch = self.local / f".tasks-{tasks[0].index}-{secrets.token_hex(4)}"
        try:
            try:
                place.fetch_tasks(remote_dir, [t.index for t in tasks],
                                  lambda stream: results.extract(stream, batch),
                                  hint=f"The tasks' results are still in {remote_dir} on "
                                  f"{tasks[0].node or place.name}.")
            except (StepError, OSError) as e:
                for task in tasks:
                    task.set(why=f"its results could not be fetched: {said(e)}")
                    self.fetch_failed[task.index] += 1
                    self.steps.say(f"task {task.index}: {task.why}\n")
                return
            for task in tasks:
                local, got = self.local / str(task.index), batch / str(task.index)
                if not got.is_dir():
                    task.set(why="its results could not be fetched: its folder is not there")
                    continue
                old = batch / f".old-{task.index}"
                # an earlier fetch's copy goes once the new one is there
                with contextlib.suppress(FileNotFoundError):
                    local.rename(old)
                got.rename(local)
                self.landed(task, local)
        finally:
            shutil.rmtree(batch, ignore_errors=True)

    def place_of(self, task):
        """Where the task ran (its folder is there), or None if it did not."""
        return self.place if task.node else None

    def fetch_now(self):
        """`fetch`: the folders of the tasks that have ended, here now (again for those whose copy
        failed); nothing is started or waited for. The Job."""
        self.refresh()
        for task in self.job.tasks:
            place = self.place_of(task)
            if not task.fetched and (task.final or task.status == ENDED) and place is not None:
                self.fetches.submit(self.fetch_ended, task, place, self.job.task_dir(task))
        self.fetches.shutdown(wait=True)
        if all(t.final for t in self.job.tasks):
            return self.done()
        self.collect(self.job)
        self.job.flush()
        return self.job

    def cancel_tasks(self, place_of):
        """A cluster's cancel, once its jobs are stopped: each task not ended is cancelled (cancel_task;
        `place_of(task)` where it ran, or None), but for those being settled (`busy`), whose settle
        decides; one that settle left going is cancelled once every fetch is through. The Job."""
        for task in self.job.tasks:
            if not task.final and task.index not in self.busy:
                self.cancel_task(task, place_of(task), self.job.task_dir(task))
        self.fetches.shutdown(wait=True)
        for task in self.job.tasks:
            if not task.final:
                task.set(CANCELLED, ended=time.time())
        return self.done()

    def cancel_task(self, task, place, remote_dir):
        """A task not ended when its job is cancelled: cancelled, and its folder fetched from `place`
        if it ran there. One that had ended before (ENDED) keeps how it went, which its folder says."""
        ended = task.status == ENDED and place is not None
        if not ended:
            task.set(CANCELLED, ended=time.time())
        if place is not None:
            self.fetches.submit(self.fetch_ended if ended else self.fetch_task, task, place, remote_dir)

    def fetch_ended(self, task, place, remote_dir):
        """An ended task's folder; its state file says how it went."""
        if not self.fetch_task(task, place, remote_dir):
            return self.not_fetched(task, remote_dir, task.node or place.name)
        state = json_file(Path(task.local_path) / results.STATE_NAME)
        code = (state.get("State") or {}).get("ExitCode")
        status = SUCCEEDED if code == 0 else \
            CANCELLED if code is None or state.get("Cancelled") or state.get("Unstarted") else FAILED
        task.set(status, exit_code=code, ended=task.ended or time.time(),
                 error="" if status == SUCCEEDED else task.error)
        if status == FAILED:
            task.set(error=failure(task))

    def landed(self, task, local):
        """The task's folder is here: its times (the container's own) and, for a failure, its error."""
        self.fetch_failed.pop(task.index, None)
        fields = {"local_path": str(local.resolve()), "fetched": True}
        state = json_file(local / results.STATE_NAME).get("State") or {}
        times = [results.docker_time(state.get(k)) for k in ("StartedAt", "FinishedAt")]
        if all(times):  # the container's own, from the node's clock
            fields["started"], fields["ended"] = times[0].timestamp(), times[1].timestamp()
        task.set(**fields)
        if task.status == FAILED and not task.error:
            task.set(error=failure(task))

    def follow_task(self, task, stream):
        """With `follow`, the task's output here, live, once it runs (`stream(on_stdout, on_stderr)`)."""
        if self.follow != task.index or self.followed is not None:
            return
        out, err = live.Redraws("stdout"), live.Redraws("stderr")

        def go():
            with contextlib.suppress(StepError):
                stream(live.Unmarked(out.write), live.Unmarked(err.write))
            out.close()
            err.close()

        self.followed = threading.Thread(target=go, daemon=True)
        self.followed.start()

    def goes_on_alone(self):
        return True


def failure(task):
    """The remote exception of a failed task, from its log."""
    text = task.log.read_text(encoding="utf-8", errors="replace") if task.log and task.log.exists() else ""
    kind, message, trace = parse_traceback(text)
    if kind:
        return f"{kind}: {message}\n{trace}"
    if task.exit_code is not None:
        return f"exit code {task.exit_code}" + (f": {task.why}" if task.why else "")
    return task.why or "failed"


def said(error):
    """A StepError's message and the tool's own words (its last lines); an OSError as it reads."""
    output = (getattr(error, "output", "") or "").strip()
    return getattr(error, "message", str(error)) + (f": {output[-500:]}" if output else "")


def json_file(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}

