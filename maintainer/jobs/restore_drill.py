"""The restore_drill job. (Being written: see its issue.)"""

from __future__ import annotations

from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext


class RestoreDrillJob(Job):
    type_name = "restore_drill"

    def run(self, ctx: RunContext) -> JobResult:
        raise JobError("the restore_drill job is not implemented yet")
