"""Runs record why they happened (schedule, manual, low_space, before_update), and a
history file from before triggers existed keeps working."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from maintainer.history import History
from maintainer.jobs.base import JobResult

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


def result(run_id: str) -> JobResult:
    return JobResult("prune", "docker_prune", run_id, T0, T0 + timedelta(seconds=4))


def test_the_trigger_written_at_the_start_survives_the_result(tmp_path):
    history = History.open(tmp_path)
    history.record_start("prune", "docker_prune", "r1", T0, "low_space")
    history.record_result(result("r1"))
    [run] = history.runs("prune")
    assert (run.trigger, run.status) == ("low_space", "ok")
    assert run.to_dict()["trigger"] == "low_space"


def test_a_run_without_a_recorded_start_is_manual_unless_told(tmp_path):
    history = History.open(tmp_path)
    history.record_result(result("r1"))
    history.record_result(result("r2"), trigger="schedule")
    assert {r.run_id: r.trigger for r in history.runs("prune")} == {"r1": "manual", "r2": "schedule"}


def test_an_old_history_file_gains_the_column_and_its_runs_read_as_manual(tmp_path):
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    db.executescript("""CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, type TEXT NOT NULL,
        started REAL NOT NULL, finished REAL, status TEXT NOT NULL, errors TEXT NOT NULL DEFAULT '[]',
        summary TEXT NOT NULL DEFAULT '[]', figures TEXT NOT NULL DEFAULT '{}', events TEXT NOT NULL DEFAULT '[]',
        details TEXT NOT NULL DEFAULT '{}', pid INTEGER);""")
    db.execute("INSERT INTO runs (run_id, job, type, started, finished, status) VALUES ('old', 'prune', "
               "'docker_prune', ?, ?, 'ok')", (T0.timestamp(), T0.timestamp() + 1))
    db.commit()
    db.close()
    history = History.open(tmp_path)
    history.record_start("prune", "docker_prune", "new", T0 + timedelta(hours=1), "schedule")
    assert {r.run_id: r.trigger for r in history.runs("prune")} == {"old": "manual", "new": "schedule"}
