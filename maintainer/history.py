"""Run history: one row per run, in a small SQLite file in the state directory.

Every run that is not a dry run is recorded here, from the daemon and from
``maintainer run`` alike: a row is written as "running" when it starts and
completed when it ends, so ``maintainer status``, ``/health`` and ``/metrics``
all read the same truth. A row left "running" by a process that died is
closed as failed when the next daemon starts.

SQLite because it is in the standard library, survives crashes (WAL) and lets
two processes (the daemon and a ``docker exec maintainer maintainer run``)
write at once. Nothing secret is stored: errors and summaries pass through the
redactor first.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maintainer import redact
from maintainer.errors import MaintainerError
from maintainer.logs import get_logger

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.jobs.base import JobResult

log = get_logger("history")

FILENAME = "history.sqlite3"
RUNNING, OK, FAILED = "running", "ok", "failed"
# Why a run happened: the daemon's schedule, a person (``maintainer run``), the
# daemon's low-space watcher, or an image_update running its ``before:`` jobs.
TRIGGERS = ("schedule", "manual", "low_space", "before_update", "continuous")
MANUAL = "manual"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id    TEXT PRIMARY KEY,
    job       TEXT NOT NULL,
    type      TEXT NOT NULL,
    started   REAL NOT NULL,          -- unix seconds, UTC
    finished  REAL,
    status    TEXT NOT NULL,          -- running | ok | failed
    errors    TEXT NOT NULL DEFAULT '[]',
    summary   TEXT NOT NULL DEFAULT '[]',
    figures   TEXT NOT NULL DEFAULT '{}',
    events    TEXT NOT NULL DEFAULT '[]',
    details   TEXT NOT NULL DEFAULT '{}',
    pid       INTEGER,
    trigger   TEXT NOT NULL DEFAULT 'manual'  -- schedule | manual | low_space | before_update | continuous
);
CREATE INDEX IF NOT EXISTS runs_job_started ON runs (job, started);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished);
"""


class HistoryError(MaintainerError):
    """The state directory or its history file cannot be used."""


@dataclass
class Run:
    run_id: str
    job: str
    type: str
    started: datetime
    finished: datetime | None
    status: str
    errors: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    trigger: str = MANUAL

    @property
    def duration(self) -> float | None:
        return (self.finished - self.started).total_seconds() if self.finished else None

    @property
    def error_summary(self) -> str | None:
        return "; ".join(self.errors) if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job": self.job, "type": self.type, "status": self.status,
                "started": self.started.isoformat(), "finished": self.finished.isoformat() if self.finished else None,
                "duration": round(self.duration, 3) if self.duration is not None else None,
                "errors": self.errors, "summary": self.summary, "figures": self.figures, "events": self.events,
                "trigger": self.trigger}


def _ts(when: datetime) -> float:
    return when.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def _json(value: Any) -> str:
    return redact.scrub(json.dumps(value, default=str, ensure_ascii=False))


