"""The image_update job: for each configured image, pull it only when the registry has
a new digest, and report image, old digest and new digest.

One image's failure (unknown image, unreachable registry, refused login) is
that image's error line; the others still update, and the run fails overall.
"""

from __future__ import annotations

from maintainer.config.docker_jobs import ImageUpdateJob as ImageUpdateSpec
from maintainer.dockerapi import connect
from maintainer.images.update import Credentials, update_image
from maintainer.jobs.base import Job, JobResult, RunContext


class ImageUpdateJob(Job):
    type_name = ImageUpdateSpec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        credentials = Credentials(self.spec.registries, self.spec.docker_config)
        client = connect()
        updates = []
        try:
            for text in self.spec.images:
                ctx.check_cancelled()
                update = update_image(client, text, credentials, untag_superseded=self.spec.untag_superseded,
                                      dry_run=ctx.dry_run)
                updates.append(update)
                if update.status == "failed":
                    result.fail(update.line())
                else:
                    result.summary.append(update.line())
        finally:
            client.close()
        result.details["images"] = [u.to_dict() for u in updates]
        result.figures.update(
            updated=sum(u.status == "updated" for u in updates),
            current=sum(u.status == "current" for u in updates),
            failed=sum(u.status == "failed" for u in updates))
        if ctx.dry_run:
            result.summary.append("dry run: pulled nothing")
        return result
