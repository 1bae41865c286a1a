"""A job's tasks on one server (ssh.py, local.py): MAX_CONCURRENT containers at a time, each looked
after by a thread of ours, which starts the task's container, waits for it, puts it away (log and
state saved in its folder, as a run's) and fetches its folder; a failed task is started again while
--retries allow. Each task's folder is REMOTE_WORKDIR/<sweep-id>/<index>/, its container
pystributed-<sweep-id>-<index>."""
from __future__ import annotations

import collections
import contextlib
import threading
import time

from pystributed import context, docker
from pystributed.engine import Engine
from pystributed.errors import StepError
from pystributed.jobs import CANCELLED, FAILED, QUEUED, RETRYING, RUNNING, STARTING, SUCCEEDED

INTERRUPTED = 130  # a cell's exit code after SIGINT (a cancel, or an interrupt of ours)
STOPPED = (INTERRUPTED, 137, 143)  # and after docker stop's SIGTERM, then SIGKILL


class ServerEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = collections.deque()
        self.stopping = threading.Event()
        self.workers = []
        self.errors = []
        self.detaching = False
        # The tasks whose container was started (by this process, or before an attach).
        self.launched = {t.index for t in self.job.tasks if t.status in (STARTING, RUNNING, RETRYING)}

    def task_id(self, task):
        return f"{self.job.sweep_id}-{task.index}"

    def task_dir(self, task):
        return f"{self.job.remote_dir}/{task.index}"

    def start(self):
        self.queue.extend(t for t in self.job.tasks if not t.final)
        width = min(self.config.MAX_CONCURRENT or 1, len(self.queue))
        with self.steps.step("start", f"{len(self.queue)} tasks on {self.place.name}, {width} at a time"):
            # all at once, before this process goes (sweep.run)
            if self.sweep is not None and self.sweep.detach:
                while self.queue:
                    task = self.queue.popleft()
                    self.make_folder(task)
                    self.launch(task)
                return
            self.workers = [threading.Thread(target=self.work, daemon=True) for _ in range(width)]
            for worker in self.workers:
                worker.start()

    def resume(self):
        """After a detach, or after the process that drove the job ended: a thread for each task that
        was started, to put it away and fetch it, then to start the next task that waits (MAX_CONCURRENT
        at a time, those counted); the tasks never started are started."""
        started = [t for t in self.job.tasks if not t.final and t.index in self.launched]
        self.queue.extend(t for t in self.job.tasks if not t.final and t.index not in self.launched)
        spare = max(0, min(self.config.MAX_CONCURRENT or 1, len(started) + len(self.queue)) - len(started))
        self.workers = [threading.Thread(target=self.resume_one, args=(t,), daemon=True) for t in started]
        self.workers += [threading.Thread(target=self.work, daemon=True) for _ in range(spare)]
        for worker in self.workers:
            worker.start()
        return self.watch("detach")

    def resume_one(self, task):
        self.put_away(task)
        self.work()

    def detached(self):
        self.detaching = True  # the workers leave the tasks as they are: they go on without us
        self.stopping.set()
        return super().detached()

    def refresh(self):
        """(The record has what this process saw; the containers are put away by attach.)"""

    def goes_on_alone(self):
        # The tasks not started yet are started only by this process, which an interrupt ends.
        return not self.queue and all(t.index in self.launched for t in self.job.tasks if not t.final)

    def make_folder(self, task):
        self.place.call("rundir", self.place.workdir(), f"{self.job.sweep_id}/{task.index}", step="run")

    def work(self):
        while not self.stopping.is_set():
            with self.lock:
                if not self.queue:
                    return
                task = self.queue.popleft()
            try:
                self.run_task(task)
            except StepError as e:
                # an interrupt (Ctrl-C reaches our ssh too): cancel() puts it away
                if self.stopping.wait(0.5):
                    return
                task.set(FAILED, error=f"{e.message}\n{e.output}".strip(), ended=time.time())
            except BaseException as e:  # noqa: BLE001 (kept for the main thread)
                self.errors.append(e)
                return

    def launch(self, task):
        """Start the task's container (an attempt more)."""
        attempt = task.attempts + 1
        task.set(STARTING, attempts=attempt, started=time.time(), ended=None)
        args = docker.run_detached(self.job.image, run_id=self.task_id(task), results_dir=self.task_dir(task),
                                   user=self.job.user, env=self.env(task.index, attempt),
                                   extra_args=[*self.job.mounts, *self.config.DOCKER_RUN_ARGS])[2:]
        self.place.start([*args, *context.task_command("--cell")], self.secrets())  # finish saves its log
        self.launched.add(task.index)
        # a cancel began while it started: cancel() missed it
        if self.stopping.is_set() and not self.detaching:
            self.place.stop(self.task_id(task), step="cancel")
        task.set(RUNNING, node=self.place.name)

    def run_task(self, task):
        self.make_folder(task)
        while True:
            if self.stopping.is_set():
                task.set(CANCELLED)
                return
            self.launch(task)
            self.follow_task(task, lambda out, err: self.logs(task, out, err, follow=True))
            code = self.place.finish(self.task_dir(task), self.task_id(task))
            if self.detaching:  # (in a kernel, after a detach): attach puts it away and fetches it
                return
            task.set(exit_code=code, ended=time.time())
            if code == INTERRUPTED and not self.stopping.is_set():
                self.cancelled_elsewhere()
            if code == 0 or self.stopping.is_set() or task.attempts > self.job.retries:
                break
            task.set(RETRYING)
        task.set(SUCCEEDED if code == 0 else CANCELLED if self.stopping.is_set() else FAILED)
        self.fetch(task)

    def cancelled_elsewhere(self):
        """A task's cell was interrupted (SIGINT) by no interrupt of ours: `cancel` from another
        process. Nothing more is started or tried again; what waited is cancelled."""
        self.stopping.set()
        with self.lock:
            waiting, self.queue = list(self.queue), collections.deque()
        for task in waiting:
            task.set(CANCELLED)

    def put_away(self, task):
        """A task started before a detach: wait for it, put it away (tried again while --retries allow),
        fetch it. One whose container never started (its process ended first) waits again."""
        try:
            code = self.place.finish(self.task_dir(task), self.task_id(task), absent=True)
            if code is None:
                with self.lock:
                    self.launched.discard(task.index)
                    self.queue.appendleft(task)
                task.set(QUEUED, attempts=max(0, task.attempts - 1), started=None)
                return
            while (code not in (0, INTERRUPTED) and task.attempts <= self.job.retries
                   and not self.stopping.is_set()):
                task.set(RETRYING, exit_code=code)
                self.launch(task)
                code = self.place.finish(self.task_dir(task), self.task_id(task))
        except StepError as e:
            if self.stopping.wait(0.5):  # an interrupt (Ctrl-C reaches our ssh too): the task goes on
                return
            task.set(FAILED, error=f"{e.message}\n{e.output}".strip(), ended=time.time())
            return
        state = SUCCEEDED if code == 0 else CANCELLED if code == INTERRUPTED else FAILED
        task.set(state, exit_code=code, ended=time.time(), node=self.place.name)
        self.fetch(task)

    def fetch(self, task):
        """The task's folder, here; a task whose folder did not come fails. Whether it came."""
        if self.fetch_task(task, self.place, self.task_dir(task)):
            return True
        self.not_fetched(task, self.task_dir(task), self.place.name)
        return False

    def wait(self):
        while any(w.is_alive() for w in self.workers):
            self.tick()
            time.sleep(0.5)
        for worker in self.workers:
            worker.join()
        self.tick()
        if self.errors:
            raise self.errors[0]

    def cancel(self):
        """Stop every task that started (SIGINT, then `docker stop`), put each away, fetch what it wrote.
        States are not trusted here: an interrupt from a terminal also kills our ssh commands, and a
        worker may have taken that for its task's failure."""
        self.stopping.set()
        started = [t for t in self.job.tasks if t.index in self.launched and not t.fetched]
        for task in started:
            with contextlib.suppress(StepError):
                self.place.stop(self.task_id(task), step="cancel")
        for worker in self.workers:
            worker.join(timeout=15)
        ended = {}  # index -> how a task put away here went
        for task in started:
            if task.fetched:
                continue
            code = None
            with contextlib.suppress(StepError):
                code = self.place.finish(self.task_dir(task), self.task_id(task), cancelled=True)
            # A task that ended before the cancel reached it keeps how it went: succeeded, or failed
            # with a code of its own.
            ended[task.index] = (SUCCEEDED if code == 0 else CANCELLED if code is None or code in STOPPED
                                 else FAILED)
            task.set(ended[task.index], exit_code=code, ended=time.time())
            if not self.fetch(task):
                ended[task.index] = CANCELLED if ended[task.index] == CANCELLED else FAILED
        for task in self.job.tasks:
            if not task.final or task in started and task.status != ended.get(task.index, SUCCEEDED):
                task.set(ended.get(task.index, CANCELLED))
        return self.done()

    def logs(self, task, on_stdout, on_stderr, *, follow=False):
        return self.place.logs(self.task_dir(task), self.task_id(task), on_stdout, on_stderr, follow=follow)
