"""Planning an incident restore: which backup, where to, which steps. Pure.

``plan_restore`` decides everything ``--dry-run`` prints and ``apply_restore``
then does; nothing here touches a server or storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from psycopg.conninfo import make_conninfo

from maintainer.backup.catalog import BackupEntry
from maintainer.errors import UsageError

MAX_IDENTIFIER = 63


@dataclass
class Target:
    """A PostgreSQL server to restore to; ``display`` never holds a password."""

    conninfo: str  # libpq key=value without dbname and password
    password: str | None
    display: str  # user@host:port
    dbname: str  # the live database name there
    from_dsn: bool = False  # given as --target-dsn: a container client connects to it as given

    def dsn(self, dbname: str) -> str:
        return make_conninfo(self.conninfo, dbname=dbname)


@dataclass
class RestorePlan:
    database: str  # config entry name
    backup: BackupEntry
    why: str
    target: Target
    restore_into: str  # the new database pg_restore fills
    replace: bool
    replaced_name: str | None  # where the live database goes on --replace
    safety_backup: bool
    terminate_connections: bool
    parallel_jobs: int
    client: str  # "local pg_restore N", "pg_restore N in a throwaway container of IMAGE ..."
    now: datetime
    steps: list[str] = field(default_factory=list)
    placement: str = "a temporary file"  # where the dump goes for pg_restore (PgClient.placement)

    @property
    def backup_age_seconds(self) -> float:
        return (self.now - self.backup.created).total_seconds()

    def to_dict(self) -> dict:
        return {"database": self.database, "backup": self.backup.id, "why": self.why,
                "verified": self.backup.verified, "backup_age_seconds": round(self.backup_age_seconds),
                "target": self.target.display, "live_database": self.target.dbname,
                "restore_into": self.restore_into, "replace": self.replace, "replaced_name": self.replaced_name,
                "safety_backup": self.safety_backup, "terminate_connections": self.terminate_connections,
                "parallel_jobs": self.parallel_jobs, "client": self.client, "steps": self.steps}


def restored_name(dbname: str, now: datetime, suffix: str = "restored") -> str:
    """``<name>_<suffix>_<UTC timestamp>``; UsageError when it exceeds PostgreSQL's 63 bytes."""
    name = f"{dbname}_{suffix}_{now.astimezone(timezone.utc).strftime('%Y%m%d%H%M%S')}"
    if len(name.encode()) > MAX_IDENTIFIER:
        raise UsageError(f"database name {name!r} would be longer than PostgreSQL's {MAX_IDENTIFIER} bytes")
    return name


def plan_restore(database: str, entry: BackupEntry, why: str, target: Target, *, replace: bool,
                 safety_backup: bool, terminate_connections: bool, parallel_jobs: int, client: str,
                 now: datetime, placement: str = "a temporary file") -> RestorePlan:
    into = restored_name(target.dbname, now)
    plan = RestorePlan(database=database, backup=entry, why=why, target=target, restore_into=into,
                       replace=replace, replaced_name=restored_name(target.dbname, now, "replaced") if replace else None,
                       safety_backup=replace and safety_backup, terminate_connections=terminate_connections,
                       parallel_jobs=parallel_jobs, client=client, now=now, placement=placement)
    m = entry.manifest
    steps = []
    if replace:
        steps.append(f"check that no other session uses {target.dbname}"
                     + (" (terminate them)" if terminate_connections else " (refuse if any)"))
        if plan.safety_backup:
            steps.append(f"take a safety backup of the current {target.dbname} into the same storage")
    decrypt = (f", decrypting (age) with the identity of one of {', '.join(m.recipients)}" if m.recipients else "")
    steps.append(f"download {m.database}/{m.id} from storage into {placement}, checking the SHA-256 of every "
                 f"object{decrypt} (pg_restore starts only once all of the dump matched)")
    if m.object("globals") is not None:
        steps.append("restore roles and other globals (existing roles are kept as they are)")
    steps.append(f"create database {into} on {target.display}")
    steps.append(f"pg_restore --exit-on-error --jobs={parallel_jobs} into {into} ({client})")
    steps.append(f"apply the dump's database-level settings, grants and comment to {into} "
                 "(ALTER DATABASE ... SET, GRANT ... ON DATABASE)")
    steps.append(f"compare the row counts of {len(m.row_counts)} tables with the manifest")
    if replace:
        steps.append(f"rename {target.dbname} to {plan.replaced_name} and {into} to {target.dbname} "
                     "(the old database is kept)")
    plan.steps = steps
    return plan
