"""`maintainer backups`: the complete backups in storage, newest first."""

from __future__ import annotations

import click

from maintainer.cli.main import App, pass_app
from maintainer.cli.output import age, echo, human_duration, human_size, print_json, table
from maintainer.errors import UsageError


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
    from maintainer.backup.catalog import list_backups
    from maintainer.storage import open_storage

    config = app.config()
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
        } for name, e in rows])
        return
    if not rows:
        where = f" of {database}" if database else ""
        echo(f"no complete backups{where}")
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


COMMANDS = [backups]
