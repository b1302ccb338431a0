"""The pg_basebackup job: a physical base backup streamed to storage, then retention.

 1. remove leftovers of earlier failed runs;
 2. read the server's facts (version, system identifier, segment size, wal_level,
    REPLICATION, tablespaces) and refuse clearly what cannot work;
 3. pick a pg_basebackup at least as new as the server (local, container or exec);
 4. stream ``pg_basebackup -D - -Ft`` through zstd (and age) into storage, and
    store the server's backup_manifest beside it (maintainer.wal.basebackup);
 5. write manifest.json last; 6. apply retention to base backups, then to the
    WAL archive of the same server: WAL older than the oldest kept base backup goes.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from maintainer import __version__
from maintainer.backup.retention import RetentionItem, RetentionPlan
from maintainer.config.wal_jobs import PgBasebackupJob as Spec
from maintainer.crypto.keyring import Keyring
from maintainer.errors import JobError
from maintainer.jobs.base import Job, JobResult, RunContext, utcnow
from maintainer.postgres.client import choose_client
from maintainer.postgres.connection import client_env, connect
from maintainer.postgres.replication import replication_problems, server_facts
from maintainer.storage.base import Storage
from maintainer.storage.objectset import new_id
from maintainer.units import human_duration, human_size
from maintainer.wal import archive, basebackups, layout
from maintainer.wal.basebackup import stream_basebackup
from maintainer.wal.basebackup_manifest import BaseBackupManifest, Tablespace
from maintainer.wal.retention import KeptBackup, WalPlan, plan_base_retention, plan_wal_retention


class PgBasebackupJob(Job):
    type_name = Spec.type_name
    spec: Spec

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        storage = ctx.storage(self.spec.storage)
        keyring = Keyring.of(self.config, self.spec.storage)
        server = self.spec.database
        if ctx.dry_run:
            result.summary.extend(self._plan(storage, server))
            return result
        manifest = self._backup(ctx, storage, keyring, server)
        plan, wal_plan = apply_retention(storage, server, self.spec.retention)
        result.summary.append(
            f"{server}: base backup {manifest.id}: {human_size(manifest.stored_size)} stored "
            f"({human_size(manifest.raw_size)} raw), WAL {manifest.start_lsn} - {manifest.stop_lsn} on timeline "
            f"{manifest.timeline}, {human_duration(manifest.duration)}, pg_basebackup "
            f"{manifest.pg_basebackup_version} ({manifest.client}); retention kept {len(plan.keep)}, deleted "
            f"{len(plan.delete)}; {wal_plan.describe()}")
        result.figures.update(bytes_stored=manifest.stored_size, raw_bytes=manifest.raw_size,
                              backups_kept=len(plan.keep), backups_deleted=len(plan.delete),
                              wal_objects_deleted=len(wal_plan.delete))
        result.details["base_backup"] = {"server": server, "id": manifest.id, "start_lsn": manifest.start_lsn,
                                         "stop_lsn": manifest.stop_lsn, "timeline": manifest.timeline,
                                         "kept": list(plan.keep), "deleted": plan.delete,
                                         "wal_deleted": [s.key for s in wal_plan.delete]}
        return result

    def _backup(self, ctx: RunContext, storage: Storage, keyring: Keyring, server: str) -> BaseBackupManifest:
        db = self.config.database(server)
        removed = basebackups.remove_leftovers(storage, server)
        if removed:
            ctx.log.info("basebackup.leftovers_removed", server=server, count=len(removed))
        with connect(db, server) as conn:
            facts = server_facts(conn)
            env = {**client_env(db, conn)}
        problems = replication_problems(facts, server, need_slot=False)
        if problems:
            raise JobError("; ".join(problems))
        if facts.tablespaces:
            names = ", ".join(f"{name} ({location})" for _, name, location in facts.tablespaces)
            raise JobError(f"base backup of {server}: the server has tablespaces besides pg_default ({names}); "
                           "pg_basebackup can stream only one to a single tar, so maintainer refuses (move them "
                           "into pg_default, or back this server up another way)")
        client = choose_client(db, server, facts.version, tool="pg_basebackup")
        started = utcnow()
        t0 = time.monotonic()
        backup_id = unique_id(storage, server, started)
        env["PGAPPNAME"] = f"maintainer-{backup_id}"
        ctx.log.info("basebackup.started", server=server, backup=backup_id, client=client.description,
                     pg_basebackup=client.version)
        try:
            with client:
                streamed = stream_basebackup(client, storage, keyring, server, backup_id, env,
                                             wal_method=self.spec.wal_method, checkpoint=self.spec.checkpoint,
                                             level=self.spec.compression_level,
                                             threads=self.spec.compression_threads, cancel=ctx.cancel)
            ctx.check_cancelled()
            finished = utcnow()
            manifest = BaseBackupManifest(
                id=backup_id, server=server, job=ctx.job_name, run_id=ctx.run_id,
                system_identifier=facts.system_identifier, server_version=facts.version.text,
                server_version_num=facts.version.num, server_major=facts.version.major,
                pg_basebackup_version=client.version, client=client.description, wal_method=self.spec.wal_method,
                wal_segment_size=facts.wal_segment_size, timeline=streamed.timeline, start_lsn=streamed.start_lsn,
                stop_lsn=streamed.stop_lsn, stop_timeline=streamed.stop_timeline,
                backup_start_time=streamed.start_time, started=started, finished=finished,
                duration=round(time.monotonic() - t0, 3),
                compression={"algorithm": "zstd", "level": self.spec.compression_level,
                             "threads": self.spec.compression_threads},
                objects=streamed.objects,
                tablespaces=[Tablespace(oid=o, name=n, location=loc) for o, n, loc in facts.tablespaces],
                maintainer_version=__version__, raw_size=sum(o.raw_size for o in streamed.objects),
                stored_size=sum(o.stored_size for o in streamed.objects))
            layout.BASE_BACKUPS.write_manifest(storage, server, backup_id, manifest.to_json())
        except BaseException:
            basebackups.discard_base_backup(storage, server, backup_id)
            raise
        ctx.log.info("basebackup.stored", server=server, backup=backup_id, stored_size=manifest.stored_size,
                     start_lsn=manifest.start_lsn, stop_lsn=manifest.stop_lsn, duration=manifest.duration)
        return manifest

    def _plan(self, storage: Storage, server: str) -> list[str]:
        backup_id = new_id(utcnow())
        lines = [f"{server}: would store {layout.BASE_BACKUPS.item_prefix(server, backup_id)}"
                 f"{{{layout.BASE_TAR}, {layout.BACKUP_MANIFEST}, manifest.json}} (pg_basebackup -Ft "
                 f"-X {self.spec.wal_method})"]
        entries = basebackups.list_base_backups(storage, server)
        items = [RetentionItem(backup_id, utcnow())] + [RetentionItem(e.id, e.created) for e in entries]
        plan = plan_base_retention(items, self.spec.retention)
        lines += [f"  would delete base backup {bid}" for bid in plan.delete] or ["  would delete no base backup"]
        return lines


def unique_id(storage: Storage, server: str, when: datetime) -> str:
    """The start time as an id; a later second if that one is taken (bounded)."""
    for step in range(10):
        candidate = new_id(when + timedelta(seconds=step))
        if not any(True for _ in storage.list(layout.BASE_BACKUPS.item_prefix(server, candidate))):
            return candidate
    raise JobError(f"base backup of {server}: cannot find a free id near {when.isoformat()}")


def apply_retention(storage: Storage, server: str, policy) -> tuple[RetentionPlan, WalPlan]:
    """Base backups by GFS, manifest first; then the WAL no kept base backup needs."""
    entries = basebackups.list_base_backups(storage, server)
    plan = plan_base_retention([RetentionItem(e.id, e.created) for e in entries], policy)
    for backup_id in plan.delete:
        basebackups.delete_base_backup(storage, server, backup_id)
    kept = [KeptBackup(e.id, e.manifest.start) for e in entries if e.id in plan.keep]
    listing = archive.list_archive(storage, server)
    stored = list(listing.segments.values()) + list(listing.partials.values()) + listing.duplicates
    wal_plan = plan_wal_retention(stored, kept, listing.segment_size)
    for segment in wal_plan.delete:
        storage.delete(segment.key)
    return plan, wal_plan
