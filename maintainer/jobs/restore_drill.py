"""The restore_drill job: prove each configured database's newest backup restores.

For each database it picks the backup (the newest complete one, or the named
one), restores it into a throwaway container and verifies it (see
maintainer.restore.drill), then stores the verification record beside the
backup. A failed drill fails the run with the failing checks named, so the
runner reports it to the notifier.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from maintainer.backup.catalog import BackupNotFound, find_backup, write_verification
from maintainer.config.jobs import RestoreDrillJob as RestoreDrillSpec
from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import connect
from maintainer.errors import Interrupted, MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext
from maintainer.restore.pitr_plan import END, PitrRefused, PitrTarget
from maintainer.restore.pitr_source import plan_from_storage
from maintainer.units import human_duration, human_size


class RestoreDrillJob(Job):
    type_name = RestoreDrillSpec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        # Lazy: the drill path loads psycopg and the docker SDK (~0.2 s); every CLI start imports this module.
        from maintainer.restore.checks import checks_for
        from maintainer.restore.drill import DrillOptions, drill_backup, failed_checks

        spec = self.spec
        if spec.mode == "pitr":
            return self._run_pitr(ctx)
        result = self.new_result(ctx)
        checks_dir = self._resolve(spec.checks_dir)
        # Check files are config: a broken one fails the run before anything starts.
        checks = {db: checks_for(db, checks_dir, [self._resolve(p) for p in spec.extra_checks])
                  for db in spec.databases}
        storage = ctx.storage(spec.storage)
        keyring = Keyring.of(self.config, spec.storage)
        backup_id = None if spec.backup == "latest" else spec.backup
        deadline = time.monotonic() + spec.timeout.total_seconds() if spec.timeout else None

        chosen = {}
        for db in spec.databases:
            try:
                entry, _why = find_backup(storage, db, backup_id=backup_id)
            except BackupNotFound as exc:
                result.fail(f"{db}: {exc.message}")
                continue
            chosen[db] = entry
            if ctx.dry_run:
                image = spec.image.format(major=entry.manifest.server_major)
                result.summary.append(f"{db}: would restore backup {entry.id} into a {image} drill container "
                                      f"and run {len(checks[db])} SQL checks")
        if ctx.dry_run:
            return result

        # Lazy, as above.
        from maintainer.restore.container import sweep_leftovers
        from maintainer.restore.pitr_server import sweep_volumes

        client = connect()
        try:
            leftovers = sweep_leftovers(client) + sweep_volumes(client)
            if leftovers:
                result.summary.append(f"removed {len(leftovers)} drill container(s) left by crashed runs")
            for db, entry in chosen.items():
                ctx.check_cancelled()
                remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
                options = DrillOptions(
                    image_template=spec.image, memory=int(spec.memory), cpus=spec.cpus,
                    parallel_jobs=spec.parallel_jobs, tmpfs=spec.tmpfs, network=spec.network,
                    labels=dict(spec.labels), maintenance_work_mem=spec.maintenance_work_mem,
                    amcheck=spec.amcheck, estimate_tolerance=spec.estimate_tolerance, timeout=remaining)
                try:
                    record = drill_backup(client, storage, entry, checks[db], options, run_id=ctx.run_id,
                                          cancel=ctx.cancel, keyring=keyring)
                except Interrupted:
                    raise
                except MaintainerError as exc:
                    result.fail(f"{db}/{entry.id}: {exc.message}")
                    continue
                write_verification(storage, record)
                result.details.setdefault("drills", []).append(record.model_dump(mode="json"))
                result.figures[f"{db}_restore_seconds"] = record.restore_seconds or 0
                result.figures[f"{db}_backup_age_seconds"] = record.backup_age_seconds or 0
                result.figures[f"{db}_bytes_restored"] = record.bytes_restored or 0
                result.summary.append(
                    f"{db}: backup {entry.id} {record.result.upper()}: {len(record.checks)} checks, restore "
                    f"{human_duration(record.restore_seconds)} for {human_size(record.bytes_restored)}, backup age "
                    f"{human_duration(record.backup_age_seconds)}, overhead {human_duration(record.overhead_seconds)}")
                if not record.passed:
                    result.fail(f"{db}/{entry.id}: drill failed: " + "; ".join(failed_checks(record)))
        finally:
            client.close()
        return result

    def _run_pitr(self, ctx: RunContext) -> JobResult:
        """mode: pitr (see maintainer.restore.pitr_drill): one drill per databases entry."""
        # Lazy, as in run().
        from maintainer.restore.checks import checks_for
        from maintainer.restore.container import sweep_leftovers
        from maintainer.restore.drill import failed_checks
        from maintainer.restore.pitr import PitrOptions
        from maintainer.restore.pitr_drill import DrillTarget, drill_pitr, write_pitr_verification
        from maintainer.restore.pitr_server import sweep_volumes
        spec = self.spec
        result = self.new_result(ctx)
        checks_dir = self._resolve(spec.checks_dir)
        checks = {db: checks_for(db, checks_dir, [self._resolve(p) for p in spec.extra_checks])
                  for db in spec.databases}
        storage = ctx.storage(spec.storage)
        keyring = Keyring.of(self.config, spec.storage)
        if ctx.dry_run:
            for db in spec.databases:
                try:
                    source = plan_from_storage(storage, db, PitrTarget(END), datetime.now(timezone.utc), keyring)
                    result.summary.append(f"{db}: would recover base backup {source.plan.base.id} with WAL "
                                          f"{source.plan.wal_range()} to the end and to a random earlier point")
                except PitrRefused as exc:
                    result.fail(f"{db}: {exc.message}")
            return result
        deadline = time.monotonic() + spec.timeout.total_seconds() if spec.timeout else None
        client = connect()
        try:
            removed = sweep_leftovers(client) + sweep_volumes(client)
            if removed:
                result.summary.append(f"removed {len(removed)} container(s)/volume(s) left by crashed drills")
            for db in spec.databases:
                ctx.check_cancelled()
                remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
                options = PitrOptions(image_template=spec.image, memory=int(spec.memory), cpus=spec.cpus,
                                      timeout=remaining, labels=dict(spec.labels))
                dbspec = self.config.databases[db]
                who = DrillTarget(server=db, dbname=dbspec.dbname or db, user=dbspec.user,
                                  password=dbspec.password.get_secret_value() if dbspec.password else None)
                try:
                    record = drill_pitr(client, storage, who, checks[db], options, run_id=ctx.run_id,
                                        keyring=keyring, cancel=ctx.cancel)
                except Interrupted:
                    raise
                except MaintainerError as exc:
                    result.fail(f"{db}: {exc.message}")
                    continue
                write_pitr_verification(storage, record)
                extra = record.model_extra or {}
                result.details.setdefault("drills", []).append(record.model_dump(mode="json"))
                for figure in ("rto_seconds", "rpo_seconds", "replay_mb_s"):
                    if extra.get(figure) is not None:
                        result.figures[f"{db}_{figure}"] = extra[figure]
                result.summary.append(
                    f"{db}: PITR drill of base backup {record.backup_id} {record.result.upper()}: "
                    f"{len(record.checks)} checks, RTO {human_duration(extra.get('rto_seconds'))}, "
                    f"RPO {human_duration(extra.get('rpo_seconds'))}, replay {extra.get('replay_mb_s', 0)} MB/s")
                if not record.passed:
                    result.fail(f"{db}/{record.backup_id}: PITR drill failed: " + "; ".join(failed_checks(record)))
        finally:
            client.close()
        return result

    def _resolve(self, path: str) -> Path:
        """Relative paths are taken from the config file's directory."""
        p = Path(path)
        if p.is_absolute() or not self.config.source:
            return p
        return Path(self.config.source).resolve().parent / p
