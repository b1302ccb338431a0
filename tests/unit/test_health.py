"""Health is a pure function of the state: each failing condition is named."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from maintainer.config.loader import parse_config
from maintainer.health import CatalogCache, DatabaseState, JobState, evaluate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

CONFIG = parse_config("""
storage:
  local: {url: "file:///backups"}
databases:
  app: {max_backup_age: 26h, max_drill_age: 8d}
daemon: {failure_threshold: 3}
jobs:
  backup: {type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}
  drill: {type: restore_drill, schedule: "30 5 * * 0", databases: [app], storage: local}
""")


def protected(**changes) -> DatabaseState:
    state = DatabaseState("app", ["backup"], ["drill"], newest_backup_id="20261126T031500Z",
                          newest_backup=NOW - timedelta(hours=9), last_drill_passed=NOW - timedelta(days=2))
    for key, value in changes.items():
        setattr(state, key, value)
    return state


def failing(report):
    return [(c.check, c.message) for c in report.failing]


def test_a_fresh_backup_a_recent_drill_and_no_failing_job_is_healthy():
    report = evaluate(CONFIG, NOW, scheduler_alive=True, databases={"app": protected()},
                      jobs={"backup": JobState("backup", "pg_backup", 2)})
    assert report.ok
    assert report.to_dict()["status"] == "ok" and report.to_dict()["failing"] == []


def test_no_backup_yet_is_unhealthy_and_says_so():
    report = evaluate(CONFIG, NOW, scheduler_alive=True,
                      databases={"app": protected(newest_backup=None, newest_backup_id=None)}, jobs={})
    assert failing(report) == [("backup_age", "database app: no complete backup yet")]


def test_a_backup_older_than_its_maximum_age_is_unhealthy():
    report = evaluate(CONFIG, NOW, scheduler_alive=True,
                      databases={"app": protected(newest_backup=NOW - timedelta(hours=27))}, jobs={})
    assert failing(report) == [("backup_age", "database app: newest complete backup 20261126T031500Z is "
                                              "27h00m old (max 26h00m)")]


def test_a_stale_or_missing_drill_is_unhealthy():
    stale = evaluate(CONFIG, NOW, scheduler_alive=True,
                     databases={"app": protected(last_drill_passed=NOW - timedelta(days=9))}, jobs={})
    assert [c for c, _ in failing(stale)] == ["drill_age"]
    assert "9d00h ago (max 8d00h)" in failing(stale)[0][1]
    missing = evaluate(CONFIG, NOW, scheduler_alive=True,
                       databases={"app": protected(last_drill_passed=None, drill_jobs=[])}, jobs={})
    assert failing(missing) == [("drill_age", "database app: no passed restore drill yet "
                                              "(no restore_drill job covers it)")]


def test_a_job_that_failed_its_last_n_runs_is_unhealthy():
    report = evaluate(CONFIG, NOW, scheduler_alive=True, databases={"app": protected()},
                      jobs={"prune": JobState("prune", "docker_prune", 3, "socket gone")})
    assert failing(report) == [("job_failures", "job prune failed its last 3 runs: socket gone")]


def test_a_dead_scheduler_and_an_unreadable_storage_are_each_named():
    report = evaluate(CONFIG, NOW, scheduler_alive=False,
                      databases={"app": protected(storage_errors=["cannot read storage local: denied"])}, jobs={})
    assert failing(report) == [("scheduler", "scheduler is not running"),
                               ("storage", "database app: cannot read storage local: denied")]


def test_a_database_no_backup_job_covers_is_unprotected():
    config = parse_config("databases:\n  other: {}\njobs:\n  prune: {type: docker_prune, schedule: '@daily'}\n")
    report = evaluate(config, NOW, scheduler_alive=True, databases={}, jobs={})
    assert ("backup_age", "database other: no pg_backup job backs it up") in failing(report)


class CountingGather:
    def __init__(self):
        self.calls = 0

    def __call__(self, config, history):
        self.calls += 1
        return {"app": protected()}


class FakeHistory:
    def __init__(self):
        self.marker = (0, None, None)

    def change_marker(self):
        return self.marker


def test_the_catalog_is_read_again_only_when_the_history_changes_or_it_ages_out():
    gather, history = CountingGather(), FakeHistory()
    cache = CatalogCache(lambda: CONFIG, history, ttl=3600, gather=gather)
    cache.get()
    cache.get()
    assert gather.calls == 1
    history.marker = (1, 123.0, 100.0)  # a run finished, perhaps in another process
    cache.get()
    assert gather.calls == 2
    cache.invalidate()
    cache.get()
    assert gather.calls == 3
    expired = CatalogCache(lambda: CONFIG, history, ttl=0, gather=gather)
    expired.get()
    expired.get()
    assert gather.calls == 5
