"""APScheduler 3, configured from schedules.yaml: when each job runs.

The rules, all enforced by APScheduler with the options set here:

* each enabled job fires on its cron schedule in the config's time zone,
  delayed by a random 0..``daemon.jitter``;
* never two runs of the same job at once (``max_instances=1``): a fire time
  that arrives while the job still runs is skipped and logged;
* at most ``daemon.max_concurrent_jobs`` runs at once (the executor's
  worker pool); more due jobs wait for a free worker;
* missed fire times (the container was stopped, the host slept) are
  coalesced into one run if the newest of them is less than
  ``daemon.misfire_grace`` old, and skipped (logged) otherwise.

The scheduler object is injectable, so the tests drive these rules with a
controllable clock instead of sleeping.

Continuous jobs (``CONTINUOUS``: wal_archive) have no cron schedule and take no
worker of the pool: ``ContinuousJobs`` runs each enabled one in a thread of its
own from start to stop, and starts it again with a backoff (doubling from the
job's ``restart_backoff`` to its ``restart_backoff_max``) whenever a run returns
while the daemon goes on. ``reload`` stops the runs of removed, disabled or
changed continuous jobs and starts the new ones; ``stop`` cancels them all.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Callable
from zoneinfo import ZoneInfo

from apscheduler.events import (EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED,
                                JobEvent)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from maintainer.schedule import cron_trigger
from maintainer.logs import get_logger

if TYPE_CHECKING:
    from maintainer.config.models import Config

log = get_logger("scheduler")

CONTINUOUS = frozenset({"wal_archive"})  # job types that run from start to stop, not on a schedule


def is_continuous(spec) -> bool:
    return spec.type in CONTINUOUS


def _apscheduler_logger() -> logging.Logger:
    """APScheduler's own lines go through maintainer's formatter; only its
    warnings, unless --debug (its info lines repeat what we log better)."""
    logger = logging.getLogger("maintainer.apscheduler")
    if not logging.getLogger("maintainer").isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    return logger


class JobScheduler:
    """Runs ``run(job_name)`` for each enabled job of the config on time."""

    def __init__(self, config: "Config", run: Callable[[str], None], scheduler: BaseScheduler | None = None):
        self._run = run
        self.config = config
        self.workers = config.daemon.max_concurrent_jobs
        self.scheduler = scheduler if scheduler is not None else BackgroundScheduler()
        self.scheduler.configure(
            timezone=ZoneInfo(config.timezone),
            executors={"default": ThreadPoolExecutor(max_workers=self.workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            logger=_apscheduler_logger(),
        )
        # What happened to fire times, newest last: (kind, job, scheduled time).
        self.events: deque[tuple[str, str, datetime]] = deque(maxlen=200)
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
                                    | EVENT_JOB_SUBMITTED)
        self._add_jobs(config)

    def _add_jobs(self, config: "Config") -> None:
        grace = int(config.daemon.misfire_grace.total_seconds()) or 1
        for name, spec in config.jobs.items():
            if not spec.enabled or is_continuous(spec):
                continue
            trigger = cron_trigger(spec.schedule, config.timezone, config.daemon.jitter)
            self.scheduler.add_job(self._run, trigger, args=[name], id=name, name=name, replace_existing=True,
                                   misfire_grace_time=grace, coalesce=True, max_instances=1)

    def start(self) -> None:
        self.scheduler.start()

    def reload(self, config: "Config") -> None:
        """Replace the jobs with those of ``config``; runs in progress go on.

        A job keeps its id (its name), so a run of it that is still going
        still blocks a second one. The worker pool size is fixed at start.
        """
        if config.daemon.max_concurrent_jobs != self.workers:
            log.warning("daemon.reload.restart_needed", setting="daemon.max_concurrent_jobs",
                        running_with=self.workers)
        self.scheduler.remove_all_jobs()
        self._add_jobs(config)
        self.config = config

    def next_runs(self) -> dict[str, datetime | None]:
        """Enabled job -> its next fire time (jitter included)."""
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def shutdown(self) -> None:
        """Start nothing more; runs in progress are not waited for here."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    @property
    def alive(self) -> bool:
        """The scheduler is started and its thread (if it has one) is running."""
        if not self.scheduler.running:
            return False
        thread = getattr(self.scheduler, "_thread", None)
        return thread is None or thread.is_alive()

    def _on_event(self, event: JobEvent) -> None:
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        when = times[-1]
        if event.code == EVENT_JOB_SUBMITTED:
            self.events.append(("submitted", event.job_id, when))
        elif event.code == EVENT_JOB_MISSED:
            self.events.append(("missed", event.job_id, when))
            log.warning("schedule.missed", job=event.job_id, scheduled=when,
                        reason="older than daemon.misfire_grace when it could start")
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.events.append(("skipped", event.job_id, when))
            log.warning("schedule.skipped", job=event.job_id, scheduled=when, reason="the previous run is still going")
        elif event.code == EVENT_JOB_ERROR:
            self.events.append(("error", event.job_id, when))
            log.error("schedule.run_crashed", job=event.job_id, error=repr(getattr(event, "exception", None)))


