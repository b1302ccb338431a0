"""The config_snapshot job. (Being written: see its issue.)"""

from __future__ import annotations

from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext


class ConfigSnapshotJob(Job):
    type_name = "config_snapshot"

    def run(self, ctx: RunContext) -> JobResult:
        raise JobError("the config_snapshot job is not implemented yet")
