"""The wal_archive job (being built: see its issue)."""

from __future__ import annotations

from maintainer.config.wal_jobs import WalArchiveJob as Spec
from maintainer.errors import MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext


class WalArchiveJob(Job):
    type_name = Spec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        raise MaintainerError("wal_archive is not built yet")
