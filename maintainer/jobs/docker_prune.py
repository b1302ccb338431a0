"""The docker_prune job. (Being written: see its issue.)"""

from __future__ import annotations

from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext


class DockerPruneJob(Job):
    type_name = "docker_prune"

    def run(self, ctx: RunContext) -> JobResult:
        raise JobError("the docker_prune job is not implemented yet")
