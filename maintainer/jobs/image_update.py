"""The image_update job. (Being written: see its issue.)"""

from __future__ import annotations

from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext


class ImageUpdateJob(Job):
    type_name = "image_update"

    def run(self, ctx: RunContext) -> JobResult:
        raise JobError("the image_update job is not implemented yet")
