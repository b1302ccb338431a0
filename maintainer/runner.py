"""Run one configured job once: the single path used by the CLI, the daemon and tests.

It gives the run an id and log context, turns every failure into a failed
JobResult (never an exception), and logs the outcome.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from maintainer.errors import ConfigError, Interrupted, MaintainerError
from maintainer.jobs import JOB_TYPES
from maintainer.jobs.base import JobResult, RunContext, new_run_id, utcnow
from maintainer.logs import get_logger, run_context

if TYPE_CHECKING:
    from maintainer.config.models import Config

log = get_logger("runner")


def build_job(config: "Config", name: str):
    """The Job object for the job called ``name``; ConfigError when there is none."""
    if name not in config.jobs:
        known = ", ".join(sorted(config.jobs)) or "none"
        raise ConfigError(f"no job named '{name}' in {config.source or 'the configuration'} (jobs: {known})")
    spec = config.jobs[name]
    return JOB_TYPES[spec.type](name, spec, config)


def run_job(config: "Config", name: str, *, dry_run: bool = False, run_id: str | None = None,
            cancel: threading.Event | None = None) -> JobResult:
    job = build_job(config, name)
    run_id = run_id or new_run_id()
    ctx = RunContext(config, name, run_id, dry_run=dry_run, cancel=cancel)
    # Run history and notifications for every real run (never for a dry run).
    from maintainer.daemon.hooks import RunHooks

    hooks = None if dry_run else RunHooks.for_config(config, name)
    with run_context(name, run_id):
        log.info("job.started", type=job.type_name, dry_run=dry_run)
        if hooks is not None:
            hooks.started(name, job.type_name, run_id, utcnow())
        try:
            result = job.run(ctx)
        except Interrupted as exc:
            result = job.new_result(ctx)
            result.fail(f"interrupted: {exc.message}")
        except MaintainerError as exc:
            result = job.new_result(ctx)
            result.fail(exc.message)
        except Exception as exc:  # a bug in a job must never take the caller down
            log.error("job.crashed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
            result = job.new_result(ctx)
            result.fail(f"internal error in job {name}: {type(exc).__name__}: {exc}")
        result.finished = result.finished or utcnow()
        if result.ok:
            log.info("job.finished", status=result.status, duration=round(result.duration, 3), **result.figures)
        else:
            log.error("job.failed", status=result.status, duration=round(result.duration, 3), errors=result.errors)
        if hooks is not None:
            hooks.finished(result)
    return result
