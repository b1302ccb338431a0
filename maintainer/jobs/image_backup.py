"""The image_backup job: save the images the deployment runs, by id, to storage.

Images: those of every container (running or not) of ``compose_project``, and
the ``images`` listed. Each image's config and layers are content-addressed
blobs (maintainer.images.backup_store), so an unchanged image stores nothing
new. The set's manifest, written last, lists the images (id, tags, registry
digests, layers) with the record of every blob they need. Then retention runs
on this group's sets, and blobs no remaining set references are deleted.

An image that cannot be saved fails the run and no set is written (a set that
lacks an image is not a backup of the deployment); the blobs already stored
stay for the next run to reuse.
"""

from __future__ import annotations

import time

from maintainer.backup.retention import RetentionItem, plan_retention
from maintainer.config.docker_jobs import ImageBackupJob as Spec
from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import COMPOSE_PROJECT, connect, docker_errors
from maintainer.images.backup_store import SETS, BlobIndex, SetManifest, delete_unreferenced_blobs, list_sets
from maintainer.images.save import describe_image, save_image
from maintainer.jobs.base import Job, JobResult, RunContext, utcnow
from maintainer.storage.objectset import new_id
from maintainer.units import human_size


class ImageBackupJob(Job):
    type_name = Spec.type_name
    spec: Spec

    @property
    def group(self) -> str:
        return self.spec.compose_project or self.name

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        storage = ctx.storage(self.spec.storage)
        keyring = Keyring.of(self.config, self.spec.storage)
        client = connect()
        try:
            images = [describe_image(client.api, ref) for ref in self._refs(client.api)]
            images = list({i.id: i for i in images}.values())
            if not images:
                result.fail(f"nothing to save: compose project {self.spec.compose_project} has no containers")
                return result
            known = BlobIndex(storage)
            if ctx.dry_run:
                for image in images:
                    new = [d for d in image.blobs if d not in known]
                    result.summary.append(f"would save {', '.join(image.tags) or image.id[:19]} ({image.id[:19]}): "
                                          f"{len(new)} of {len(image.blobs)} blobs not stored yet")
                result.summary.append(f"dry run: stored nothing in image-sets/{self.group}/")
                return result
            SETS.remove_leftovers(storage, self.group)
            started = utcnow()
            set_id = self._unique_id(storage, started)
            new = []
            for image in images:
                ctx.check_cancelled()
                report = save_image(client.api, image, storage, keyring, known, level=self.spec.compression_level,
                                    cancel=ctx.cancel)
                new.extend(report.new)
                result.summary.append(f"{', '.join(image.tags) or image.id[:19]}: {image.id[:19]}, "
                                      f"{len(image.layers)} layers, {len(report.new)} new blobs "
                                      f"({human_size(report.new_bytes)} stored)")
        finally:
            client.close()
        ctx.check_cancelled()
        manifest = SetManifest(id=set_id, group=self.group, job=ctx.job_name, run_id=ctx.run_id, created=started,
                               images=images, blobs={d: known[d] for i in images for d in i.blobs},
                               new_blobs=len(new), new_bytes=sum(r.stored_size for r in new))
        SETS.write_manifest(storage, self.group, set_id, manifest.to_json())
        plan = plan_retention([RetentionItem(e.id, e.created) for e in list_sets(storage, self.group)],
                              self.spec.retention)
        for old in plan.delete:
            SETS.delete(storage, self.group, old)
        deleted_blobs = delete_unreferenced_blobs(storage)
        result.summary.append(f"set {self.group}/{set_id}: {len(images)} images, {len(manifest.blobs)} blobs "
                              f"({human_size(manifest.stored_size)} stored), {len(new)} new "
                              f"({human_size(manifest.new_bytes)}); retention kept {len(plan.keep)}, deleted "
                              f"{len(plan.delete)} sets and {len(deleted_blobs)} unreferenced blobs")
        result.details["set"] = {"group": self.group, "id": set_id, "images": [i.id for i in images]}
        result.figures.update(images=len(images), blobs=len(manifest.blobs), new_blobs=len(new),
                              bytes_stored=manifest.new_bytes, set_stored_bytes=manifest.stored_size,
                              sets_deleted=len(plan.delete), blobs_deleted=len(deleted_blobs))
        return result

    def _refs(self, api) -> list[str]:
        """Image ids of the project's containers, then the listed references."""
        refs = []
        if self.spec.compose_project:
            with docker_errors(f"list the containers of compose project {self.spec.compose_project}"):
                label = f"{COMPOSE_PROJECT}={self.spec.compose_project}"
                containers = api.containers(all=True, filters={"label": label})
            refs += sorted({c["ImageID"] for c in containers})
        return refs + list(self.spec.images)

    def _unique_id(self, storage, started) -> str:
        """A set id no complete set of this group has (two runs in one second wait a second)."""
        set_id = new_id(started)
        while storage.exists(SETS.manifest_key(self.group, set_id)):
            time.sleep(1)
            set_id = new_id(utcnow())
        return set_id
