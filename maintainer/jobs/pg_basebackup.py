"""The pg_basebackup job (being built: see its issue)."""

from __future__ import annotations

from maintainer.config.wal_jobs import PgBasebackupJob as Spec
from maintainer.errors import MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext


class PgBasebackupJob(Job):
    type_name = Spec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        raise MaintainerError("pg_basebackup is not built yet")
