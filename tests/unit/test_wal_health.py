"""The daemon keeps continuous jobs running (restart with backoff, stop on request)
and health judges the WAL archive: receiver down, lag over max_wal_lag, and gaps
each fail by name."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from maintainer.config.loader import parse_config
from maintainer.daemon.scheduler import ContinuousJobs, JobScheduler
from maintainer.health import DatabaseState, evaluate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = parse_config("""
storage: {main: {url: "file:///backups"}}
databases: {pg: {host: db}}
jobs:
  wal: {type: wal_archive, database: pg, storage: main, max_wal_lag: 2m, restart_backoff: 0.05s,
        restart_backoff_max: 0.2s}
  base: {type: pg_basebackup, database: pg, storage: main, schedule: "0 3 * * *"}
""")


def test_a_continuous_job_is_not_on_the_cron_scheduler_and_restarts_after_each_return():
    assert [job.id for job in JobScheduler(CONFIG, lambda name: None).scheduler.get_jobs()] == ["base"]
    starts: list[float] = []
    stopped = threading.Event()

    def run(name: str, cancel: threading.Event) -> None:
        starts.append(time.monotonic())
        if len(starts) >= 4:
            cancel.wait(10)
            stopped.set()

    jobs = ContinuousJobs(CONFIG, run)
    jobs.start()
    deadline = time.monotonic() + 10
    while len(starts) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert jobs.names() == ["wal"]
    assert jobs.stop(5) and stopped.is_set()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # doubling, bounded by restart_backoff_max


def test_a_reload_stops_a_removed_continuous_job():
    ended = threading.Event()

    def run(name, cancel):
        cancel.wait(10)
        ended.set()

    jobs = ContinuousJobs(CONFIG, run)
    jobs.start()
    time.sleep(0.05)
    jobs.reload(parse_config("""
storage: {main: {url: "file:///backups"}}
databases: {pg: {host: db}}
jobs:
  base: {type: pg_basebackup, database: pg, storage: main, schedule: "0 3 * * *"}
"""))
    assert ended.wait(5) and jobs.names() == []


def state(**wal) -> DatabaseState:
    return DatabaseState("pg", wal_jobs=["wal"], **wal)


def wal_failures(report) -> list[tuple[str, str]]:
    return [(c.check, c.message) for c in report.failing if c.check.startswith("wal_")]


def test_a_live_receiver_that_keeps_up_is_healthy_for_the_wal_checks():
    report = evaluate(CONFIG, NOW, scheduler_alive=True, jobs={},
                      databases={"pg": state(wal_receiver_up=True, wal_lag_seconds=3.0, wal_gaps=0)})
    assert wal_failures(report) == []
    assert {c.check for c in report.conditions} >= {"wal_receiver", "wal_lag", "wal_gaps"}


def test_receiver_down_lag_and_gaps_each_fail_by_name():
    report = evaluate(CONFIG, NOW, scheduler_alive=True, jobs={}, databases={"pg": state(
        wal_receiver_up=False, wal_problem="pg_receivewal exited with 1", wal_lag_seconds=600.0, wal_gaps=2)})
    assert wal_failures(report) == [
        ("wal_receiver", "database pg: WAL receiver is down (pg_receivewal exited with 1)"),
        ("wal_lag", "database pg: WAL archive lags by 10m00s (max_wal_lag 2m00s)"),
        ("wal_gaps", "database pg: 2 WAL segment(s) missing since the newest base backup; take a new base backup"),
    ]


def test_outside_the_daemon_an_empty_archive_fails_and_the_receiver_is_not_judged():
    report = evaluate(CONFIG, NOW, scheduler_alive=True, jobs={}, databases={"pg": state()})
    assert wal_failures(report) == [("wal_lag", "database pg: no WAL archived yet")]
    fresh = evaluate(CONFIG, NOW, scheduler_alive=True, jobs={}, databases={"pg": state(
        wal_lag_seconds=30.0, wal_gaps=0, wal_last_segment_time=NOW - timedelta(seconds=30))})
    assert wal_failures(fresh) == []
