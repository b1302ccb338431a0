"""`maintainer backups`: the complete backups in storage, newest first; then the base
backups and the continuous WAL archive of each server a pg_basebackup or wal_archive
job covers (from, to, gaps)."""

from __future__ import annotations

import click

from maintainer.backup.catalog import list_backups
from maintainer.cli.app import App, pass_app
from maintainer.cli.output import age, echo, human_duration, human_size, print_json, table
from maintainer.crypto.keyring import Keyring
from maintainer.errors import UsageError
from maintainer.storage import open_storage
from maintainer.wal.summary import summarize


def _backup_storages(config, storage_name: str | None) -> list[str]:
    """The storage named, else every storage a pg_backup job writes to."""
    if storage_name:
        if storage_name not in config.storage:
            known = ", ".join(sorted(config.storage)) or "none"
            raise UsageError(f"no storage named '{storage_name}' in the configuration (storage: {known})")
        return [storage_name]
    return config.backup_storages() or sorted(config.storage)


@click.command()
@click.option("--database", "-d", metavar="NAME", help="Only backups of this database (its config name).")
@click.option("--storage", "-s", "storage_name", metavar="NAME",
              help="Only this storage [default: every storage a pg_backup job writes to].")
@click.option("--json", "as_json", is_flag=True, help="Print the backups as JSON.")
@pass_app
def backups(app: App, database: str | None, storage_name: str | None, as_json: bool) -> None:
    """List complete backups (manifest present), newest first.

    Leftovers of failed runs have no manifest and are never listed.
    """
    config = app.config()
    physical = _physical(config, database, storage_name)
    rows = []
    for name in _backup_storages(config, storage_name):
        storage = open_storage(config.storage[name], name=name)
        for entry in list_backups(storage, database):
            rows.append((name, entry))
    rows.sort(key=lambda r: (r[1].id, r[1].database), reverse=True)
    if as_json:
        print_json([{
            "storage": name, "id": e.id, "database": e.database, "created": e.created.isoformat(),
            "size": e.manifest.stored_size, "raw_size": e.manifest.raw_size, "duration": e.manifest.duration,
            "total_rows": e.manifest.total_rows, "server_version": e.manifest.server_version,
            "suspicious": e.suspicious, "suspicious_reasons": e.manifest.suspicious_reasons, "verified": e.verified,
            "objects": [o.key for o in e.manifest.objects],
            "encrypted_to": e.manifest.recipients,  # public keys; empty: stored unencrypted
        } for name, e in rows] + [item for summary, name in physical for item in _physical_json(summary, name)])
        return
    if not rows:
        where = f" of {database}" if database else ""
        echo(f"no complete backups{where}")
        if physical:
            _print_physical(physical)
        return
    many = len({name for name, _ in rows}) > 1
    headers = ["id", "database", "age", "size", "duration", "marks"] + (["storage"] if many else [])
    out = []
    for name, e in rows:
        marks = ",".join(m for m, on in (("suspicious", e.suspicious), ("verified", e.verified),
                                         ("encrypted", bool(e.manifest.recipients))) if on)
        out.append([e.id, e.database, age(e.created), human_size(e.manifest.stored_size),
                    human_duration(e.manifest.duration), marks or "-"] + ([name] if many else []))
    echo(table(headers, out))
    if physical:
        _print_physical(physical)


def _physical(config, database: str | None, storage_name: str | None) -> list:
    """(ArchiveSummary, storage name) of each server a pg_basebackup or wal_archive job covers."""
    seen = []
    for spec in config.jobs.values():
        if spec.type not in ("pg_basebackup", "wal_archive"):
            continue
        if (database and spec.database != database) or (storage_name and spec.storage != storage_name):
            continue
        if (spec.database, spec.storage) not in seen:
            seen.append((spec.database, spec.storage))
    out = []
    for server, name in seen:
        storage = open_storage(config.storage[name], name=name)
        out.append((summarize(storage, server, Keyring.of(config, name)), name))
    return out


def _physical_json(summary, storage: str) -> list[dict]:
    items = [{"kind": "base_backup", "storage": storage, "id": e.id, "server": e.server,
              "created": e.created.isoformat(), "size": e.manifest.stored_size, "raw_size": e.manifest.raw_size,
              "duration": e.manifest.duration, "server_version": e.manifest.server_version,
              "timeline": e.manifest.timeline, "start_lsn": e.manifest.start_lsn, "stop_lsn": e.manifest.stop_lsn,
              "start_segment": e.manifest.start_segment, "objects": [o.key for o in e.manifest.objects],
              "encrypted_to": e.manifest.recipients} for e in summary.base_backups]
    return items + [{"kind": "wal_archive", "storage": storage, **summary.to_dict()}]


def _print_physical(physical: list) -> None:
    rows = [[e.id, e.server, age(e.created), human_size(e.manifest.stored_size), human_duration(e.manifest.duration),
             f"{e.manifest.start_lsn} - {e.manifest.stop_lsn} (TL {e.manifest.timeline})", name]
            for summary, name in physical for e in summary.base_backups]
    echo()
    if rows:
        echo(table(["base backup", "server", "age", "size", "duration", "wal", "storage"], rows))
    else:
        echo("no complete base backups")
    for summary, name in physical:
        if not summary.segments:
            echo(f"WAL archive {summary.server} ({name}): empty")
            continue
        gaps = "; ".join(g.describe() for g in summary.gaps) or "none"
        echo(f"WAL archive {summary.server} ({name}): from {summary.first_segment} to {summary.last_segment}"
             + (f" (+ partial {summary.partial})" if summary.partial else "")
             + f", newest stored {age(summary.newest_object_time)} ago; gaps: {gaps}")


COMMANDS = [backups]
