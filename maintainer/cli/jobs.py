"""`maintainer validate` and `maintainer run NAME`."""

from __future__ import annotations

import sys

import click

from maintainer.cli.app import App, pass_app
from maintainer.cli.output import echo, human_duration, print_json, table
from maintainer.config import load_config
from maintainer.errors import ConfigError, MaintainerError
from maintainer.signals import cancel_on_signals


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--strict", is_flag=True, help="Treat unreadable secret files as errors (do this where the secrets are mounted).")
@click.option("--servers", is_flag=True, help="Also connect to the servers of wal_archive and pg_basebackup jobs "
              "and say what they miss (wal_level, REPLICATION, WAL senders, slots).")
@pass_app
def validate(app: App, as_json: bool, strict: bool, servers: bool) -> None:
    """Check the config and list the jobs it defines with their next run.

    Secret files that cannot be read here are listed as warnings (the jobs
    that use them would fail); with --strict they are errors. With --servers,
    what a server lacks for WAL archiving or base backups is an error.
    """
    from maintainer.schedule import next_fire  # APScheduler: 0.1 s, for this command only

    config = load_config(app.path, strict_secrets=strict)
    jobs = []
    for name, spec in config.jobs.items():
        # A continuous job (wal_archive) has no schedule: the daemon runs it from start to stop.
        continuous = spec.schedule is None
        nxt = next_fire(spec.schedule, config.timezone) if spec.enabled and not continuous else None
        jobs.append({"name": name, "type": spec.type, "schedule": "continuous" if continuous else spec.schedule,
                     "enabled": spec.enabled,
                     "next_run": "continuous" if continuous and spec.enabled else (nxt.isoformat() if nxt else None)})
    problems = _server_problems(config) if servers else []
    if as_json:
        print_json({"config": str(app.path), "valid": not problems, "timezone": config.timezone,
                    "server_problems": problems,
                    "warnings": config.secret_warnings,
                    "storage": {n: s.url for n, s in config.storage.items()},
                    "databases": {n: d.display(n) for n, d in config.databases.items()}, "jobs": jobs})
        return
    echo(f"{app.path}: valid ({len(jobs)} jobs, timezone {config.timezone})")
    if config.storage:
        echo("storage:   " + ", ".join(f"{n} ({s.url})" for n, s in config.storage.items()))
    if config.databases:
        echo("databases: " + ", ".join(f"{n} ({d.display(n)})" for n, d in config.databases.items()))
    for warning in config.secret_warnings:
        echo(f"warning: {warning} (jobs that use it will fail; --strict makes this an error)", err=True)
    echo()
    echo(table(["job", "type", "schedule", "next run"],
               [[j["name"], j["type"], j["schedule"], j["next_run"] or "disabled"] for j in jobs]))
    if problems:
        raise ConfigError(f"{len(problems)} server problem(s) for WAL archiving or base backups",
                          problems=problems, hint="docs/pitr.md lists the server settings")


def _server_problems(config) -> list[str]:
    """What the servers of wal_archive and pg_basebackup jobs lack, one line each."""
    # Lazy: psycopg, only with --servers.
    from maintainer.postgres.connection import connect
    from maintainer.postgres.replication import replication_problems, server_facts

    needs: dict[str, tuple[str, bool]] = {}  # database -> (a job naming it, whether a slot is needed)
    for name, spec in config.jobs.items():
        if spec.type in ("wal_archive", "pg_basebackup") and spec.enabled:
            slot = spec.type == "wal_archive" or needs.get(spec.database, ("", False))[1]
            needs[spec.database] = (needs.get(spec.database, (name, False))[0], slot)
    problems: list[str] = []
    for database, (job, need_slot) in needs.items():
        try:
            with connect(config.database(database), database) as conn:
                facts = server_facts(conn)
        except MaintainerError as exc:
            problems.append(f"job {job}: {exc.message}")
            continue
        problems += [f"job {job}: {p}" for p in replication_problems(facts, database, need_slot=need_slot)]
    return problems


@click.command()
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Plan and print what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def run(app: App, name: str, dry_run: bool, as_json: bool) -> None:
    """Run the job NAME from the config once, now."""
    from maintainer.runner import run_job  # every job type and its clients: 0.3 s, not for --help

    config = app.config()
    with cancel_on_signals() as cancel:
        result = run_job(config, name, dry_run=dry_run, cancel=cancel)
    if as_json:
        print_json(result.to_dict())
    else:
        state = "dry run" if dry_run else ("ok" if result.ok else "FAILED")
        echo(f"{name} ({result.type}): {state} in {human_duration(result.duration)}  run {result.run_id}")
        for line in result.summary:
            echo(f"  {line}")
        for error in result.errors:
            echo(f"Error: {name}: {error}", err=True)
    sys.exit(0 if result.ok else 1)


COMMANDS = [validate, run]
