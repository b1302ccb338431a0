"""`maintainer wal status`, `maintainer wal check` and `maintainer wal drop-slot`."""

from __future__ import annotations

import click

from maintainer.cli.app import App, pass_app
from maintainer.cli.output import age, echo, human_size, print_json
from maintainer.crypto.keyring import Keyring
from maintainer.errors import JobError, MaintainerError, UsageError
from maintainer.storage import open_storage
from maintainer.wal.summary import summarize


def _wal_jobs(config, job: str | None) -> dict:
    jobs = config.jobs_of_type("wal_archive")
    if job is None:
        return jobs
    if job not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise UsageError(f"no wal_archive job named '{job}' in the configuration (wal_archive jobs: {known})")
    return {job: jobs[job]}


@click.group("wal")
def wal() -> None:
    """The continuous WAL archive (docs/pitr.md)."""


@wal.command("status")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: App, job: str | None, as_json: bool) -> None:
    """What each wal_archive job's archive covers, its gaps, and its slot on the server."""
    # Lazy: psycopg costs ~0.13 s at start-up; only commands that connect load it.
    from maintainer.postgres.connection import connect
    from maintainer.postgres.replication import slot_status

    config = app.config()
    out = []
    for name, spec in _wal_jobs(config, job).items():
        storage = open_storage(config.storage[spec.storage], name=spec.storage)
        summary = summarize(storage, spec.database, Keyring.of(config, spec.storage))
        slot = None
        try:
            with connect(config.database(spec.database), spec.database) as conn:
                slot = slot_status(conn, spec.slot)
            slot_text = ("missing" if not slot.exists else
                         f"{'active' if slot.active else 'INACTIVE'}, retains "
                         f"{human_size(slot.retained_bytes or 0)}")
        except MaintainerError as exc:
            slot_text = f"server unreachable: {exc.message}"
        out.append((name, spec, summary, slot, slot_text))
    if as_json:
        print_json([{"job": name, "storage": spec.storage, "slot": spec.slot, "slot_status": slot_text,
                     "slot_retained_bytes": slot.retained_bytes if slot else None, **summary.to_dict()}
                    for name, spec, summary, slot, slot_text in out])
        return
    if not out:
        echo("no wal_archive job in the configuration")
        return
    for name, spec, summary, slot, slot_text in out:
        echo(f"{name}: server {spec.database} -> storage {spec.storage}, slot {spec.slot} ({slot_text})")
        if not summary.segments:
            echo("  archive: empty")
            continue
        echo(f"  archive: {summary.segments} segments, {summary.first_segment} .. {summary.last_segment}"
             + (f" (+ partial {summary.partial})" if summary.partial else "")
             + f", newest stored {age(summary.newest_object_time)} ago")
        for gap in summary.gaps:
            echo(f"  GAP: {gap.describe()} (take a new base backup to cover it)")
        echo(f"  base backups: {len(summary.base_backups)}"
             + (f", restorable from {summary.base_backups[-1].id}" if summary.base_backups else ""))


@wal.command("check")
@click.argument("job", required=False)
@pass_app
def check(app: App, job: str | None) -> None:
    """Check that each wal_archive job's server can be archived (wal_level, REPLICATION, ...)."""
    # Lazy: psycopg costs ~0.13 s at start-up; only commands that connect load it.
    from maintainer.postgres.connection import connect
    from maintainer.postgres.replication import replication_problems, server_facts

    config = app.config()
    problems = []
    for name, spec in _wal_jobs(config, job).items():
        with connect(config.database(spec.database), spec.database) as conn:
            facts = server_facts(conn)
        found = replication_problems(facts, spec.database, need_slot=True)
        problems += [f"{name}: {p}" for p in found]
        if not found:
            echo(f"{name}: server {spec.database} (PostgreSQL {facts.version.text}, wal_level {facts.wal_level}) "
                 "can be archived")
    if problems:
        raise JobError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                       hint="see docs/pitr.md for the server settings")


@wal.command("drop-slot")
@click.argument("job")
@pass_app
def drop_slot(app: App, job: str) -> None:
    """Drop the replication slot of wal_archive job JOB on its server.

    Do this when the job is removed for good: an unused slot keeps WAL on the
    server until its disk is full. The archive then has a gap from here on
    until the job runs again and a new base backup is taken.
    """
    # Lazy: psycopg costs ~0.13 s at start-up; only commands that connect load it.
    from maintainer.postgres import replication
    from maintainer.postgres.connection import connect

    config = app.config()
    spec = _wal_jobs(config, job)[job]
    with connect(config.database(spec.database), spec.database) as conn:
        dropped = replication.drop_slot(conn, spec.slot)
    echo(f"dropped replication slot {spec.slot} on {spec.database}" if dropped
         else f"no replication slot {spec.slot} on {spec.database}")


COMMANDS = [wal]
