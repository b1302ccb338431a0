"""Where a backup's objects live in storage. The only place that builds these keys.

    pg/<database>/<backup id>/dump.pgcustom.zst      pg_dump --format=custom -Z0, zstd-compressed
    pg/<database>/<backup id>/globals.sql.zst        pg_dumpall --globals-only, zstd-compressed
    pg/<database>/<backup id>/dump.pgcustom.zst.age  the same, encrypted (age), when the storage encrypts
    pg/<database>/<backup id>/globals.sql.zst.age    likewise
    pg/<database>/<backup id>/manifest.json          written last: a backup exists only with it
    pg/<database>/<backup id>/verifications/<run id>.json   one record per restore drill

``<database>`` is the entry's name in the config's databases section;
``<backup id>`` is the UTC start time, 20261126T031500Z, so keys sort by age.
Backups are an ObjectSet (maintainer.storage.objectset): BACKUPS lists,
deletes and cleans them up; the functions below name its keys.
"""

from __future__ import annotations

from datetime import datetime, timezone

from maintainer.storage.objectset import ID_FORMAT, MANIFEST, ObjectSet, new_id, parse_id

ROOT = "pg"
DUMP = "dump.pgcustom.zst"
GLOBALS = "globals.sql.zst"
VERIFICATIONS = "verifications"
BACKUPS = ObjectSet(ROOT, MANIFEST)

__all__ = ["BACKUPS", "DUMP", "GLOBALS", "ID_FORMAT", "MANIFEST", "ROOT", "VERIFICATIONS", "backup_prefix",
           "database_prefix", "manifest_key", "new_backup_id", "object_key", "parse_backup_id", "split_key",
           "verification_key"]


def new_backup_id(now: datetime | None = None) -> str:
    return new_id(now or datetime.now(timezone.utc))


def parse_backup_id(backup_id: str) -> datetime:
    """The UTC time a backup id stands for; ValueError if it is not one."""
    return parse_id(backup_id)


def database_prefix(database: str) -> str:
    return BACKUPS.group_prefix(database)


def backup_prefix(database: str, backup_id: str) -> str:
    return BACKUPS.item_prefix(database, backup_id)


def object_key(database: str, backup_id: str, name: str) -> str:
    return BACKUPS.key(database, backup_id, name)


def manifest_key(database: str, backup_id: str) -> str:
    return BACKUPS.manifest_key(database, backup_id)


def verification_key(database: str, backup_id: str, run_id: str) -> str:
    return BACKUPS.key(database, backup_id, f"{VERIFICATIONS}/{run_id}.json")


def split_key(key: str) -> tuple[str, str, str] | None:
    """``pg/<db>/<id>/<rest>`` -> (db, id, rest); None for keys outside the layout."""
    return BACKUPS.split_key(key)
