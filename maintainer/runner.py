"""Run one configured job once: the single path used by the CLI, the daemon and tests.

It gives the run an id and log context, enforces the job's ``timeout:`` (the
same clean cancellation as a signal: the job's cancel flag is set and the job
removes what it started), turns every failure, a crash included, into a failed
JobResult (never an exception), records the run in history, sends its
notifications, and logs the outcome. Whoever calls it, host cron, the daemon or
a person at a terminal, gets the same promises.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from maintainer.errors import ConfigError, Interrupted, MaintainerError
from maintainer.jobs import JOB_TYPES
from maintainer.jobs.base import JobResult, RunContext, new_run_id, utcnow
from maintainer.logs import get_logger, run_context
from maintainer.runhooks import RunHooks

if TYPE_CHECKING:
    from maintainer.config.models import Config

log = get_logger("runner")


def build_job(config: "Config", name: str, spec: Any = None):
    """The Job object for the job called ``name`` (with ``spec`` instead of the
    configured one, when given); ConfigError when there is no such job."""
    if spec is None:
        if name not in config.jobs:
            known = ", ".join(sorted(config.jobs)) or "none"
            raise ConfigError(f"no job named '{name}' in {config.source or 'the configuration'} (jobs: {known})")
        spec = config.jobs[name]
    return JOB_TYPES[spec.type](name, spec, config)


class _Deadline:
    """Sets the run's cancel flag when the job's timeout passes, and remembers it did."""

    def __init__(self, timeout: timedelta | None, cancel: threading.Event, name: str):
        self.timeout = timeout
        self.expired = False
        self._cancel = cancel
        self._name = name
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "_Deadline":
        if self.timeout:
            self._timer = threading.Timer(self.timeout.total_seconds(), self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _expire(self) -> None:
        self.expired = True
        log.error("job.timeout", timeout=str(self.timeout))
        self._cancel.set()

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()


def run_job(config: "Config", name: str, *, dry_run: bool = False, run_id: str | None = None,
            cancel: threading.Event | None = None, spec: Any = None, trigger: str = "manual") -> JobResult:
    """Run job ``name`` once and return its result; never raises but ConfigError
    for an unknown job name (nothing has started then).

    ``trigger`` is recorded in the history: schedule (the daemon's cron),
    continuous (the daemon's continuous jobs), manual (``maintainer run``),
    low_space (the daemon's disk watch) or before_update (an image_update's
    ``before:`` jobs).

    ``spec`` runs that job with a changed spec (the safety backup of an incident
    restore: one database, no retention) under the same hooks and timeout.
    """
    job = build_job(config, name, spec)
    run_id = run_id or new_run_id()
    cancel = cancel if cancel is not None else threading.Event()
    ctx = RunContext(config, name, run_id, dry_run=dry_run, cancel=cancel,
                     run_other=lambda other, why: run_job(config, other, cancel=cancel, trigger=why))
    # Run history and notifications for every real run (never for a dry run).
    hooks = None if dry_run else RunHooks.for_config(config, name, job.spec)
    timeout = getattr(job.spec, "timeout", None)
    with run_context(name, run_id):
        log.info("job.started", type=job.type_name, dry_run=dry_run, trigger=trigger)
        if hooks is not None:
            hooks.started(name, job.type_name, run_id, utcnow(), trigger)
        with _Deadline(timeout, cancel, name) as deadline:
            result = _run_guarded(job, ctx, name)
        if deadline.expired and not any("timed out" in e for e in result.errors):
            # The job saw only a cancel; say why it was cancelled.
            result.errors = [f"timed out after {_duration(timeout)} (the job's timeout: stopped, "
                             "and what it started was removed)"]
            result.status = "failed"
        result.finished = result.finished or utcnow()
        if result.ok:
            log.info("job.finished", status=result.status, duration=round(result.duration, 3), **result.figures)
        else:
            log.error("job.failed", status=result.status, duration=round(result.duration, 3), errors=result.errors)
        if hooks is not None:
            hooks.finished(result)
    return result


def _run_guarded(job, ctx: RunContext, name: str) -> JobResult:
    """``job.run(ctx)`` with every failure turned into a failed result."""
    try:
        return job.run(ctx)
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
    return result


def _duration(td: timedelta | None) -> str:
    seconds = td.total_seconds() if td else 0.0
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
