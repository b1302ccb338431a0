"""One restore drill of one backup: restore into a throwaway server, verify, record.

The restore is maintainer.restore.engine's, the same as an incident restore's,
through a docker exec client in the drill server: the dump is streamed into
the container while its SHA-256 is computed, pg_restore only starts once the
whole object matched the manifest, and ``pg_restore --create`` brings the
database back under its own name. Checks are reported by name:

    checksum        every stored object matched its SHA-256
    globals         roles and other globals restored (existing roles kept)
    pg_restore      every pg_restore step succeeded (--exit-on-error)
    row_counts      rows per table equal the manifest (estimates within a tolerance)
    object_counts   objects by kind equal the manifest
    sql:<name>      each check of the check files
    amcheck         all B-tree indexes verified (when enabled)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

from maintainer import __version__
from maintainer.backup.catalog import BackupEntry
from maintainer.backup.manifest import CheckResult, Verification
from maintainer.config.types import parse_size
from maintainer.crypto.keyring import Keyring
from maintainer.errors import Interrupted, JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import ExecClient
from maintainer.postgres.inventory import object_counts, row_counts
from maintainer.restore.checks import Check, run_checks
from maintainer.restore.container import DrillContainer, DrillSettings
from maintainer.restore.engine import (
    CREATE,
    EXISTING,
    Destination,
    PgRestoreFailed,
    Restore,
    Watchdog,
    check_identities,
)
from maintainer.restore.stream import ChecksumMismatch
from maintainer.restore.verify import compare_object_counts, compare_row_counts, run_amcheck
from maintainer.storage.base import Storage

log = get_logger("restore.drill")


@dataclass
class DrillOptions:
    image_template: str = "postgres:{major}"
    memory: int = 1024**3
    cpus: float = 1.0
    parallel_jobs: int = 2
    tmpfs: bool | str = "auto"  # True, False or "auto" (see use_tmpfs)
    network: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    maintenance_work_mem: str = "512MB"
    amcheck: bool = False
    estimate_tolerance: float = 0.1
    timeout: float | None = None  # seconds for the whole drill of one backup


@dataclass
class DrillTimings:
    started: float = 0.0
    ready: float = 0.0  # container start to ready
    restore: float = 0.0  # download + verify + globals + pg_restore
    verify: float = 0.0
    cleanup: float = 0.0

    @property
    def overhead(self) -> float:
        return self.ready + self.cleanup


def use_tmpfs(setting: bool | str, raw_size: int, memory: int, parallel_jobs: int, maintenance_work_mem: str) -> bool:
    """Whether the data directory goes in memory. "auto": when everything the restore
    keeps in the container's memory fits its limit with room to spare: the restored
    database (estimated at 1.5x the dump's raw size, for indexes), the dump file in
    the page cache, the index builds' memory and 256 MiB for the server itself."""
    if setting != "auto":
        return bool(setting)

    builds = parallel_jobs * parse_size(maintenance_work_mem)
    return raw_size * 2.5 + builds + 256 * 1024**2 <= memory


def drill_backup(client, storage: Storage, entry: BackupEntry, checks: Sequence[Check], options: DrillOptions,
                 *, run_id: str, cancel: threading.Event | None = None, keyring: Keyring | None = None) -> Verification:
    """Restore ``entry`` into a fresh drill container and verify it.

    Returns the Verification record (passed or failed, each check named). A
    damaged object, a failed step or a failed check make a failed record, not
    an exception. A backup the keyring cannot decrypt (no identity, wrong
    identity) raises MissingIdentity/NoMatchingIdentity: the backup may be
    fine, the drill's key is not. Raises Interrupted when cancelled and JobError on timeout or
    when the drill server cannot run at all; the container is removed on every path.
    """
    manifest = entry.manifest
    cancel = cancel or threading.Event()
    image = options.image_template.format(major=manifest.server_major)
    started_at = datetime.now(timezone.utc)
    timings = DrillTimings()
    results: list[CheckResult] = []
    bytes_restored = 0
    phases: dict[str, float] = {}  # parts of the restore, for the record
    settings = DrillSettings(
        image=image, run_id=run_id, memory=options.memory, cpus=options.cpus,
        tmpfs=use_tmpfs(options.tmpfs, manifest.raw_size, options.memory, options.parallel_jobs,
                        options.maintenance_work_mem),
        network=options.network, labels=options.labels, maintenance_work_mem=options.maintenance_work_mem,
        deadline=time.time() + (options.timeout or 6 * 3600) + 300)
    check_identities(storage, manifest, keyring)  # a key problem: no container, no record
    t0 = time.monotonic()
    drill = DrillContainer.start(client, settings)
    try:
        with Watchdog(cancel, drill.remove, timeout=options.timeout, what="drill",
                      aftermath="its container was removed") as watchdog:
            try:
                drill.wait_ready(cancel)
                timings.ready = time.monotonic() - t0
                t1 = time.monotonic()
                bytes_restored = _restore(drill, storage, entry, options, results, phases, cancel, keyring)
                timings.restore = time.monotonic() - t1
                if all(r.passed for r in results):
                    t2 = time.monotonic()
                    _verify(drill, entry, checks, options, results)
                    timings.verify = time.monotonic() - t2
            except Exception:
                watchdog.check()  # a failure caused by the watchdog's removal is reported as such
                raise
            watchdog.check()
    finally:
        timings.cleanup = drill.remove()
    passed = bool(results) and all(r.passed for r in results)
    record = Verification(
        backup_id=entry.id, database=entry.database, run_id=run_id, result="passed" if passed else "failed",
        checks=results, started=started_at, finished=datetime.now(timezone.utc), image=image,
        restore_seconds=round(timings.restore, 3), overhead_seconds=round(timings.overhead, 3),
        backup_age_seconds=round((started_at - entry.created).total_seconds(), 1),
        bytes_restored=bytes_restored, maintainer_version=__version__,
        verify_seconds=round(timings.verify, 3), ready_seconds=round(timings.ready, 3),
        cleanup_seconds=round(timings.cleanup, 3), container=drill.name, tmpfs=settings.tmpfs, **phases)
    log.info("drill.finished", database=entry.database, backup=entry.id, result=record.result,
             restore_seconds=record.restore_seconds, overhead_seconds=record.overhead_seconds)
    return record


def _restore(drill: DrillContainer, storage: Storage, entry: BackupEntry, options: DrillOptions,
             results: list[CheckResult], phases: dict[str, float], cancel: threading.Event,
             keyring: Keyring | None = None) -> int:
    """Globals, the verified dump into the container, then pg_restore --create there.
    Appends the checksum, globals and pg_restore checks; returns bytes restored."""
    manifest = entry.manifest
    if manifest.object("dump") is None:
        results.append(CheckResult(name="checksum", passed=False, detail="the manifest lists no dump object"))
        return 0
    # As user postgres over the server's socket, like a person at the drill server would.
    client = ExecClient(str(manifest.server_major), manifest.server_major, "127.0.0.1", 5432, "postgres",
                        container=drill.name, docker_client=drill.client, run_as="postgres")
    # --create brings the database back with its own owner, encoding and settings.
    dest = Destination(dbname=manifest.dbname, pg_restore_args=["--dbname=postgres", "--username=postgres"],
                       env={"PGPASSWORD": drill.password}, connect=drill.connect,
                       how=EXISTING if manifest.dbname == "postgres" else CREATE)
    restore = Restore(client, storage, manifest, dest, jobs=options.parallel_jobs, cancel=cancel, keyring=keyring)
    failure: PgRestoreFailed | None = None
    try:
        restore.run()
    except ChecksumMismatch as exc:
        results.append(CheckResult(name="checksum", passed=False, detail=exc.message))
        return restore.globals_bytes + restore.raw_bytes
    except PgRestoreFailed as exc:
        failure = exc
    finally:
        phases.update(restore.seconds)
    results.append(CheckResult(name="checksum", passed=True,
                               detail=f"{len(manifest.objects)} objects match their SHA-256"))
    if restore.globals is not None:
        results.append(CheckResult(name="globals", passed=restore.globals.ok, detail=restore.globals.describe()))
    if failure is None:
        results.append(CheckResult(name="pg_restore", passed=True,
                                   detail=f"all steps succeeded ({options.parallel_jobs} parallel jobs)"))
    else:
        error = failure.reason
        if drill.out_of_memory():
            error = (f"the drill container ran out of memory ({options.memory // 1024**2} MiB): "
                     "raise memory, or set tmpfs: false")
        results.append(CheckResult(name="pg_restore", passed=False, detail=f"exit code {failure.code}: {error}"))
    return restore.globals_bytes + restore.raw_bytes


def _verify(drill: DrillContainer, entry: BackupEntry, checks: Sequence[Check], options: DrillOptions,
            results: list[CheckResult]) -> None:
    manifest = entry.manifest
    with drill.connect(manifest.dbname) as conn:
        actual_rows = {table: count.rows for table, count in row_counts(conn).items()}
        results.append(compare_row_counts(manifest.row_counts, actual_rows, tolerance=options.estimate_tolerance))
        results.append(compare_object_counts(manifest.object_counts, object_counts(conn)))
        results.extend(run_checks(conn, checks, reference_time=entry.created))
        if options.amcheck:
            results.append(run_amcheck(conn))


def failed_checks(record: Verification) -> list[str]:
    return [f"{c.name} ({c.detail})" if c.detail else c.name for c in record.checks if not c.passed]


__all__ = ["DrillOptions", "drill_backup", "failed_checks", "Interrupted", "JobError"]
