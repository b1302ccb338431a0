"""The config_snapshot job: archive configured files and a compose project's
container specs, secrets masked, into storage; skip it when nothing changed;
apply retention.
"""

from __future__ import annotations

from maintainer import __version__
from maintainer.backup.retention import RetentionItem, plan_retention
from maintainer.config.jobs import ConfigSnapshotJob as ConfigSnapshotSpec
from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import connect
from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext, utcnow
from maintainer.snapshot.collect import Collected, collect_engine, collect_files
from maintainer.snapshot.manifest import SkippedPath, SnapshotFile, SnapshotManifest, content_hash
from maintainer.snapshot.mask import Masker
from maintainer.snapshot.store import delete_snapshot, list_snapshots, remove_leftovers, write_snapshot
from maintainer.storage.objectset import new_id
from maintainer.units import human_size


class ConfigSnapshotJob(Job):
    type_name = ConfigSnapshotSpec.type_name

    @property
    def snapshot_name(self) -> str:
        """The folder in storage: the compose project, else the job's name."""
        return self.spec.compose_project or self.name

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        spec = self.spec
        masker = Masker(spec.secret_patterns)
        collected = Collected()
        collect_files(spec.paths, spec.exclude, masker, collected)
        if spec.compose_project:
            client = connect()
            try:
                collect_engine(client, spec.compose_project, masker, collected)
            finally:
                client.close()
        ctx.check_cancelled()
        digest = content_hash(collected.members)
        files = sorted(n for n in collected.members if n.startswith("files/"))
        result.figures.update(files=len(files), containers=len(collected.containers), masked_values=masker.count)
        result.details.update(content_hash=digest, skipped=collected.skipped, missing=collected.missing,
                              containers=collected.containers)
        for path in collected.missing:
            result.fail(f"configured path {path} does not exist")
        for skip in collected.skipped:
            result.summary.append(f"skipped {skip['path']}: {skip['reason']}")

        storage = ctx.storage(spec.storage)
        if not ctx.dry_run and (removed := remove_leftovers(storage, self.snapshot_name)):
            ctx.log.info("snapshot.leftovers_removed", name=self.snapshot_name, count=len(removed))
        existing = list_snapshots(storage, self.snapshot_name)
        previous = existing[-1] if existing else None
        what = (f"{len(files)} files, {len(collected.containers)} containers, "
                f"{masker.count} secret values masked")
        keyring = Keyring.of(self.config, spec.storage)
        if previous is not None and previous.manifest.content_hash == digest and same_keys(previous, keyring):
            result.summary.append(f"unchanged since snapshot {previous.id} ({what}); not stored again")
            result.details["unchanged_since"] = previous.id
            result.figures["stored"] = 0
        elif ctx.dry_run:
            result.summary.append(f"dry run: would store a new snapshot of {self.snapshot_name} ({what})")
        else:
            now = utcnow()
            snapshot_id = new_id(now)
            if any(e.id == snapshot_id for e in existing):
                raise_same_second(self.snapshot_name, snapshot_id)
            manifest = SnapshotManifest(
                id=snapshot_id, name=self.snapshot_name, job=self.name, created=now, content_hash=digest,
                maintainer_version=__version__, compose_project=spec.compose_project,
                secret_patterns=list(spec.secret_patterns),
                files=[SnapshotFile(path=collected.sources[n], member=n, size=len(collected.members[n]))
                       for n in files],
                containers=collected.containers, skipped=[SkippedPath(**s) for s in collected.skipped],
                binary_unmasked=collected.binary, masked_values=masker.count,
            )
            stored = write_snapshot(storage, self.snapshot_name, snapshot_id, collected.members, manifest,
                                    keyring=keyring)
            result.summary.append(f"stored snapshot {self.snapshot_name}/{snapshot_id} ({what}, "
                                  f"{human_size(stored.size)})")
            result.details["snapshot_id"] = snapshot_id
            result.figures.update(stored=1, bytes=stored.size)
        # Retention, as for backups (the newest is always kept).
        entries = existing if ctx.dry_run else list_snapshots(storage, self.snapshot_name)
        plan = plan_retention([RetentionItem(e.id, e.created) for e in entries], spec.retention)
        for entry in entries:
            if entry.id in plan.delete:
                if not ctx.dry_run:
                    delete_snapshot(storage, entry)
                result.summary.append(f"{'would delete' if ctx.dry_run else 'deleted'} snapshot {entry.id} (retention)")
        result.figures["deleted"] = 0 if ctx.dry_run else len(plan.delete)
        return result


def same_keys(entry, keyring) -> bool:
    """The snapshot is stored as the storage would store it now: unencrypted, or
    encrypted to the same recipients (after a switch or a rotation it is stored again)."""
    stored = entry.archive.encryption
    if not keyring.enabled:
        return stored is None
    return stored is not None and sorted(stored.recipients) == sorted(keyring.record()["recipients"])


def raise_same_second(name: str, snapshot_id: str) -> None:
    raise JobError(f"a snapshot {name}/{snapshot_id} was stored this very second; run again in a moment")
