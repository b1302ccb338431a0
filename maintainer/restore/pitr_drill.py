"""The PITR drill: prove that the newest base backup plus the WAL archive recover.

For one server (a databases entry) it recovers, each time in a fresh throwaway
container and volume (maintainer.restore.pitr.recover_to_point):

1. to the end of the archived window: the RTO a person would face (container
   start to a promoted, usable server) and the achieved RPO (drill start minus
   the time of the newest archived WAL);
2. to a random earlier moment between the base backup's end and the archive's end:
   every transaction replayed committed at or before it, and the one recovery left
   out (if any) after it.

Checks, by name: ``wal_coverage`` (the planner found no gap), ``checksum`` (the
base tar matched its SHA-256), ``pg_verifybackup``, ``wal_replay:end`` and
``wal_replay:point`` (recovery reached its target), and each ``sql:<name>`` of
the database's check files, run on the cluster recovered to the end. A damaged or
missing segment fails the drill naming it. The Verification record is stored
beside the base backup (``base/<server>/<id>/verifications/<run>.json``).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import psycopg

from maintainer import __version__
from maintainer.backup.manifest import CheckResult, Verification
from maintainer.crypto.keyring import Keyring
from maintainer.errors import Interrupted, MaintainerError
from maintainer.logs import get_logger
from maintainer.restore.checks import Check, run_checks
from maintainer.restore.pitr import PitrOptions, recover_to_point
from maintainer.restore.pitr_plan import END, TIME, PitrRefused, PitrTarget
from maintainer.restore.pitr_recover import RecoveryFailed, target_reached
from maintainer.restore.pitr_server import RecoveryServer
from maintainer.restore.pitr_source import plan_from_storage
from maintainer.storage.base import Storage
from maintainer.storage.objectset import ChecksumMismatch
from maintainer.wal import basebackups, layout

log = get_logger("restore.pitr_drill")


@dataclass
class DrillTarget:
    """Who to connect as in the recovered cluster (the databases entry's role)."""

    server: str
    dbname: str
    user: str
    password: str | None


def drill_pitr(docker, storage: Storage, who: DrillTarget, checks: Sequence[Check], options: PitrOptions, *,
               run_id: str, keyring: Keyring | None, cancel: threading.Event | None = None,
               rng: random.Random | None = None) -> Verification:
    """The drill's record, passed or failed with each check named. Raises Interrupted
    when cancelled, MissingIdentity/NoMatchingIdentity for a key problem (the archive
    may be fine, the drill's key is not); containers and volumes are removed on every path."""
    cancel = cancel or threading.Event()
    rng = rng or random.Random()
    started = datetime.now(timezone.utc)
    results: list[CheckResult] = []
    figures: dict = {"mode": "pitr"}
    base_id = "none"
    image = options.image_template
    options = PitrOptions(**{**options.__dict__, "publish": True})
    try:
        source = plan_from_storage(storage, who.server, PitrTarget(END), started, keyring)
        base_id, image = source.plan.base.id, options.image_template.format(major=source.manifest.server_major)
        results.append(CheckResult(name="wal_coverage", passed=True, detail=source.plan.wal_range()))
        figures["rpo_seconds"] = round((started - source.plan.latest_reachable).total_seconds(), 1)
        t0 = time.monotonic()
        server, rec = _recover(docker, storage, source, who, options, run_id, keyring, cancel, results)
        if server is not None:
            try:
                figures["rto_seconds"] = round(time.monotonic() - t0, 3)
                figures.update(replay_mb_s=rec.replay_mb_s, wal_bytes=rec.wal_bytes, base_bytes=rec.base_bytes,
                               **{k: v for k, v in rec.seconds.items()})
                ok, reached = target_reached(source.plan, rec)
                results.append(CheckResult(name="wal_replay:end", passed=ok, detail=reached))
                results.extend(_run_checks(server, who, checks, rec.reached_time or started))
            finally:
                server.remove()
            if all(r.passed for r in results):
                _earlier_point(docker, storage, source, who, options, run_id, keyring, cancel, results, rng,
                               figures)
    except Interrupted:
        raise
    except PitrRefused as exc:
        results.append(CheckResult(name="wal_coverage", passed=False, detail=exc.message))
        if base_id == "none":  # the failure is recorded beside the newest base backup, if there is one
            newest = basebackups.list_base_backups(storage, who.server)
            base_id = newest[0].id if newest else "none"
    finished = datetime.now(timezone.utc)
    passed = bool(results) and all(r.passed for r in results)
    record = Verification(backup_id=base_id, database=who.server, run_id=run_id,
                          result="passed" if passed else "failed", checks=results, started=started,
                          finished=finished, image=image, restore_seconds=figures.get("rto_seconds"),
                          backup_age_seconds=figures.get("rpo_seconds"), bytes_restored=figures.get("base_bytes"),
                          maintainer_version=__version__, **figures)
    log.info("pitr_drill.finished", server=who.server, base=base_id, result=record.result,
             rto_seconds=figures.get("rto_seconds"), rpo_seconds=figures.get("rpo_seconds"))
    return record


def _recover(docker, storage, source, who, options, run_id, keyring, cancel, results, name="end"):
    """recover_to_point with its failures as failed checks; (server or None, recovery)."""
    try:
        server, rec = recover_to_point(docker, storage, source, run_id=run_id, user=who.user, keyring=keyring,
                                       options=options, cancel=cancel)
    except Interrupted:
        raise
    except ChecksumMismatch as exc:
        results.append(CheckResult(name="checksum", passed=False, detail=exc.message))
        return None, None
    except RecoveryFailed as exc:
        check = "pg_verifybackup" if exc.cause == "pg_verifybackup" else f"wal_replay:{name}"
        results.append(CheckResult(name=check, passed=False, detail=f"{exc.cause}: {exc.message}"))
        return None, None
    except MaintainerError as exc:
        if type(exc).__name__ in ("MissingIdentity", "NoMatchingIdentity"):
            raise
        results.append(CheckResult(name=f"wal_replay:{name}", passed=False, detail=exc.message))
        return None, None
    if name == "end":
        results.append(CheckResult(name="checksum", passed=True, detail="the base backup matched its SHA-256"))
        results.append(CheckResult(name="pg_verifybackup", passed=True, detail=rec.verifybackup))
    return server, rec


def _earlier_point(docker, storage, source, who, options, run_id, keyring, cancel, results, rng, figures) -> None:
    """Recover to a random moment between the base backup's end and the archive's end."""
    low, high = source.plan.base.stop_time.timestamp(), source.plan.latest_reachable.timestamp()
    if high - low < 2:
        results.append(CheckResult(name="wal_replay:point", passed=True,
                                   detail="the archived window is under 2 s: the end is the only point"))
        return
    point = datetime.fromtimestamp(rng.uniform(low + 1, high - 1), timezone.utc)
    figures["point"] = point.isoformat()
    try:
        earlier = plan_from_storage(storage, who.server, PitrTarget(TIME, time=point), datetime.now(timezone.utc),
                                    keyring)
    except PitrRefused as exc:
        results.append(CheckResult(name="wal_replay:point", passed=False, detail=exc.message))
        return
    server, rec = _recover(docker, storage, earlier, who, options, run_id, keyring, cancel, results, name="point")
    if server is None:
        return
    try:
        ok, reached = target_reached(earlier.plan, rec)
        results.append(CheckResult(name="wal_replay:point", passed=ok,
                                   detail=f"target {earlier.plan.target.describe()}: {reached}"))
    finally:
        server.remove()


def _run_checks(server: RecoveryServer, who: DrillTarget, checks: Sequence[Check],
                reference: datetime) -> list[CheckResult]:
    if not checks:
        return []
    host, port = server.address()
    try:
        with psycopg.connect(host=host, port=port, user=who.user, password=who.password, dbname=who.dbname,
                             connect_timeout=10, autocommit=True, application_name="maintainer-drill") as conn:
            return run_checks(conn, checks, reference_time=reference)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [CheckResult(name="sql", passed=False, detail=f"cannot connect to the recovered {who.dbname}: {first}")]


def verification_key(server: str, base_id: str, run_id: str) -> str:
    return layout.BASE_BACKUPS.key(server, base_id, f"verifications/{run_id}.json")


def write_pitr_verification(storage: Storage, record: Verification) -> str | None:
    """Store the record beside its base backup; None when the drill found no base backup."""
    if record.backup_id == "none":
        return None
    key = verification_key(record.database, record.backup_id, record.run_id)
    storage.put(key, record.model_dump_json(indent=2).encode())
    return key
