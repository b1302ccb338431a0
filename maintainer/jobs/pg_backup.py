"""The pg_backup job. (Being written: see its issue.)"""

from __future__ import annotations

from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext


class PgBackupJob(Job):
    type_name = "pg_backup"

    def run(self, ctx: RunContext) -> JobResult:
        raise JobError("the pg_backup job is not implemented yet")
