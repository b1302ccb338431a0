"""Applying an incident restore plan (see maintainer.restore.plan).

Safe by default: the backup is always restored into a new database first. With
``replace`` the live database is then renamed to ``<name>_replaced_<ts>`` (kept,
never dropped) and the new one takes its name, in two quick renames once no
session uses it. The restore itself is maintainer.restore.engine's: the dump
verified in full (SHA-256) on its way to pg_restore, before pg_restore reads
any of it, then pg_restore into the new database and the dump's database-level
settings renamed to it. This module adds the checks before, the safety backup,
the row counts and the switch-over, and drops the new database on any failure.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from maintainer.backup.manifest import CheckResult
from maintainer.config.models import DatabaseSpec
from maintainer.crypto.keyring import Keyring
from maintainer.errors import DatabaseError, Interrupted, JobError, UsageError
from maintainer.logs import get_logger
from maintainer.postgres.client import PgClient
from maintainer.postgres.connection import open_connection, password_used
from maintainer.postgres.inventory import row_counts
from maintainer.restore.engine import NEW, Destination, Progress, Restore, check_identities
from maintainer.restore.plan import RestorePlan, Target
from maintainer.restore.verify import compare_row_counts
from maintainer.storage.base import Storage

log = get_logger("restore.incident")


@dataclass
class RestoreSummary:
    database: str
    backup_id: str
    verified: bool
    backup_age_seconds: float
    restore_into: str
    live_database: str
    replaced_name: str | None
    target: str
    duration: float = 0.0
    bytes_restored: int = 0
    row_check: CheckResult | None = None
    globals: str = ""
    database_settings: str = ""
    safety_backup: str | None = None
    steps_done: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"database": self.database, "backup": self.backup_id, "verified": self.verified,
                "backup_age_seconds": round(self.backup_age_seconds), "restore_into": self.restore_into,
                "live_database": self.live_database, "replaced_name": self.replaced_name, "target": self.target,
                "duration": round(self.duration, 3), "bytes_restored": self.bytes_restored,
                "row_counts": self.row_check.model_dump() if self.row_check else None,
                "globals": self.globals, "database_settings": self.database_settings, "safety_backup": self.safety_backup}


def target_from_spec(spec: DatabaseSpec, name: str) -> Target:
    return Target(conninfo=_without(spec.conninfo(name, with_password=False), "dbname"),
                  password=spec.password.get_secret_value() if spec.password else None,
                  display=f"{spec.user}@{spec.host}:{spec.port}", dbname=spec.dbname or name)


def target_from_dsn(dsn: str, default_dbname: str) -> Target:
    """A --target-dsn (URI or key=value); its dbname, if any, names the live database there."""

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise UsageError("--target-dsn is not a valid PostgreSQL connection string "
                         "(use postgresql://user@host:port/dbname or 'host=... user=...')") from None
    password = params.pop("password", None)
    dbname = params.pop("dbname", None) or default_dbname
    params.setdefault("connect_timeout", "10")
    params.setdefault("application_name", "maintainer")
    display = f"{params.get('user', os.environ.get('USER', ''))}@{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    return Target(conninfo=make_conninfo(**params), password=str(password) if password else None,
                  display=display, dbname=str(dbname), from_dsn=True)


def connect(target: Target, dbname: str) -> psycopg.Connection:
    return open_connection(target.dsn(dbname), what=f"{target.display}/{dbname}", password=target.password)


def other_sessions(conn, dbname: str) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                       (dbname,)).fetchone()
    return int(row[0]) if row else 0


def database_exists(conn, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def apply_restore(plan: RestorePlan, storage: Storage, *, client: PgClient, progress: Progress | None = None,
                  safety_backup: Callable[[], str] | None = None, temp_dir: str | None = None,
                  cancel: threading.Event | None = None, keyring: Keyring | None = None) -> RestoreSummary:
    """Do what the plan says, running pg_restore through ``client`` (see choose_client).
    Raises a MaintainerError with context on any failure; on a failure before the
    switch-over, the live database is untouched and the half-restored new database
    is dropped (and whatever the client copied or started is removed)."""
    progress = progress or Progress()
    cancel = cancel or threading.Event()
    started = time.monotonic()
    m = plan.backup.manifest
    target = plan.target
    summary = RestoreSummary(database=plan.database, backup_id=m.id, verified=plan.backup.verified,
                             backup_age_seconds=plan.backup_age_seconds, restore_into=plan.restore_into,
                             live_database=target.dbname, replaced_name=plan.replaced_name, target=target.display)
    if m.object("dump") is None:
        raise JobError(f"backup {m.database}/{m.id} has no dump object in its manifest")
    check_identities(storage, m, keyring)  # a missing or wrong key fails before anything, safety backup included
    with connect(target, "postgres") as admin:
        if target.password is None and (used := password_used(admin)) is not None:
            # PGPASSWORD, a passfile or ~/.pgpass: hand pg_restore the password libpq found.
            target = dataclasses.replace(target, password=used)
            plan = dataclasses.replace(plan, target=target)
        if database_exists(admin, plan.restore_into):
            raise JobError(f"database {plan.restore_into} already exists on {target.display}")
        if plan.replace:
            if not database_exists(admin, target.dbname):
                raise JobError(f"--replace: database {target.dbname} does not exist on {target.display}",
                               hint="without --replace the backup is restored into a new database")
            _require_no_sessions(admin, target.dbname, plan.terminate_connections)
        owner = _owner_of(admin, target.dbname)

    if plan.safety_backup:
        if safety_backup is None:
            raise JobError("no way to take a safety backup was given")
        progress.phase("safety backup")
        summary.safety_backup = safety_backup()
        summary.steps_done.append(f"safety backup {summary.safety_backup}")

    env = {"PGAPPNAME": "maintainer-restore"}
    if target.password:
        env["PGPASSWORD"] = target.password
    dsn = _client_dsn(target, client, plan.restore_into)
    dest = Destination(dbname=plan.restore_into, pg_restore_args=[f"--dbname={dsn}"], env=env,
                       connect=lambda dbname: connect(target, dbname), how=NEW, owner=owner)
    restore = Restore(client, storage, m, dest, jobs=plan.parallel_jobs, progress=progress, cancel=cancel,
                      temp_dir=temp_dir, keyring=keyring)
    try:
        restore.run()
        summary.bytes_restored = restore.raw_bytes
        summary.globals = restore.globals.describe() if restore.globals else ""
        summary.steps_done += [f"downloaded and verified {restore.stored_bytes} stored bytes",
                               f"created database {plan.restore_into}"]
        if restore.database_settings:
            summary.database_settings = restore.database_settings
            summary.steps_done.append(f"database settings and grants: {summary.database_settings}")
        with connect(target, plan.restore_into) as conn:
            actual = {t: c.rows for t, c in row_counts(conn).items()}
        summary.row_check = compare_row_counts(m.row_counts, actual, tolerance=0.1)
    except BaseException as exc:
        if not restore.created:
            raise
        _drop_quietly(target, plan.restore_into)
        if isinstance(exc, Interrupted):
            raise Interrupted(f"{exc.message}; the new database {plan.restore_into} was dropped") from None
        raise
    if summary.row_check is not None and not summary.row_check.passed and plan.replace:
        _drop_quietly(target, plan.restore_into)
        raise JobError(f"restored copy does not match the manifest ({summary.row_check.detail}); "
                       f"{target.dbname} was not replaced")

    if plan.replace:
        progress.phase("switch over")
        _switch(target, plan)
        summary.steps_done.append(f"renamed {target.dbname} to {plan.replaced_name}, "
                                  f"{plan.restore_into} to {target.dbname}")
    progress.done()
    summary.duration = time.monotonic() - started
    log.info("restore.finished", database=plan.database, backup=m.id, restore_into=plan.restore_into,
             replaced=plan.replace, duration=round(summary.duration, 3))
    return summary


def _client_dsn(target: Target, client: PgClient, dbname: str) -> str:
    """The target as the client's pg_restore reaches it: at the server's host and
    port as the client sees them (see PgClient.target); a --target-dsn as given."""
    if target.from_dsn:
        return target.dsn(dbname)

    host, port = client.target()
    params = conninfo_to_dict(target.conninfo)
    params.update(host=host, port=str(port), dbname=dbname)
    return make_conninfo(**params)


def _require_no_sessions(admin, dbname: str, terminate: bool) -> None:
    n = other_sessions(admin, dbname)
    if n and not terminate:
        raise JobError(f"{n} other session(s) are connected to {dbname}; refusing to replace it",
                       hint="stop the application, or pass --terminate-connections")


def _owner_of(admin, dbname: str) -> str | None:
    row = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return str(row[0]) if row else None


def _switch(target: Target, plan: RestorePlan) -> None:
    """Rename live -> replaced, new -> live. Sessions that reconnect in between are
    terminated (with --terminate-connections) and the rename retried, a few times."""
    assert plan.replaced_name is not None
    with connect(target, "postgres") as admin:
        for attempt in range(5):
            _require_no_sessions(admin, target.dbname, plan.terminate_connections)
            if plan.terminate_connections:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (target.dbname,))
                time.sleep(0.2)
            try:
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(target.dbname), sql.Identifier(plan.replaced_name)))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 4:
                    raise JobError(f"{target.dbname} is still in use; it was not replaced "
                                   f"(the restored copy is {plan.restore_into})") from None
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(plan.restore_into), sql.Identifier(target.dbname)))
        except psycopg.Error as exc:
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(plan.replaced_name), sql.Identifier(target.dbname)))
            raise DatabaseError(f"switch-over failed, {target.dbname} was put back: {exc}") from None


def _drop_quietly(target: Target, dbname: str) -> None:
    try:
        with connect(target, "postgres") as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        log.warning("restore.cleanup_failed", database=dbname, error=str(exc))


def _without(conninfo: str, key: str) -> str:
    params = conninfo_to_dict(conninfo)
    params.pop(key, None)
    return make_conninfo(**params)