class History:
    """The run history in ``state_dir``. Each call opens its own connection, so
    one History may be used from many threads."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILENAME

    @classmethod
    def open(cls, state_dir: str | Path) -> "History":
        """Create the directory and schema; HistoryError naming the path if that fails."""
        history = cls(state_dir)
        try:
            history.state_dir.mkdir(parents=True, exist_ok=True)
            with history._connect() as db:
                db.executescript(_SCHEMA)
                _add_trigger_column(db)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise HistoryError(f"cannot use the run history at {history.path}: {reason}",
                               hint="the state directory must be a writable volume (daemon.state_dir)") from None
        return history

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def _write(self, sql: str, args: tuple) -> None:
        db = self._connect()
        try:
            db.execute(sql, args)
        finally:
            db.close()

    # ------------------------------------------------------------ writing

    def record_start(self, job: str, type_: str, run_id: str, started: datetime, trigger: str = MANUAL) -> None:
        self._write("INSERT OR REPLACE INTO runs (run_id, job, type, started, status, pid, trigger)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, job, type_, _ts(started), RUNNING, os.getpid(), trigger))

    def record_result(self, result: "JobResult", trigger: str | None = None) -> None:
        """Complete the run's row; its trigger stays the one record_start wrote
        (``trigger`` sets it for a run whose start was not recorded)."""
        finished = result.finished or datetime.now(timezone.utc)
        events = [{"kind": e.kind, "message": e.message, **e.fields} for e in result.events]
        self._write(
            "INSERT INTO runs (run_id, job, type, started, finished, status, errors, summary, figures,"
            " events, details, pid, trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO UPDATE SET job = excluded.job, type = excluded.type,"
            " started = excluded.started, finished = excluded.finished, status = excluded.status,"
            " errors = excluded.errors, summary = excluded.summary, figures = excluded.figures,"
            " events = excluded.events, details = excluded.details, pid = excluded.pid,"
            " trigger = COALESCE(?, runs.trigger)",
            (result.run_id, result.job, result.type, _ts(result.started), _ts(finished),
             OK if result.ok else FAILED, _json(result.errors), _json(result.summary),
             _json(_numeric(result.figures)), _json(events), _json(result.details), os.getpid(),
             trigger or MANUAL, trigger))

    def close_abandoned(self, now: datetime | None = None) -> list[str]:
        """Mark runs left "running" by processes that no longer exist as failed.

        Returns their run ids. A run of a live process (a concurrent
        ``maintainer run``) is left alone.
        """
        now = now or datetime.now(timezone.utc)
        closed = []
        for run_id, pid in self._query("SELECT run_id, pid FROM runs WHERE status = ?", (RUNNING,)):
            if pid and pid != os.getpid() and _alive(pid):
                continue
            self._write("UPDATE runs SET status = ?, finished = ?, errors = ? WHERE run_id = ?",
                        (FAILED, _ts(now), _json(["the run did not finish: its process ended"]), run_id))
            closed.append(run_id)
        return closed

    # ------------------------------------------------------------ reading

    def runs(self, job: str, limit: int = 20) -> list[Run]:
        """The job's runs, newest first."""
        rows = self._query(f"SELECT {_COLUMNS} FROM runs WHERE job = ? ORDER BY started DESC LIMIT ?", (job, limit))
        return [_run(r) for r in rows]

    def last_run(self, job: str) -> Run | None:
        runs = self.runs(job, 1)
        return runs[0] if runs else None

    def last_finished(self, job: str, limit: int = 1) -> list[Run]:
        rows = self._query(f"SELECT {_COLUMNS} FROM runs WHERE job = ? AND status != ? ORDER BY started DESC LIMIT ?",
                           (job, RUNNING, limit))
        return [_run(r) for r in rows]

    def last_with_status(self, job: str, status: str) -> Run | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM runs WHERE job = ? AND status = ? ORDER BY finished DESC LIMIT 1",
                           (job, status))
        return _run(rows[0]) if rows else None

    def consecutive_failures(self, job: str, limit: int = 100) -> int:
        """How many of the job's newest finished runs failed in a row."""
        count = 0
        for run in self.last_finished(job, limit):
            if run.status != FAILED:
                break
            count += 1
        return count

    def counts(self) -> dict[tuple[str, str], int]:
        """(job, status) -> number of runs."""
        return {(job, status): n for job, status, n in
                self._query("SELECT job, status, COUNT(*) FROM runs GROUP BY job, status")}

    def duration_totals(self) -> dict[str, tuple[int, float]]:
        """job -> (finished runs, total seconds)."""
        return {job: (n, total or 0.0) for job, n, total in self._query(
            "SELECT job, COUNT(*), SUM(finished - started) FROM runs WHERE finished IS NOT NULL GROUP BY job")}

    def figure_totals(self, job: str, names: tuple[str, ...]) -> dict[str, float]:
        """The sum of each named figure over the job's finished runs (0 when never recorded)."""
        totals = {}
        for name in names:
            rows = self._query("SELECT SUM(json_extract(figures, ?)) FROM runs WHERE job = ? AND finished IS NOT NULL",
                               (f'$."{name}"', job))
            totals[name] = float(rows[0][0] or 0) if rows else 0.0
        return totals

    def jobs(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT job FROM runs ORDER BY job")]

    def change_marker(self) -> tuple:
        """Changes whenever a run starts or ends; cheap, for cache invalidation."""
        rows = self._query("SELECT COUNT(*), MAX(finished), MAX(started) FROM runs")
        return rows[0] if rows else (0, None, None)


_COLUMNS = "run_id, job, type, started, finished, status, errors, summary, figures, events, details, trigger"


def _run(row: tuple) -> Run:
    run_id, job, type_, started, finished, status, errors, summary, figures, events, details, trigger = row
    return Run(run_id, job, type_, _dt(started), _dt(finished), status, json.loads(errors), json.loads(summary),
               json.loads(figures), json.loads(events), json.loads(details), trigger or MANUAL)


def _add_trigger_column(db: sqlite3.Connection) -> None:
    """History files written before runs had a trigger get the column (old rows: manual)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "trigger" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual'")


def _numeric(figures: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def history_for(config: "Config") -> History | None:
    """The history of ``config``'s state directory, or None (logged) when it cannot be used.

    ``maintainer run`` must work without a state directory, so this never raises.
    """
    try:
        return History.open(config.daemon.state_dir)
    except HistoryError as exc:
        log.warning("history.unavailable", error=exc.message)
        return None
