"""Point-in-time restore: a base backup plus archived WAL, recovered to a point in a
throwaway server, then copied into the live server or kept in a new volume.

    source = plan_from_storage(storage, server, target, now, keyring)    # pitr_source: plan or PitrRefused
    summary = apply_pitr(request, source, storage, docker, ...)          # recover, place, summary

``recover_to_point`` is shared with the PITR drill: it creates the recovery
server (pitr_server), streams the verified base backup in, runs pg_verifybackup,
replays WAL served from storage (pitr_recover) and returns the running server.
A Watchdog removes the container and volume from a second thread on SIGTERM or
timeout; every failure removes them too, so nothing is left but what succeeded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maintainer.crypto.keyring import Keyring
from maintainer.errors import JobError, UsageError
from maintainer.logs import get_logger
from maintainer.postgres.client import PgClient
from maintainer.restore.engine import Watchdog
from maintainer.restore.incident import _require_no_sessions, _switch, connect
from maintainer.restore.pitr_place import copy_out, keep_volume, swap_steps
from maintainer.restore.pitr_plan import PitrPlan
from maintainer.restore.pitr_recover import (
    Recovery,
    ReplayProgress,
    load_base,
    recover,
    target_reached,
    verify_base,
)
from maintainer.restore.pitr_server import RecoveryServer, ServerSettings
from maintainer.restore.pitr_source import PitrSource
from maintainer.restore.plan import Target, restored_name
from maintainer.storage.base import Storage
from maintainer.wal import archive
from maintainer.wal.lsn import format_lsn

log = get_logger("restore.pitr")


@dataclass
class PitrOptions:
    image_template: str = "postgres:{major}"
    memory: int = 2 * 1024**3
    cpus: float = 2.0
    timeout: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    publish: bool = False  # a port on 127.0.0.1 too (the drill connects to run its checks)


def recover_to_point(docker, storage: Storage, source: PitrSource, *, run_id: str, user: str,
                     keyring: Keyring | None, options: PitrOptions, progress: ReplayProgress | None = None,
                     cancel: threading.Event | None = None, volume: str | None = None,
                     verify: bool = True) -> tuple[RecoveryServer, Recovery]:
    """The promoted recovery server and what it reached. The caller removes the server
    (``server.remove()``). RecoveryFailed/ChecksumMismatch/StorageError/DockerError,
    Interrupted on cancel, JobError on timeout; the server is removed on each."""
    progress = progress or ReplayProgress()
    cancel = cancel or threading.Event()
    image = options.image_template.format(major=source.manifest.server_major)
    settings = ServerSettings(image=image, run_id=run_id, user=user, volume=volume, labels=dict(options.labels),
                              memory=options.memory, cpus=options.cpus, durable=volume is not None, publish=options.publish,
                              deadline=time.time() + (options.timeout or 6 * 3600) + 300)
    check_keys(source, storage, keyring)  # a key problem: no container, no volume
    t0 = time.monotonic()
    server = RecoveryServer.create(docker, settings)
    try:
        with Watchdog(cancel, lambda: server.remove(keep_volume=False), timeout=options.timeout,
                      what="point-in-time restore", aftermath="its container and volume were removed") as watchdog:
            try:
                ready = time.monotonic() - t0
                t1 = time.monotonic()
                base_bytes = load_base(server, storage, source.manifest, keyring, progress, cancel)
                base_seconds = time.monotonic() - t1
                checked = verify_base(server) if verify else ""
                remaining = None if options.timeout is None else max(1.0, options.timeout - (time.monotonic() - t0))
                result = recover(server, storage, source.plan, source.listing, keyring, progress, cancel, remaining)
            except Exception:
                watchdog.check()
                raise
            watchdog.check()
    except BaseException:
        server.remove(keep_volume=False)
        raise
    result.base_bytes = base_bytes
    result.verifybackup = checked
    result.seconds.update(ready_seconds=round(ready, 3), base_seconds=round(base_seconds, 3))
    return server, result


def check_keys(source: PitrSource, storage: Storage, keyring: Keyring | None) -> None:
    """MissingIdentity/NoMatchingIdentity now, before anything is created, when the
    base backup or a segment of the plan is encrypted and the keyring cannot open it."""
    m = source.manifest
    for obj in m.objects:
        if obj.encryption is not None:
            (keyring or Keyring(storage.name)).identities_for(f"base backup {m.server}/{m.id} {obj.name}",
                                                              obj.encryption.recipients)
    if any(step.key.endswith(".age") for step in source.plan.steps):
        archive.identities_of(keyring, f"WAL archive {m.server}")


@dataclass
class PitrRequest:
    database: str  # the databases entry
    dbname: str  # the database to bring back
    target: Target  # the live server
    into_volume: str | None = None
    replace: bool = False
    terminate_connections: bool = False
    parallel_jobs: int = 2


@dataclass
class PitrSummary:
    database: str
    base_backup: str
    target: str
    reached: str
    reached_time: datetime | None
    timeline: int
    segments: int
    wal_bytes: int
    duration: float
    seconds: dict[str, float]
    restore_into: str | None = None
    replaced_name: str | None = None
    volume: str | None = None
    volume_check: str = ""
    swap_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    safety_backup: str | None = None

    def to_dict(self) -> dict:
        return {"database": self.database, "base_backup": self.base_backup, "target": self.target,
                "reached": self.reached, "reached_time": self.reached_time.isoformat() if self.reached_time else None,
                "timeline": self.timeline, "segments": self.segments, "wal_bytes": self.wal_bytes,
                "duration": round(self.duration, 3), "seconds": self.seconds, "restore_into": self.restore_into,
                "replaced_name": self.replaced_name, "volume": self.volume, "volume_check": self.volume_check,
                "swap_steps": self.swap_steps, "notes": self.notes, "safety_backup": self.safety_backup}


def plan_steps(plan: PitrPlan, request: PitrRequest, image: str, now: datetime) -> list[str]:
    """What --dry-run prints and the run does, in order."""
    b = plan.base
    steps = [f"start a throwaway {image} container with a new Docker volume",
             f"stream base backup {b.id} (start LSN {_lsn(b.start_lsn)}, consistent at {_lsn(b.stop_lsn)}) into it, "
             "checking its SHA-256; pg_verifybackup against its backup_manifest",
             f"replay WAL {plan.wal_range()}, each segment read from storage and checked (SHA-256, decrypted) "
             f"as recovery asks for it; stop at {plan.target.describe()} on timeline {plan.timeline}, then promote"]
    if request.into_volume:
        steps += [f"keep the recovered cluster in volume {request.into_volume}; check it by starting a server on it",
                  "print the steps to swap it under the compose service (the existing volume is not touched)"]
    else:
        into = restored_name(request.target.dbname, now)
        steps += [f"pg_dump {request.dbname} in the recovery container; create {into} on {request.target.display} "
                  f"and pg_restore --jobs={request.parallel_jobs} into it"]
        if request.replace:
            steps.append(f"rename {request.target.dbname} to "
                         f"{restored_name(request.target.dbname, now, 'replaced')} and {into} to "
                         f"{request.target.dbname} (the old database is kept)")
        steps.append("remove the container and its volume")
    return steps + [f"note: {n}" for n in plan.notes]


def apply_pitr(request: PitrRequest, source: PitrSource, storage: Storage, docker, *, client: PgClient | None,
               run_id: str, user: str, keyring: Keyring | None, options: PitrOptions, now: datetime,
               progress: ReplayProgress | None = None, cancel: threading.Event | None = None,
               safety_backup=None) -> PitrSummary:
    """Recover and place the result as the request says; the summary. Raises what
    recover_to_point raises, and JobError when placing fails (nothing is left then:
    no new database, no container, no volume)."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    target = request.target
    into = None if request.into_volume else restored_name(target.dbname, now)
    if into is not None:
        with connect(target, "postgres") as admin:  # refuse before the long part
            if request.replace:
                _require_no_sessions(admin, target.dbname, request.terminate_connections)
    server, result = recover_to_point(docker, storage, source, run_id=run_id, user=user, keyring=keyring,
                                      options=options, progress=progress, cancel=cancel, volume=request.into_volume)
    ok, reached = target_reached(source.plan, result)
    summary = PitrSummary(database=request.database, base_backup=source.plan.base.id,
                          target=source.plan.target.describe(), reached=reached, reached_time=result.reached_time,
                          timeline=result.timeline, segments=result.segments_served, wal_bytes=result.wal_bytes,
                          duration=0.0, seconds=dict(result.seconds), notes=list(source.plan.notes))
    try:
        if not ok:
            raise JobError(f"recovery did not reach {source.plan.target.describe()}: {reached}")
        if request.into_volume:
            summary.volume = request.into_volume
            summary.volume_check = keep_volume(server, labels=dict(options.labels))
            summary.swap_steps = swap_steps(request.into_volume, server.settings.image)
        else:
            assert client is not None and into is not None
            if request.replace and safety_backup is not None:
                summary.safety_backup = safety_backup()
            copied = copy_out(server, request.dbname, target, client, into, jobs=request.parallel_jobs, cancel=cancel)
            summary.restore_into = into
            summary.seconds.update(copied.seconds)
            if request.replace:
                replaced = restored_name(target.dbname, now, "replaced")
                _switch(target, _Switch(into, replaced, request.terminate_connections))
                summary.replaced_name = replaced
    except BaseException:
        server.remove(keep_volume=False)
        raise
    server.remove()
    if result.ran_to_end:
        summary.notes.append("the target lies after the archive's last commit: recovered to the end of the archive")
    summary.duration = time.monotonic() - started
    log.info("pitr.finished", database=request.database, base=source.plan.base.id, target=summary.target,
             reached=summary.reached, duration=round(summary.duration, 3), into=into, volume=request.into_volume)
    return summary


