"""``maintainer daemon``: the scheduler, the status server and the signals.

* SIGTERM / SIGINT: start nothing more; give running jobs ``shutdown_grace``
  to finish; then set their cancel flags so they abort cleanly (uploads
  aborted, drill containers removed) and wait up to ABORT_WAIT_SECONDS for
  that; exit 0. A second signal skips the grace time.
* SIGHUP: load and validate the config file again; if it is invalid, log
  every problem and keep running the old one.
* A job that crashes is recorded and alerted by the runner; nothing a job
  does can stop the scheduler.
* Continuous jobs (wal_archive) start with the daemon and run until it stops
  (see daemon.scheduler.ContinuousJobs); SIGTERM cancels them first (they
  store what they hold and end), a reload restarts only those it changed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from maintainer.config import load_config
from maintainer.daemon.scheduler import ContinuousJobs, JobScheduler
from maintainer.disk import LowSpaceWatcher
from maintainer.errors import ConfigError, MaintainerError
from maintainer.health import CatalogCache, HealthReport, check
from maintainer.history import History
from maintainer.jobs.wal_archive import release_slot
from maintainer.wal.state import STATES
from maintainer.httpserver import StatusServer
from maintainer.jobs.base import new_run_id
from maintainer.logs import get_logger
from maintainer.metrics import MaintainerCollector, build_registry, render
from maintainer.runner import run_job
from maintainer.statuspage import StatusPage

if TYPE_CHECKING:
    from maintainer.config.models import Config

log = get_logger("daemon")

ABORT_WAIT_SECONDS = 30.0
IDLE_WAKE_SECONDS = 60.0
# How often the disk watch reads free space (docker_prune when_free_below).
DISK_WATCH_SECONDS = float(os.environ.get("MAINTAINER_DISK_WATCH_SECONDS", "300"))


class Daemon:
    def __init__(self, config_path: str | Path, config: "Config"):
        self.config_path = Path(config_path)
        self.config = config
        self.history = History.open(config.daemon.state_dir)
        self.cache = CatalogCache(lambda: self.config, self.history)
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._wake = threading.Event()
        self._reload = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: dict[str, tuple[str, threading.Event]] = {}  # run id -> (job, cancel)
        self.scheduler = JobScheduler(config, self._run_scheduled)
        self.continuous = ContinuousJobs(config, self._run_continuous)
        self.disk_watch = LowSpaceWatcher(lambda: self.config, self._run_low_space, interval=DISK_WATCH_SECONDS,
                                          running=self.running)
        self.page = StatusPage(lambda: self.config, self.history, self.cache,
                               lambda: self.scheduler.alive and not self._stop.is_set(), self.scheduler.next_runs)
        self.server = StatusServer(config.daemon.listen, self.health, self.metrics,
                                   page=self.page.render if config.daemon.status_page.enabled else None,
                                   page_auth=self.page.credentials)
        self._registry = build_registry(MaintainerCollector(
            lambda: self.config, self.history, self.cache, lambda: self.scheduler.alive and not self._stop.is_set(),
            self.scheduler.next_runs))

    # ------------------------------------------------------------ status

    def health(self) -> HealthReport:
        return check(self.config, self.history, self.cache, self.scheduler.alive and not self._stop.is_set())

    def metrics(self) -> bytes:
        return render(self._registry)

    # ------------------------------------------------------------ runs

    def _run_scheduled(self, name: str) -> None:
        """Called by the scheduler's worker pool. Never raises.

        The runner enforces the job's timeout and records every outcome, a crash
        included; the daemon only keeps the cancel flag so a shutdown can stop the run.
        """
        self._run_once(name, threading.Event(), "schedule")

    def _run_continuous(self, name: str, cancel: threading.Event) -> None:
        """A continuous job's run, until ``cancel`` (set by a stop or a reload). Never raises."""
        self._run_once(name, cancel, "continuous")

    def _run_low_space(self, name: str, trigger: str) -> None:
        """The disk watch's early prune: a run like a scheduled one, recorded as low_space."""
        self._run_once(name, threading.Event(), trigger)

    def _run_once(self, name: str, cancel: threading.Event, trigger: str) -> None:
        if self._stop.is_set():
            log.info("daemon.run_skipped", job=name, reason="shutting down")
            return
        run_id = new_run_id()
        with self._lock:
            self._running[run_id] = (name, cancel)
        try:
            run_job(self.config, name, run_id=run_id, cancel=cancel, trigger=trigger)
        except BaseException as exc:  # noqa: BLE001 - e.g. a job removed by a reload; the scheduler must survive
            log.error("daemon.run_crashed", job=name, run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(run_id, None)
                self._idle.notify_all()
            self.cache.invalidate()

    def running(self) -> list[str]:
        with self._lock:
            return sorted(job for job, _ in self._running.values())

    # ------------------------------------------------------------ lifecycle

    def _on_stop(self, signum, frame) -> None:
        if self._stop.is_set():
            self._abort.set()
            with self._lock:
                self._idle.notify_all()
        self._stop.set()
        self._wake.set()

    def _on_reload(self, signum, frame) -> None:
        self._reload.set()
        self._wake.set()

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code. Main thread only."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        for run_id in self.history.close_abandoned():
            log.warning("history.closed_abandoned_run", run_id=run_id)
        self.server.start()
        self.scheduler.start()
        self.continuous.start()
        self.disk_watch.start()
        log.info("daemon.started", config=str(self.config_path), jobs=len(self.scheduler.next_runs()),
                 state_dir=self.config.daemon.state_dir, max_concurrent_jobs=self.scheduler.workers)
        for warning in self.config.secret_warnings:
            log.warning("config.secret_unavailable", problem=warning)
        self._log_next_runs()
        while not self._stop.is_set():
            self._wake.wait(IDLE_WAKE_SECONDS)
            self._wake.clear()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if not self.scheduler.alive and not self._stop.is_set():
                log.error("daemon.scheduler_dead")
        return self._shutdown()

    def reload(self) -> bool:
        """Apply the config file again if it is valid; keep the old one otherwise."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("daemon.reload_rejected", error=exc.message, problems=exc.problems,
                      keeping="the previous configuration")
            return False
        except MaintainerError as exc:
            log.error("daemon.reload_rejected", error=exc.message, keeping="the previous configuration")
            return False
        for setting in ("state_dir", "listen"):
            if getattr(new.daemon, setting) != getattr(self.config.daemon, setting):
                log.warning("daemon.reload_restart_needed", setting=f"daemon.{setting}")
        self.scheduler.reload(new)
        old, self.config = self.config, new
        self.continuous.reload(new)
        for name in self.continuous.released(old, new):
            threading.Thread(target=self._release_slot, args=(old, name), daemon=True,
                             name=f"maintainer-release-{name}").start()
        self.cache.invalidate()
        log.info("daemon.reloaded", config=str(self.config_path), jobs=len(self.scheduler.next_runs()))
        self._log_next_runs()
        return True

    def _release_slot(self, old: "Config", name: str) -> None:
        """Drop the slot of a wal_archive job the reload removed or disabled, once its run
        has ended (a slot nobody reads fills the server's disk)."""
        deadline = time.monotonic() + ABORT_WAIT_SECONDS
        while name in self.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        STATES.forget(name)  # no longer a receiver of this daemon: /metrics and /health stop showing it
        try:
            if release_slot(old, name):
                log.info("wal.slot_dropped", job=name, slot=old.jobs[name].slot,
                         reason="the job was removed or disabled")
        except MaintainerError as exc:
            log.error("wal.slot_drop_failed", job=name, error=exc.message,
                      hint="drop it by hand: SELECT pg_drop_replication_slot(...)")

    def _log_next_runs(self) -> None:
        for job, when in sorted(self.scheduler.next_runs().items()):
            log.info("daemon.next_run", job=job, at=when.isoformat() if when else None)

    def _wait_idle(self, seconds: float, *, stop_on_abort: bool) -> bool:
        deadline = time.monotonic() + seconds
        with self._lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0 or (stop_on_abort and self._abort.is_set()):
                    return False
                self._idle.wait(min(left, 1.0))
        return True

    def _shutdown(self) -> int:
        grace = self.config.daemon.shutdown_grace.total_seconds()
        self.disk_watch.stop(timeout=5)
        self.scheduler.shutdown()
        # Continuous runs never end on their own: stop them now (each stores what it holds).
        if not self.continuous.stop(ABORT_WAIT_SECONDS):
            log.warning("daemon.continuous_jobs_slow_to_stop")
        running = self.running()
        log.info("daemon.stopping", running=running, grace_seconds=grace)
        clean = True
        if running and not self._wait_idle(grace, stop_on_abort=True):
            with self._lock:
                aborting = list(self._running.values())
            log.warning("daemon.aborting_runs", jobs=sorted(job for job, _ in aborting))
            for _, cancel in aborting:
                cancel.set()
            clean = self._wait_idle(ABORT_WAIT_SECONDS, stop_on_abort=False)
        self.server.stop()
        if not clean:
            log.error("daemon.stopped_with_runs_left", jobs=self.running())
            os._exit(1)  # worker threads that ignore their cancel flag would keep the process alive
        log.info("daemon.stopped")
        return 0
