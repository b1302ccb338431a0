"""The image_backup job (being built: see its issue)."""

from __future__ import annotations

from maintainer.config.docker_jobs import ImageBackupJob as Spec
from maintainer.errors import MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext


class ImageBackupJob(Job):
    type_name = Spec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        raise MaintainerError("image_backup is not built yet")