class ContinuousJobs:
    """Keeps each enabled continuous job running: ``run(name, cancel)`` in a thread
    per job, again after a backoff when it returns. ``run`` must return soon after
    its ``cancel`` is set and never raise (the daemon's wrapper guarantees both)."""

    def __init__(self, config: "Config", run: Callable[[str, threading.Event], None]):
        self._run = run
        self.config = config
        self._lock = threading.Lock()
        self._threads: dict[str, tuple[threading.Thread, threading.Event, object]] = {}

    def start(self) -> None:
        self._sync(self.config)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._threads)

    def reload(self, config: "Config") -> None:
        self.config = config
        self._sync(config)

    def _sync(self, config: "Config") -> None:
        wanted = {name: spec for name, spec in config.jobs.items() if spec.enabled and is_continuous(spec)}
        with self._lock:
            for name in list(self._threads):
                thread, stop, spec = self._threads[name]
                if wanted.get(name) != spec:
                    log.info("continuous.stopping", job=name, reason="removed or changed by the configuration")
                    stop.set()
                    del self._threads[name]
            for name, spec in wanted.items():
                if name not in self._threads:
                    stop = threading.Event()
                    thread = threading.Thread(target=self._supervise, args=(name, spec, stop), daemon=True,
                                              name=f"maintainer-continuous-{name}")
                    self._threads[name] = (thread, stop, spec)
                    thread.start()

    @staticmethod
    def released(old: "Config", new: "Config") -> list[str]:
        """Continuous jobs enabled in ``old`` that ``new`` removed or disabled (their
        server-side resources, a replication slot, are to be released)."""
        return [name for name, spec in old.jobs.items() if spec.enabled and is_continuous(spec)
                and (name not in new.jobs or not new.jobs[name].enabled or new.jobs[name].type != spec.type
                     or (new.jobs[name].database, new.jobs[name].slot) != (spec.database, spec.slot))]

    def _supervise(self, name: str, spec, stop: threading.Event) -> None:
        first = spec.restart_backoff.total_seconds()
        limit = spec.restart_backoff_max.total_seconds()
        backoff = first
        while not stop.is_set():
            log.info("continuous.starting", job=name)
            self._run(name, stop)
            if stop.is_set():
                break
            log.warning("continuous.run_ended", job=name, restart_in=backoff)
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, limit)

    def stop(self, timeout: float = 30.0) -> bool:
        """Cancel every run and wait up to ``timeout`` for them; True when all ended."""
        with self._lock:
            threads = list(self._threads.values())
            self._threads.clear()
        for _, stop, _ in threads:
            stop.set()
        for thread, _, _ in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread, _, _ in threads)
