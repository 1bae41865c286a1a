"""SECRETS on a swarm: a service's environment is part of its spec (`docker service inspect` on any
manager shows it), so each secret becomes a Docker secret of the job instead, its value sent on the
command's standard input, given to that job's services only (a file that only the task's user may
read, which task_runner.py puts into the task's environment), and removed with the job's services."""
from __future__ import annotations

from pystributed import docker
from pystributed.errors import StepError


class Secrets:
    def __init__(self, place):
        self.place = place  # the Swarm: its manager runs the commands
        self.known = set()  # the names of the secrets this process made or found

    def mounts(self, job_id, values, user):
        """`--secret` values for the job's secrets ({variable: value}), made now unless they are there
        (made by the process that started the job: a retry after an attach uses them)."""
        mounts = []
        for i, (variable, value) in enumerate(values.items()):
            name = f"{docker.container_name(job_id)}-s{i}"  # (a variable's name may be too long for one)
            if name not in self.known:
                try:
                    self.place.manager.docker(docker.create_secret(name, job_id), step="run",
                                              stdin=lambda pipe, value=value: pipe.write(value.encode()))
                except StepError as e:
                    if "already exists" not in e.output:
                        raise
                self.known.add(name)
            uid, _, gid = user.partition(":")  # readable by the task's user only
            mounts.append(f"source={name},target=pystributed-{variable},uid={uid},gid={gid or uid},mode=0400")
        return mounts

    def remove(self, *services, step):
        """The secrets of the jobs whose services these are (none left using them)."""
        ours = [name for name in self.place.manager.docker(docker.secrets(), step=step).split()
                if any(name.startswith(f"{service}-s") for service in services)]
        if ours:
            self.place.manager.docker(docker.remove_secrets(*ours), step=step)
