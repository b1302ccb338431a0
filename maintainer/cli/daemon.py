"""`maintainer daemon`, `maintainer status` and `maintainer healthcheck`."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from datetime import datetime

import click

from maintainer.cli.app import App, pass_app
from maintainer.cli.output import age, echo, human_duration, print_json, table
from maintainer.errors import MaintainerError
from maintainer.history import History

# Every command module is imported to build the CLI, so what only one command needs
# and costs start-up time (APScheduler, prometheus_client behind the daemon and
# the schedule) is imported inside that command.


@click.command()
@pass_app
def daemon(app: App) -> None:
    """Run every job on its schedule, serve the status page, /health and /metrics, until SIGTERM.

    SIGHUP reloads the config file (an invalid one is rejected and logged).
    """
    from maintainer.daemon.service import Daemon  # APScheduler, prometheus_client: 0.2 s

    service = Daemon(app.path, app.config())
    sys.exit(service.serve())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Per job: the last run, its result, and the next run."""
    from maintainer.schedule import next_fire  # APScheduler: 0.1 s

    config = app.config()
    history = History(config.daemon.state_dir)
    jobs = []
    for name, spec in config.jobs.items():
        last = history.last_run(name)
        continuous = spec.schedule is None  # wal_archive: runs from daemon start to stop
        nxt = next_fire(spec.schedule, config.timezone) if spec.enabled and not continuous else None
        jobs.append({"job": name, "type": spec.type, "schedule": "continuous" if continuous else spec.schedule,
                     "enabled": spec.enabled,
                     "next_run": nxt.isoformat() if nxt else None,
                     "consecutive_failures": history.consecutive_failures(name),
                     "last_run": last.to_dict() if last else None})
    if as_json:
        print_json({"state_dir": config.daemon.state_dir, "history": history.path.exists(), "jobs": jobs})
        return
    if not history.path.exists():
        echo(f"no run history yet at {history.path}", err=True)
    rows = []
    for job in jobs:
        last = job["last_run"]
        if last:
            started = datetime.fromisoformat(last["started"])
            result = last["status"].upper() if last["status"] == "failed" else last["status"]
            error = "; ".join(last["errors"])
            rows.append([job["job"], job["type"], f"{age(started)} ago", result, human_duration(last["duration"]),
                         job["next_run"] or "disabled", error[:80]])
        else:
            rows.append([job["job"], job["type"], "never", "-", "-", job["next_run"] or "disabled", ""])
    echo(table(["job", "type", "last run", "result", "took", "next run", "error"], rows))


@click.command()
@click.option("--url", envvar="MAINTAINER_HEALTH_URL", metavar="URL",
              help="Health URL [default: from daemon.listen in the config; env MAINTAINER_HEALTH_URL].")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for an answer.")
@pass_app
def healthcheck(app: App, url: str | None, timeout: float) -> None:
    """Exit 0 when the daemon's /health answers 200, else 1 (for HEALTHCHECK)."""
    from maintainer.httpserver import health_url  # the health and metrics modules behind it

    try:
        if not url:
            url = health_url(app.config().daemon.listen)
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local daemon
            body, code = response.read(), response.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read(), exc.code
    except MaintainerError as exc:
        echo(f"unhealthy: {exc.message}", err=True)
        sys.exit(1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        echo(f"unhealthy: the daemon does not answer at {url}: {reason}", err=True)
        sys.exit(1)
    try:
        report = json.loads(body)
    except ValueError:
        report = {}
    if code == 200:
        echo("healthy")
        sys.exit(0)
    failing = report.get("failing") or [{"message": f"HTTP {code}"}]
    for condition in failing:
        echo(f"unhealthy: {condition.get('message')}", err=True)
    sys.exit(1)


COMMANDS = [daemon, status, healthcheck]