@dataclass
class _Switch:
    """What incident._switch reads of a plan."""

    restore_into: str
    replaced_name: str
    terminate_connections: bool


def _lsn(value: int) -> str:
    return format_lsn(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def archive_of(config, database: str, storage_name: str | None) -> tuple[str, str]:
    """(server, storage) of ``database``'s WAL archive: the wal_archive (else
    pg_basebackup) job that covers it, or --storage. UsageError when there is none."""
    jobs = config.jobs_covering(database, "wal_archive") + config.jobs_covering(database, "pg_basebackup")
    if storage_name:
        if storage_name not in config.storage:
            raise UsageError(f"--storage {storage_name}: no such storage in {config.source or 'the config'}")
        return database, storage_name
    if jobs:
        return database, config.jobs[jobs[0]].storage
    raise UsageError(f"no wal_archive or pg_basebackup job covers {database}; point-in-time restore needs both "
                     "(or name the storage that holds them with --storage NAME)")


def options_for(config, database: str) -> PitrOptions:
    """The recovery container's image, labels and limits: those of a PITR drill of the
    database when one is configured, else the database client's image template."""
    drill = next((j for j in config.jobs_of_type("restore_drill").values()
                  if j.mode == "pitr" and database in j.databases), None)
    if drill is None:
        return PitrOptions(image_template=config.databases[database].client.image)
    return PitrOptions(image_template=drill.image, memory=int(drill.memory), cpus=drill.cpus, labels=dict(drill.labels))
