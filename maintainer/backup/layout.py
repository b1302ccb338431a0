"""Where a backup's objects live in storage. The only place that builds these keys.

    pg/<database>/<backup id>/dump.pgcustom.zst      pg_dump --format=custom -Z0, zstd-compressed
    pg/<database>/<backup id>/globals.sql.zst        pg_dumpall --globals-only, zstd-compressed
    pg/<database>/<backup id>/manifest.json          written last: a backup exists only with it
    pg/<database>/<backup id>/verifications/<run id>.json   one record per restore drill

``<database>`` is the entry's name in the config's databases section;
``<backup id>`` is the UTC start time, 20261126T031500Z, so keys sort by age.
"""

from __future__ import annotations

from datetime import datetime, timezone

ROOT = "pg"
DUMP = "dump.pgcustom.zst"
GLOBALS = "globals.sql.zst"
MANIFEST = "manifest.json"
VERIFICATIONS = "verifications"
ID_FORMAT = "%Y%m%dT%H%M%SZ"


def new_backup_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(ID_FORMAT)


def parse_backup_id(backup_id: str) -> datetime:
    """The UTC time a backup id stands for; ValueError if it is not one."""
    return datetime.strptime(backup_id[:16], ID_FORMAT).replace(tzinfo=timezone.utc)


def database_prefix(database: str) -> str:
    return f"{ROOT}/{database}/"


def backup_prefix(database: str, backup_id: str) -> str:
    return f"{ROOT}/{database}/{backup_id}/"


def object_key(database: str, backup_id: str, name: str) -> str:
    return backup_prefix(database, backup_id) + name


def manifest_key(database: str, backup_id: str) -> str:
    return object_key(database, backup_id, MANIFEST)


def verification_key(database: str, backup_id: str, run_id: str) -> str:
    return object_key(database, backup_id, f"{VERIFICATIONS}/{run_id}.json")


def split_key(key: str) -> tuple[str, str, str] | None:
    """``pg/<db>/<id>/<rest>`` -> (db, id, rest); None for keys outside the layout."""
    parts = key.split("/", 3)
    if len(parts) != 4 or parts[0] != ROOT:
        return None
    return parts[1], parts[2], parts[3]
