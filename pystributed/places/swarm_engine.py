"""A job's tasks on a Docker Swarm (swarm.py): one replicated job (its tasks' slots are their
indexes), and a one-task job for each retry of a task (PYSTRIBUTED_TASK given). Every POLL seconds
the tasks of all of them are read from the manager; a task that Swarm says is complete is fetched
from its node, and its state file (task_runner.py) says whether the cell succeeded.

A node can go away mid-job (a crash, a reboot, its daemon killed, its ssh cut). Swarm then keeps
saying its tasks run, so every few seconds the nodes are read again: a task on a node that is down
in Swarm's view, or whose node cannot be reached for its results, ends failed with that reason and
is retried on another node while --retries allow. The job always ends, and says which node it lost."""
from __future__ import annotations

import collections
import contextlib
import time
from pathlib import Path

from pystributed import docker, results
from pystributed.engine import Engine, failure, json_file
from pystributed.errors import StepError
from pystributed.jobs import CANCELLED, ENDED, FAILED, QUEUED, RETRYING, RUNNING, STARTING, SUCCEEDED
from pystributed.places import swarm_service

POLL = 0.5
NODES_EVERY = 3.0  # seconds between two looks at the nodes' states
FETCH_TRIES = 3  # a task whose folder cannot be fetched this many times in a row: its node is taken for lost


class SwarmEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = set()  # (Swarm task, index) whose end was dealt with
        self.cancelling = False
        self.lost = {}  # node id -> the indexes of the tasks it took with it
        self.nodes_read = 0.0
        self.down = {}  # node id -> Node, of the nodes down in Swarm's view
        self.fetch_failures = collections.Counter()  # index -> fetches of its latest attempt that failed
        if self.job.nodes and not self.place.prepared:  # a process after the one that started it (attach)
            self.place.prepared = {node: self.job.remote_dir for node in self.job.nodes}

    @property
    def service(self):
        return swarm_service.service_name(self.job.sweep_id)

    def run_args(self, run_id):
        return docker.run_detached(self.job.image, run_id=run_id, results_dir=self.job.remote_dir,
                                   user=self.job.user, env=self.env(),
                                   extra_args=[*self.job.mounts, *self.config.DOCKER_RUN_ARGS])[2:]

    def start(self):
        n, per = len(self.job.tasks), 1 if self.job.single else self.config.TASKS_PER_CONTAINER
        containers = -(-n // per)  # each runs `per` tasks one after another (task_runner.py)
        shown = f"run {self.job.sweep_id}" if self.job.single else f"{n} tasks"
        with self.steps.step("start", f"{shown} on the swarm of {self.place.name}"
                             + (f", {per} a container" if per > 1 else "")):
            ident = self.place.create(self.run_args(self.job.sweep_id), self.secrets(),
                                      job_id=self.job.sweep_id, replicas=containers,
                                      max_concurrent=min(self.config.MAX_CONCURRENT or n, containers),
                                      gpus=self.config.GPUS_PER_TASK, variables=[] if self.job.single else [
                                          "PYSTRIBUTED_TASK_FOLDERS=1",
                                          *([f"PYSTRIBUTED_TASKS_PER_CONTAINER={per}"] if per > 1 else [])])
        self.job.set(services=[[self.service, ident, None]], per_container=per,
                     nodes=sorted(self.place.prepared))

    def retry(self, task, *, requeue=False):
        """The task again, as a one-task job of its own (Swarm places it where a GPU is free); `requeue`: a
        stop kept it from starting, and it uses no retry."""
        self.fetch_failures[task.index] = 0
        if requeue:
            task.set(QUEUED, requeued=task.requeued + 1, error="")
        run_id = f"{self.job.sweep_id}-{task.index}-{task.attempts + 1}"
        ident = self.place.create(self.run_args(run_id), self.secrets(), job_id=self.job.sweep_id, replicas=1,
                                  gpus=self.config.GPUS_PER_TASK,
                                  variables=["PYSTRIBUTED_TASK_FOLDERS=1", f"PYSTRIBUTED_TASK={task.index}",
                                             f"PYSTRIBUTED_ATTEMPT={task.attempts + 1}"])
        with self.job.lock:
            self.job.set(services=[*self.job.services,
                                   [swarm_service.service_name(run_id), ident, task.index]])

    def attempts(self):
        """(whether the job's first service is still there, {index: its Swarm tasks, oldest first}); a
        Swarm task of the first service runs the tasks of its slot's chunk (Job.chunk), one after another."""
        names = [name for name, _, _ in self.job.services] or [self.service]
        exists, tasks = self.place.tasks(*names)
        index_of = {ident: index for _, ident, index in self.job.services}
        attempts = collections.defaultdict(list)
        for task in sorted(tasks, key=lambda t: t.created):
            if task.service in index_of:
                index = index_of[task.service]
                for each in self.job.chunk(task.slot) if index is None else [index]:
                    attempts[each].append(task)
        return exists, attempts

    def nodes_down(self):
        """{node id: Node} of the nodes Swarm says are down, read again every NODES_EVERY seconds."""
        if time.monotonic() - self.nodes_read > NODES_EVERY:
            self.nodes_read = time.monotonic()
            # Only "down": a leadership change makes every node "unknown" for a few seconds.
            self.down = {n.id: n for n in self.place.nodes(again=True) if n.state == "down"}
        return self.down

    def look(self, *, fetch=True):
        """Bring the tasks up to date with Swarm's; whether the job's first service is still there."""
        exists, attempts = self.attempts()
        down = self.nodes_down()
        ended = {}  # Swarm task id -> (it, our tasks it ran that are to be fetched)
        for mine in self.job.tasks:
            theirs = attempts.get(mine.index, [])
            if mine.final or mine.index in self.busy or not theirs:
                continue
            last = theirs[-1]
            fields = {"attempts": len(theirs)}
            if last.node:
                fields.update(node=self.place.node(last.node).shown, node_id=last.node,
                              gpu=", ".join(last.gpus))
            mine.set(**fields)
            # Only the latest attempt counts: the ones before it were settled (a retry follows a complete
            # task whose cell failed, or one on a lost node) or failed in Swarm's hands (Swarm replaced them).
            self.seen.update((t.id, mine.index) for t in theirs[:-1])
            swarm_failures = [t for t in theirs if t.ended and not t.succeeded]
            seen = (last.id, mine.index)  # (a container of several tasks ends each of them)
            if last.node in down and not last.ended and seen not in self.seen:
                self.seen.add(seen)
                self.lose(mine, down[last.node], f"down in Swarm's view ({down[last.node].state})")
            elif last.succeeded:
                if not fetch:
                    mine.set(ENDED)
                elif seen not in self.seen:
                    self.seen.add(seen)
                    self.busy.add(mine.index)
                    mine.set(ended=time.time())
                    ended.setdefault(last.id, (last, []))[1].append(mine)
            elif last.ended and len(swarm_failures) > self.job.retries:
                why = last.error or last.message or "Swarm could not run it"  # (and tries again: not ours)
                mine.set(FAILED, ended=time.time(), why=why, error=why, exit_code=last.exit_code)
            elif last.ended:
                mine.set(RETRYING)  # Swarm puts another task in its place
            elif last.state in swarm_service.QUEUED:
                mine.set(RETRYING if len(theirs) - mine.requeued > 1 else QUEUED, why=last.error or "")
            elif last.state in swarm_service.STARTING:
                mine.set(STARTING, why="")
            elif last.state == "running":
                if mine.status != RUNNING:
                    mine.set(started=time.time(), ended=None)
                mine.set(RUNNING, why="")
                self.follow_task(mine, lambda out, err, last=last: self.place.container_logs(
                    last.node, last.container, out, err, follow=True, step="run"))
        for last, tasks in ended.values():  # a container's tasks in one fetch
            self.fetches.submit(self.settle, tasks, last)
        return exists

    def lose(self, task, node, how):
        """The task's node is gone (`how`): the task fails with that reason, or is tried again elsewhere."""
        with self.job.lock:
            first = node.id not in self.lost
            self.lost.setdefault(node.id, []).append(task.index)
            self.place.prepared.pop(node.id, None)  # no retry is placed there (swarm.create)
            self.job.set(nodes=[n for n in self.job.nodes if n != node.id])
        why = f"its node {node.shown} was lost: {how}"
        if first:
            self.steps.say(f"node {node.shown} was lost ({how}); its tasks fail"
                           + (", and are tried again on other nodes" if self.job.retries else "") + "\n")
        if self.job.may_retry(task) and not self.cancelling:
            task.set(RETRYING, why=why, error=why)
            self.retry(task)
        else:
            task.set(FAILED, why=why, error=why, ended=time.time())

    def settle(self, tasks, last):
        """Tasks whose container Swarm says is complete: fetch their folders; each succeeded, tried
        again, or failed."""
        try:
            self.fetch_tasks(tasks, self.place.at(last.node), self.job.remote_dir)
            for task in tasks:
                self.settle_one(task, last)
        finally:
            for task in tasks:
                self.busy.discard(task.index)

    def settle_one(self, task, last):
        """One of them: its state file says how it went."""
        state = json_file(Path(task.local_path) / results.STATE_NAME) if task.local_path else {}
        code = (state.get("State") or {}).get("ExitCode")
        task.set(exit_code=code, started=task.ended if task.started is None else task.started)
        if code == 0:
            task.set(SUCCEEDED, error="")
        elif code is None:  # its node could not be reached (or its folder read, or written here)
            node = self.place.node(last.node)
            self.fetch_failures[task.index] += 1
            if self.fetch_failures[task.index] < FETCH_TRIES and not self.cancelling:
                # the next look fetches it again: one failure is no lost node
                self.seen.discard((last.id, task.index))
            elif self.job.may_retry(task) and not self.cancelling:
                self.lose(task, node, task.why or "its results could not be fetched")
            else:
                task.set(FAILED, error=task.why or "its results (and exit code) could not be fetched")
        elif state.get("Unstarted") and not self.cancelling:  # a stop kept it from starting: no failure
            self.retry(task, requeue=True)
        elif self.job.may_retry(task) and not self.cancelling and not state.get("Cancelled"):
            task.set(RETRYING, error=failure(task))
            self.retry(task)
        elif state.get("Unstarted") or state.get("Cancelled"):
            task.set(CANCELLED, error="" if state.get("Unstarted") else failure(task))
        else:
            task.set(FAILED, error=failure(task))

    def wait(self):
        while True:
            exists = self.look()
            self.tick()
            if all(t.final for t in self.job.tasks) and not self.busy:
                break
            if not exists:  # removed by `cancel` elsewhere
                for task in self.job.tasks:
                    if not task.final:
                        task.set(CANCELLED)
                break
            time.sleep(POLL)
        self.remove()
        self.tidy()
        self.report_lost()

    def report_lost(self):
        for node_id, indexes in self.lost.items():
            node = self.place.node(node_id)
            self.steps.say(f"node {node.shown} was lost during sweep {self.job.sweep_id}: it took task(s) "
                           f"{', '.join(map(str, sorted(indexes)))}\n")

    def remove(self, *, interrupt=False):
        names = [name for name, _, _ in self.job.services] or [self.service]
        self.place.remove_service(*names, step="cancel", interrupt=interrupt, nodes=self.reachable())

    def reachable(self):
        """The ids of the nodes to put away on: the usable ones, less those lost."""
        return [n.id for n in self.place.usable() if n.id not in self.lost and n.id not in self.down]

    def tidy(self):
        """The job's folder goes from the nodes where no task ran (it is empty there)."""
        used = {t.node_id for t in self.job.tasks if t.node_id}
        spare = [self.place.node(n) for n in self.reachable() if n not in used]
        self.place.each(spare, lambda node: self.place.at(node).call("rmdir_run", self.job.remote_dir,
                                                                     step="fetch"))

    def place_of(self, task):
        return self.place.at(task.node_id) if task.node_id and task.node_id not in self.lost else None

    def cancel(self):
        """Remove the jobs (Swarm interrupts each task's cell: SIGINT), wait until no container of
        them is left, fetch what the tasks wrote."""
        self.cancelling = True
        with contextlib.suppress(StepError):
            self.look(fetch=False)
        self.remove(interrupt=True)
        job = self.cancel_tasks(lambda task: self.place.at(task.node_id) if task.node_id and not task.fetched
                                and task.node_id not in self.lost else None)
        self.tidy()
        return job

    def resume(self):
        """After a detach: fetch what ended meanwhile, follow the rest."""
        exists, _ = self.attempts()
        for task in self.job.tasks:  # those that ended before: fetched now, if they were not
            if (task.final or not exists) and not task.fetched and task.node_id:
                self.fetches.submit(self.fetch_task, task, self.place.at(task.node_id),
                                    self.job.task_dir(task))
            if not exists and not task.final:  # put away already (cancelled)
                task.set(CANCELLED)
        return self.done() if not exists else self.watch("detach")

    def refresh(self):
        if not all(t.final for t in self.job.tasks):
            self.look(fetch=False)

    def logs(self, task, on_stdout, on_stderr, *, follow=False):
        remote_dir = self.job.task_dir(task)
        _, attempts = self.attempts()
        last = (attempts.get(task.index) or [None])[-1]
        shared = (last and self.job.per_container > 1
                  and last.service == self.job.services[0][1])  # (a chunk's)
        if last and last.container and not last.ended and not shared:
            return self.place.container_logs(last.node, last.container, on_stdout, on_stderr, follow=follow)
        node = (last.node if last else "") or task.node_id or self.place.where(remote_dir)
        return self.place.at(node).logs(remote_dir, "-", on_stdout, on_stderr)
