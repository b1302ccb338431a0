"""`maintainer restore`: the incident-time restore. Plans, confirms, hands off.

The work is in maintainer.restore.plan (what to do) and maintainer.restore.incident
(doing it, through maintainer.restore.engine); this module parses flags, asks for
confirmation, shows progress and prints the plan or the summary.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from maintainer.backup.catalog import find_backup, newest_verified
from maintainer.cli.app import App, pass_app
from maintainer.cli.output import echo, human_duration, human_size, print_json
from maintainer.cli.progress import progress_for
from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import connect
from maintainer.errors import ConfigError, Interrupted, JobError, MaintainerError, UsageError
from maintainer.restore.pitr_plan import END, LSN, TIME, PitrTarget
from maintainer.restore.pitr_report import plan_lines, summary_lines
from maintainer.restore.pitr_source import plan_from_storage
from maintainer.signals import cancel_on_signals
from maintainer.storage import open_storage
from maintainer.wal.lsn import parse_lsn


@click.command()
@click.option("--latest", is_flag=True, help="The newest complete backup (the default), verified or not.")
@click.option("--verified", "verified_only", is_flag=True, help="The newest backup a restore drill passed.")
@click.option("--backup", "backup_id", metavar="ID", help="This backup id (see `maintainer backups`).")
@click.option("--before", metavar="TIMESTAMP", help="The newest backup older than this (ISO 8601, UTC if no zone).")
@click.option("--database", "-d", metavar="NAME", help="Database entry from the config [default: the only one].")
@click.option("--storage", "storage_name", metavar="NAME", help="Storage to restore from [default: its pg_backup job's].")
@click.option("--replace", is_flag=True, help="Replace the live database (the old one is kept, renamed).")
@click.option("--yes", is_flag=True, help="Confirm --replace without asking.")
@click.option("--terminate-connections", is_flag=True, help="With --replace: end other sessions of the live database.")
@click.option("--no-safety-backup", is_flag=True, help="With --replace: skip the backup of the current database.")
@click.option("--target-dsn", metavar="DSN", help="Restore to this server instead of the configured one.")
@click.option("--jobs", "-j", "parallel_jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Parallel pg_restore jobs.")
@click.option("--temp-dir", metavar="DIR",
              help="Where a local pg_restore's verified dump is kept during the restore [default: $TMPDIR].")
@click.option("--to-time", metavar="TIMESTAMP",
              help="Point-in-time: the database as it was at this moment (ISO 8601, UTC if no zone).")
@click.option("--to-lsn", metavar="LSN", help="Point-in-time: up to this WAL position (e.g. 0/3000060).")
@click.option("--to-end", is_flag=True, help="Point-in-time: up to the newest archived WAL.")
@click.option("--into-volume", metavar="NAME",
              help="Point-in-time: leave the recovered cluster in this new Docker volume instead.")
@click.option("--dry-run", is_flag=True, help="Print the plan; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or summary as JSON.")
@pass_app
def restore(app: App, latest: bool, verified_only: bool, backup_id: str | None, before: str | None, database: str | None,
            storage_name: str | None, replace: bool, yes: bool, terminate_connections: bool,
            no_safety_backup: bool, target_dsn: str | None, parallel_jobs: int, temp_dir: str | None,
            to_time: str | None, to_lsn: str | None, to_end: bool, into_volume: str | None,
            dry_run: bool, as_json: bool) -> None:
    """Restore a backup: into a new database by default, or over the live one with --replace.

    Restores the newest complete backup unless told otherwise, and says whether
    a restore drill verified it; its SHA-256 is checked while it is read and its
    row counts after it is restored, so a broken backup cannot pass silently.
    Without --replace nothing existing is changed: the backup goes into
    <name>_restored_<timestamp> and the command prints how to switch.

    With --to-time, --to-lsn or --to-end it restores a physical base backup plus
    the archived WAL to that point instead, in a throwaway container, and copies
    the database out the same way (or, with --into-volume, keeps the recovered
    cluster in a new Docker volume and prints how to swap it in).
    """
    # Lazy: the restore path loads psycopg and the docker SDK (~0.2 s); the other commands never need it.
    from maintainer.restore.engine import pg_restore_client
    from maintainer.restore.incident import apply_restore, target_from_dsn, target_from_spec
    from maintainer.restore.plan import plan_restore

    pitr = [flag for flag, given in (("--to-time", to_time), ("--to-lsn", to_lsn), ("--to-end", to_end)) if given]
    if len(pitr) > 1:
        raise UsageError("choose one of --to-time, --to-lsn and --to-end")
    if into_volume and not pitr:
        raise UsageError("--into-volume needs a point: --to-time, --to-lsn or --to-end")
    if pitr:
        if latest or verified_only or backup_id or before or temp_dir or target_dsn:
            raise UsageError(f"{pitr[0]} restores base backup + WAL: it cannot be combined with "
                             "--latest/--verified/--backup/--before/--temp-dir/--target-dsn")
        if into_volume and (replace or terminate_connections or no_safety_backup):
            raise UsageError("--into-volume leaves the live database alone: --replace does not apply")
        return _restore_to_point(app, database, storage_name, to_time, to_lsn, into_volume, replace, yes,
                                 terminate_connections, no_safety_backup, parallel_jobs, dry_run, as_json)
    if sum(bool(x) for x in (latest, backup_id, before)) > 1:
        raise UsageError("choose one of --latest, --backup ID and --before TIMESTAMP")
    if verified_only and backup_id:
        raise UsageError("--verified chooses a backup; it cannot be combined with --backup ID")
    if (terminate_connections or no_safety_backup) and not replace:
        raise UsageError("--terminate-connections and --no-safety-backup only apply with --replace")
    config = app.config()
    database = _database(config, database)
    storage_name = _storage(config, database, storage_name)
    storage = open_storage(config.storage[storage_name], name=storage_name)
    when = _parse_time(before) if before else None
    entry, why = find_backup(storage, database, backup_id=backup_id, before=when, verified_only=verified_only)
    spec = config.databases[database]
    target = target_from_dsn(target_dsn, spec.dbname or database) if target_dsn else target_from_spec(spec, database)
    # pg_restore as new as the backup's server: local, or a container/exec client per the database's client: config
    client = pg_restore_client(spec, database, entry.manifest)
    now = datetime.now(timezone.utc)
    plan = plan_restore(database, entry, why, target, replace=replace, safety_backup=not no_safety_backup,
                        terminate_connections=terminate_connections, parallel_jobs=parallel_jobs,
                        client=client.describe("pg_restore"), now=now, placement=client.placement)
    if dry_run:
        if as_json:
            print_json({"dry_run": True, **plan.to_dict()})
        else:
            _print_plan(plan, dry_run=True)
        return
    if not as_json:
        _print_plan(plan, dry_run=False)
    if replace and not yes:
        _confirm(target.dbname, target.display)

    with cancel_on_signals() as cancel, progress_for(as_json) as progress, client:
        safety = (lambda: _safety_backup(config, database, storage_name, cancel)) if plan.safety_backup else None
        try:
            summary = apply_restore(plan, storage, client=client, progress=progress, safety_backup=safety,
                                    temp_dir=temp_dir, cancel=cancel, keyring=Keyring.of(config, storage_name))
        except MaintainerError as exc:
            raise _with_next_try(exc, storage, entry) from None
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_summary(summary, plan)
    if summary.row_check is not None and not summary.row_check.passed:
        if (other := newest_verified(storage, database, other_than=entry.id)) is not None:
            echo(f"  the newest backup a restore drill verified is {other.id}: "
                 f"maintainer restore --backup {other.id} --database {database}", err=True)
        sys.exit(1)


def _restore_to_point(app: App, database: str | None, storage_name: str | None, to_time: str | None,
                      to_lsn: str | None, into_volume: str | None, replace: bool, yes: bool,
                      terminate_connections: bool, no_safety_backup: bool, parallel_jobs: int, dry_run: bool,
                      as_json: bool) -> None:
    """The point-in-time restore (maintainer.restore.pitr): plan, confirm, recover, place."""
    # Lazy: the restore path loads psycopg and the docker SDK (~0.2 s); the other commands never need it.
    from maintainer.jobs.base import new_run_id
    from maintainer.postgres.client import choose_client
    from maintainer.postgres.connection import ServerVersion
    from maintainer.restore.incident import target_from_spec
    from maintainer.restore.pitr import PitrRequest, apply_pitr, archive_of, options_for, plan_steps

    config = app.config()
    database = _database(config, database)
    server, storage_name = archive_of(config, database, storage_name)
    storage = open_storage(config.storage[storage_name], name=storage_name)
    keyring = Keyring.of(config, storage_name)
    if to_time:
        target = PitrTarget(TIME, time=_parse_time(to_time, "--to-time"))
    elif to_lsn:
        try:
            target = PitrTarget(LSN, lsn=parse_lsn(to_lsn))
        except ValueError:
            raise UsageError(f"--to-lsn {to_lsn!r} is not an LSN such as 0/3000060") from None
    else:
        target = PitrTarget(END)
    now = datetime.now(timezone.utc)
    source = plan_from_storage(storage, server, target, now, keyring)
    spec = config.databases[database]
    request = PitrRequest(database=database, dbname=spec.dbname or database, target=target_from_spec(spec, database),
                          into_volume=into_volume, replace=replace, terminate_connections=terminate_connections,
                          parallel_jobs=parallel_jobs)
    options = options_for(config, database)
    image = options.image_template.format(major=source.manifest.server_major)
    steps = plan_steps(source.plan, request, image, now)
    if as_json and dry_run:
        print_json({"dry_run": True, **source.plan.to_dict(), "steps": steps})
        return
    if not as_json:
        for line in plan_lines(source.plan, steps, dry_run=dry_run):
            echo(line)
    if dry_run:
        return
    if replace and not yes:
        _confirm(request.target.dbname, request.target.display)
    client = None if into_volume else choose_client(spec, database, ServerVersion(
        source.manifest.server_version, source.manifest.server_version_num), tool="pg_restore")
    docker = connect()
    try:
        with cancel_on_signals() as cancel, progress_for(as_json) as progress:
            safety = ((lambda: _safety_backup(config, database, config.backup_storage_of(database) or storage_name,
                                              cancel)) if replace and not no_safety_backup else None)
            summary = apply_pitr(request, source, storage, docker, client=client, run_id=new_run_id(),
                                 user=spec.user, keyring=keyring, options=options, now=now, progress=progress,
                                 cancel=cancel, safety_backup=safety)
    finally:
        docker.close()
    if as_json:
        print_json(summary.to_dict())
        return
    for line in summary_lines(summary, request.target.dbname, request.target.display):
        echo(line)


def _with_next_try(exc, storage, entry):
    """The failure of a restore, with the newest drill-verified backup to try next."""

    if isinstance(exc, (Interrupted, UsageError, ConfigError)):
        return exc
    try:
        other = newest_verified(storage, entry.database, other_than=entry.id)
    except MaintainerError:
        other = None
    if other is not None:
        exc.hint = "; ".join(filter(None, [exc.hint, f"the newest backup a restore drill verified is {other.id}: "
                                                      f"maintainer restore --backup {other.id} --database {entry.database}"]))
    return exc


def _database(config, name: str | None) -> str:
    if name:
        if name not in config.databases:
            known = ", ".join(sorted(config.databases)) or "none"
            raise UsageError(f"--database {name}: no such entry in {config.source or 'the config'} (databases: {known})")
        return name
    if len(config.databases) == 1:
        return next(iter(config.databases))
    raise UsageError("several databases are configured; choose one with --database NAME"
                     if config.databases else f"no databases are configured in {config.source or 'the config'}")


def _storage(config, database: str, name: str | None) -> str:
    if name:
        if name not in config.storage:
            raise UsageError(f"--storage {name}: no such storage in {config.source or 'the config'}")
        return name
    if (storage := config.backup_storage_of(database)) is not None:
        return storage
    if len(config.storage) == 1:
        return next(iter(config.storage))
    raise UsageError("cannot tell which storage holds the backups; choose one with --storage NAME")


def _parse_time(text: str, flag: str = "--before") -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a timestamp such as 2026-11-26T03:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _confirm(dbname: str, where: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(f"--replace overwrites {dbname} on {where}: pass --yes to confirm when not on a terminal")
    typed = click.prompt(f"This replaces the live database {dbname} on {where}. Type its name to continue",
                         default="", show_default=False)
    if typed != dbname:
        raise UsageError("not confirmed; nothing was changed")


def _safety_backup(config, database: str, storage_name: str, cancel) -> str:
    """Back up the current database through the runner (history, alerts, the job's
    timeout), with the pg_backup job's own code, into the same storage. JobError
    (exit 1) when it fails: the live database is then left as it is."""
    # Lazy: the runner loads every job type and its clients (~0.15 s), for this one case.
    from maintainer.runner import run_job

    job_name = config.backup_job_into(database, storage_name)
    if job_name is None:
        raise ConfigError(f"no pg_backup job backs up {database} into {storage_name}, so no safety backup can be taken",
                          hint="add one, or pass --no-safety-backup")
    # Only this database, and no retention: an incident is no time to delete backups.
    job = config.jobs[job_name]
    spec = job.model_copy(update={"databases": [database],
                                  "retention": job.retention.model_copy(update={"keep_last": 10**9})})
    result = run_job(config, f"{job_name}-safety", spec=spec, cancel=cancel)
    if not result.ok:
        raise JobError(f"safety backup of {database} failed, so {database} was not replaced: {'; '.join(result.errors)}",
                       hint="fix it, or pass --no-safety-backup to replace without one")
    return ", ".join(result.summary) or result.run_id


def _print_plan(plan, *, dry_run: bool) -> None:
    b = plan.backup
    head = "Plan (dry run, nothing is changed):" if dry_run else "Restoring:"
    echo(head)
    echo(f"  backup    {b.database}/{b.id} ({plan.why}), age {human_duration(plan.backup_age_seconds)}, "
         f"{human_size(b.manifest.stored_size)} stored")
    echo(f"  target    {plan.target.display}: " + (f"replace {plan.target.dbname}" if plan.replace
                                                   else f"new database {plan.restore_into}"))
    for i, step in enumerate(plan.steps, 1):
        echo(f"  {i}. {step}")


def _print_summary(summary, plan) -> None:
    echo(f"Restored {summary.database}/{summary.backup_id} ({'verified' if summary.verified else 'NOT verified'}, "
         f"age {human_duration(summary.backup_age_seconds)}) in {human_duration(summary.duration)}, "
         f"{human_size(summary.bytes_restored)}")
    if summary.globals:
        echo(f"  globals: {summary.globals}")
    if summary.database_settings:
        echo(f"  database settings and grants: {summary.database_settings}")
    if summary.row_check:
        mark = "match" if summary.row_check.passed else "DIFFER"
        echo(f"  row counts {mark} the manifest: {summary.row_check.detail}")
    if summary.safety_backup:
        echo(f"  safety backup: {summary.safety_backup}")
    if plan.replace:
        echo(f"  {summary.live_database} is now the restored copy; the previous database is kept as "
             f"{summary.replaced_name}")
        echo(f"  drop it when you no longer need it: DROP DATABASE \"{summary.replaced_name}\";")
    else:
        echo(f"  restored into {summary.restore_into} on {summary.target}; {summary.live_database} is untouched.")
        echo("  To switch over, stop the application, then:")
        echo(f"    ALTER DATABASE \"{summary.live_database}\" RENAME TO \"{summary.live_database}_old\";")
        echo(f"    ALTER DATABASE \"{summary.restore_into}\" RENAME TO \"{summary.live_database}\";")
        echo(f"  or run: maintainer restore --backup {summary.backup_id} --database {summary.database} --replace")


COMMANDS = [restore]
