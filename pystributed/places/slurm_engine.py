"""A job's tasks on a Slurm cluster (slurm.py): one job array (`--array=0-(N-1)%MAX_CONCURRENT`, its
task ids the tasks' indexes; with TASKS_PER_CONTAINER = K, `0-(N/K-1)`, each running its chunk's K tasks,
Job.chunk), and a one-task job for each retry of a task (PYSTRIBUTED_TASK given).
One squeue call reads them all (and which tasks saved their state: those ended), every POLL seconds in
the last wave, backing off before it (next_pause);
a pending task shows Slurm's reason (Resources, Priority, QOSMaxGRESPerUser, ...), a running one its
node and GPUs. A task that Slurm no longer lists as pending or running has ended: its folder is
fetched from the login node (the filesystem is shared), and its state file (task_runner.py, or the job
script's own when the container never started) says how it went; squeue forgets ended jobs, the
state files stay."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from pystributed import docker, results
from pystributed.engine import Engine, failure, json_file
from pystributed.errors import StepError
from pystributed.jobs import CANCELLED, ENDED, FAILED, QUEUED, RETRYING, RUNNING, SUCCEEDED
from pystributed.places.slurm import job_name

POLL, POLL_RUNNING, POLL_MAX = 0.5, 2.0, 5.0
FETCH_TRIES = 3  # fetches of an ended task's folder that fail in a row before it fails (not re-run: it ran)


class SlurmEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cancelling = False
        self.pause = POLL

    @property
    def name(self):
        return job_name(self.job.sweep_id)

    def run_args(self):
        return docker.run_detached(self.job.image, run_id=self.job.sweep_id, results_dir=self.job.remote_dir,
                                   user=self.job.user, env=self.env(),
                                   extra_args=[*self.job.mounts, *self.config.DOCKER_RUN_ARGS])[2:]

    def start(self):
        n, per = len(self.job.tasks), 1 if self.job.single else self.config.TASKS_PER_CONTAINER
        jobs = -(-n // per)  # each runs `per` tasks one after another (slurm_job.sh, task_runner.py)
        at_once = f"%{min(self.config.MAX_CONCURRENT, jobs)}" if self.config.MAX_CONCURRENT else ""
        single = self.job.single  # (a run: one job, its folder the run's; over NODES nodes)
        with self.steps.step("start", (f"run {self.job.sweep_id}" if single else f"{n} tasks")
                             + f" on the Slurm cluster of {self.place.name}"
                             + (f", {per} a job" if per > 1 else "")):
            ident = self.place.submit(self.run_args(), self.secrets(), remote_dir=self.job.remote_dir,
                                      name=self.name, sweep=not single,
                                      array=None if single else f"0-{jobs - 1}{at_once}",
                                      nodes=self.config.NODES if single else 1,
                                      variables=[f"PYSTRIBUTED_TASKS_PER_CONTAINER={per}",
                                                 f"PYSTRIBUTED_TASK_COUNT={n}"] if per > 1 else ())
        self.job.set(services=[[self.name, ident, None]], per_container=per)
        if per > 1:
            limit = time_limit(self.config.SLURM_ARGS)
            self.steps.say(f"note: each array task runs {per} tasks one after another: its time limit ("
                           + (f"--time {limit} in SLURM_ARGS" if limit else "the partition's")
                           + f") must cover {per} of them; those it cuts off end without a state "
                           f"(see .pystributed-slurm-*.out)\n")

    def retry(self, task, *, requeue=False):
        """The task again, as a one-task job of its own; `requeue`: a stop kept it from starting (it uses
        no retry)."""
        attempt = task.attempts + 1
        name = f"{self.name}-{task.index}-{attempt}"
        # The attempt before's state goes first: a task whose folder has a state has ended (look). The
        # folder is marked this attempt's: the container of the attempt before (a chunk's, still
        # running its other tasks) then writes no state of its own for it when it ends.
        self.place.call("next_attempt", self.job.task_dir(task), str(attempt), step="start")
        # Its environment (SECRETS) is sent again, to a file of its own that its job removes at its end: the
        # array's file goes when the array's last task ends (slurm_job.sh), which may be before this job
        # starts; keeping that one until the engine's end instead would keep a secret on the shared disk
        # for as long as a detached sweep runs, or for good after a kernel that died.
        ident = self.place.submit(self.run_args(), self.secrets(), remote_dir=self.job.remote_dir, name=name,
                                  sweep=True, env_file=self.env_file(name),
                                  variables=[f"PYSTRIBUTED_TASK={task.index}",
                                             f"PYSTRIBUTED_ATTEMPT={attempt}"])
        with self.job.lock:
            self.job.set(services=[*self.job.services, [name, ident, task.index]])
        if requeue:
            task.set(QUEUED, attempts=attempt, requeued=task.requeued + 1, error="")
        else:
            task.set(RETRYING, attempts=attempt)

    def env_file(self, name):
        """Where the job `name` (the array's, or a retry's: NAME-INDEX-ATTEMPT) finds its environment:
        REMOTE_WORKDIR/SWEEP_ID.env, or SWEEP_ID.INDEX-ATTEMPT.env (`clean` knows both by their id)."""
        suffix = name.removeprefix(self.name).removeprefix("-")
        return f"{self.job.remote_dir}{'.' + suffix if suffix else ''}.env"

    def names(self):
        return [name for name, _, _ in self.job.services] or [self.name]

    def rows(self):
        """({index: the squeue row of its latest attempt} of the tasks that Slurm still lists (an array
        task stands for the tasks of its chunk, Job.chunk), {the indexes of the tasks that saved their
        state})."""
        order = {name: (at, index) for at, (name, _, index) in enumerate(self.job.services)}
        found, rank = {}, {}
        rows, saved = self.place.sweep_jobs(self.job.remote_dir, *self.names())
        for row in rows:
            at, index = order.get(row.name, (0, None))
            for each in (([0] if self.job.single else [] if row.index is None else self.job.chunk(row.index))
                         if index is None else [index]):
                if at >= rank.get(each, -1):
                    found[each], rank[each] = row, at
        return found, saved

    def look(self, *, fetch=True):
        """Bring the tasks up to date with Slurm's view; whether anything changed."""
        busy = set(self.busy)  # before squeue: a task settled while it answers is not settled twice from it
        rows, saved = self.rows()
        changed = False
        ended = {}  # the tasks to fetch, by container: a chunk's (Job.chunk) in one fetch
        for task in self.job.tasks:
            if task.final or task.index in busy or task.index in self.busy:
                continue
            row = rows.get(task.index)
            before = (task.status, task.why, task.node)
            if row is not None and row.pending:
                task.set(RETRYING if task.attempts - task.requeued > 1 else QUEUED,
                         why=row.reason if row.reason != "None" else "")
            elif (row is not None and not row.ended
                  and task.index not in saved):  # (saved: it ended, its job ends)
                if task.status != RUNNING:
                    task.set(started=time.time(), ended=None, attempts=max(task.attempts, 1))
                task.set(RUNNING, why="", node=row.nodes, gpu=row.gpus)
                self.follow_task(task, lambda out, err, task=task: self.logs(task, out, err, follow=True))
            elif not fetch:
                task.set(ENDED)
            else:  # ended (its state saved, before its job ends), or forgotten by Slurm:
                # its state file says how
                self.busy.add(task.index)
                task.set(ended=time.time(), why="",  # (Slurm's reason while it waited: no more)
                         node=row.nodes if row is not None and row.nodes else task.node)
                alone = task.attempts > 1  # (a retry's job ran it alone)
                ended.setdefault(("alone", task.index) if alone else task.index // self.job.per_container,
                                 []).append(task)
            changed = changed or before != (task.status, task.why, task.node)
        for tasks in ended.values():
            self.fetches.submit(self.settle, tasks)
        return changed or bool(ended)

    def settle(self, tasks):
        """Tasks that ended (a container's): fetch their folders; each succeeded, tried again, or failed."""
        try:
            self.fetch_tasks(tasks, self.place, self.job.remote_dir)
            for task in tasks:
                self.settle_one(task)
        finally:
            for task in tasks:
                self.busy.discard(task.index)

    def settle_one(self, task):
        """One of them: its state file says how it went."""
        state = json_file(Path(task.local_path) / results.STATE_NAME) if task.local_path else {}
        code = (state.get("State") or {}).get("ExitCode")
        task.set(exit_code=code, attempts=max(task.attempts, 1),
                 started=task.ended if task.started is None else task.started)
        if state.get("Node"):
            task.set(node=state["Node"], gpu=state.get("Gpus") or task.gpu)
        if code == 0:
            task.set(SUCCEEDED, error="")
        elif code is None and self.fetch_failed[task.index]:  # the login node did not answer: not the task's
            if self.fetch_failed[task.index] < FETCH_TRIES and not self.cancelling:  # fault; the next look
                return                                                                # fetches it again
            self.not_fetched(task, self.job.task_dir(task), self.place.name)
        elif code is None:
            why = task.why or ("it ended without a state file: it never ran (see .pystributed-slurm-*.out in "
                               f"{self.job.remote_dir}), or the nodes do not share REMOTE_WORKDIR")
            if self.job.may_retry(task) and not self.cancelling:  # its node failed (NODE_FAIL), say
                task.set(error=why)
                self.retry(task)
            else:
                task.set(CANCELLED if self.cancelling else FAILED, error=why)
        elif state.get("Unstarted") and not self.cancelling:  # (a chunk's task that a --time limit or a
            self.retry(task, requeue=True)                       # preemption kept from starting: no failure)
        elif self.job.may_retry(task) and not self.cancelling and not state.get("Cancelled"):
            task.set(error=failure(task))
            self.retry(task)
        elif state.get("Unstarted") or state.get("Cancelled") or self.cancelling:
            task.set(CANCELLED, error="" if state.get("Unstarted") else failure(task))
        else:
            task.set(FAILED, error=failure(task))

    def wait(self):
        while True:
            self.look()
            self.tick()
            if all(t.final for t in self.job.tasks) and not self.busy:
                break
            self.pause = self.next_pause()
            time.sleep(self.pause)
        self.tidy()

    def next_pause(self):
        """Slurm starts the next task when a GPU frees, whatever we look at: while tasks wait for one, the
        looks back off (to POLL_RUNNING while some run, POLL_MAX while none does; a busy controller starts
        jobs later); once none waits (the last wave), or while ended ones are fetched, the sweep's end is
        near, and it is looked for every POLL seconds."""
        live = [t for t in self.job.tasks if not t.final]
        running = any(t.status == RUNNING for t in live)
        if self.busy or running and all(t.status == RUNNING for t in live):
            return POLL
        return min(POLL_RUNNING if running else POLL_MAX, self.pause * 1.5)

    def tidy(self):
        """The jobs' environment files (ENV and SECRETS) that no job removed (a task cancelled while it
        waited) go once every task has ended."""
        with contextlib.suppress(StepError):
            self.place.call("remove", *[self.env_file(name) for name in self.names()], step="fetch")

    def cancel(self):
        """Cancel the jobs: waiting tasks go, running cells get SIGINT (their `finally:` blocks run) and
        their containers stop; fetch what the tasks wrote."""
        self.cancelling = True
        with contextlib.suppress(StepError):
            self.look(fetch=False)
        self.place.cancel(*self.names())
        job = self.cancel_tasks(lambda task: self.place if (task.status in (RUNNING, ENDED) or task.node)
                                and not task.fetched else None)
        self.tidy()
        return job

    def resume(self):
        """After a detach: fetch what ended meanwhile, follow the rest."""
        for task in self.job.tasks:
            if task.final and not task.fetched and task.node:
                self.fetches.submit(self.fetch_task, task, self.place, self.job.task_dir(task))
        return self.watch("detach")

    def refresh(self):
        if not all(t.final for t in self.job.tasks):
            self.look(fetch=False)

    def logs(self, task, on_stdout, on_stderr, *, follow=False):
        index_of = {index: name for name, _, index in self.job.services if index is not None}
        name = index_of.get(task.index, self.name)  # (a retry's job; the array's otherwise)
        remote_dir = self.job.task_dir(task)
        if follow:
            return self.place.login.stream("slurm_follow", remote_dir, name, step="logs", on_stdout=on_stdout,
                                           on_stderr=on_stderr)
        return self.place.logs(remote_dir, "-", on_stdout, on_stderr)


def time_limit(args):
    """The time limit `--time` (`-t`) in sbatch's arguments, as given; "" if none."""
    for word, after in zip(args, [*args[1:], ""]):
        if word in ("--time", "-t"):
            return after
        if word.startswith("--time="):
            return word.split("=", 1)[1]
        if word.startswith("-t") and not word.startswith("--"):
            return word[2:]
    return ""
