"""`maintainer snapshots` and `maintainer snapshot restore`: list configuration
snapshots, and extract one for a person to read or reapply."""

from __future__ import annotations

from pathlib import Path

import click

from maintainer.cli.app import App, pass_app
from maintainer.cli.output import echo, human_size, print_json, table
from maintainer.crypto.keyring import Keyring
from maintainer.errors import ConfigError, UsageError
from maintainer.snapshot.restore import diff_against_current, extract
from maintainer.snapshot.store import find_snapshot, list_snapshots, read_members
from maintainer.storage import open_storage


def _snapshot_jobs(config, job: str | None) -> list[tuple[str, object]]:
    """(job name, spec) of the config_snapshot jobs asked for; ConfigError if there are none."""
    every = config.jobs_of_type("config_snapshot")
    jobs = list(every.items())
    if job is not None:
        jobs = [(n, s) for n, s in jobs if n == job]
        if not jobs:
            known = ", ".join(every) or "none"
            raise ConfigError(f"no config_snapshot job named '{job}' (config_snapshot jobs: {known})")
    if not jobs:
        raise ConfigError(f"{config.source or 'the configuration'} has no config_snapshot job")
    return jobs


def _storage_and_name(config, name: str, spec):
    return open_storage(config.storage[spec.storage], name=spec.storage), spec.compose_project or name


@click.command("snapshots")
@click.option("--job", metavar="NAME", help="Only this config_snapshot job's snapshots.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def snapshots(app: App, job: str | None, as_json: bool) -> None:
    """List configuration snapshots, oldest first."""

    config = app.config()
    rows = []
    for name, spec in _snapshot_jobs(config, job):
        storage, folder = _storage_and_name(config, name, spec)
        for e in list_snapshots(storage, folder):
            rows.append({"job": name, "name": folder, "id": e.id, "created": e.created.isoformat(),
                         "size": e.size, "files": len(e.manifest.files), "containers": len(e.manifest.containers),
                         "content_hash": e.manifest.content_hash, "storage": spec.storage})
    if as_json:
        print_json(rows)
        return
    if not rows:
        echo("no snapshots yet")
        return
    echo(table(["job", "name", "id", "size", "files", "containers"],
               [[r["job"], r["name"], r["id"], human_size(r["size"]), r["files"], r["containers"]] for r in rows]))


@click.group("snapshot")
def snapshot() -> None:
    """Work with one configuration snapshot."""


@snapshot.command("restore")
@click.option("--latest", is_flag=True, help="The newest snapshot.")
@click.option("--id", "snapshot_id", metavar="ID", help="The snapshot with this id (see `maintainer snapshots`).")
@click.option("--to", "to", required=True, metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="An empty or new directory to extract into.")
@click.option("--job", metavar="NAME", help="The config_snapshot job (needed when there are several).")
@pass_app
def restore(app: App, latest: bool, snapshot_id: str | None, to: Path, job: str | None) -> None:
    """Extract a snapshot into DIR and summarise how the current state differs.

    Nothing running is changed: files land in DIR/files/<original path>,
    container specs in DIR/engine/, the manifest in DIR/manifest.json.
    """
    if latest == bool(snapshot_id):
        raise UsageError("give exactly one of --latest or --id ID")
    config = app.config()
    jobs = _snapshot_jobs(config, job)
    if len(jobs) > 1:
        raise UsageError("several config_snapshot jobs: choose one with --job " + "|".join(n for n, _ in jobs))
    name, spec = jobs[0]
    storage, folder = _storage_and_name(config, name, spec)
    entry = find_snapshot(storage, folder, snapshot_id)

    members = extract(read_members(storage, entry, Keyring.of(config, spec.storage)), to)
    files = sum(1 for m in members if m.startswith("files/"))
    echo(f"extracted snapshot {folder}/{entry.id} into {to} ({files} files, "
         f"{len(entry.manifest.containers)} container specs)")
    echo("compared with the current state:")
    for line in diff_against_current(members, entry.manifest).lines():
        echo(f"  {line}")


COMMANDS = [snapshots, snapshot]
