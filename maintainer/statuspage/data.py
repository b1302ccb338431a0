"""What the status page shows, gathered read-only from the history and catalog.

Only totals leave this module: sizes, row totals, durations, check counts.
Never a table's rows, never a secret (errors come from the run history,
which passed them through the redactor, and pass through it again here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from maintainer import redact
from maintainer import storage as storage_backends
from maintainer.backup.catalog import list_backups
from maintainer.errors import MaintainerError
from maintainer.wal.verifications import PITR_MODE, pitr_drill_records, pitr_figure

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.health import DatabaseState, HealthReport
    from maintainer.history import History, Run

CHART_BACKUPS = 30  # backups shown in the size and duration chart
CHART_DRILLS = 30  # drills shown in the RTO chart (logical and PITR together)
LOGICAL, PITR = "logical", PITR_MODE  # a drill's mode
RUNS_PER_JOB = 5
# A backup smaller than this share of the one before it is flagged as a sudden drop,
# whatever the job's own suspicious_drop setting said when it was taken.
DROP_RATIO = 0.5
WAL_FIELDS = ("wal_lag_seconds", "wal_receiver_up", "wal_gaps", "wal_last_segment_time", "wal_problem")


@dataclass
class BackupPoint:
    id: str
    created: datetime
    size: int  # stored bytes
    rows: int
    duration: float
    verified: bool
    suspicious: bool  # the backup job flagged it
    reasons: list[str] = field(default_factory=list)
    dropped: bool = False  # smaller than DROP_RATIO of the backup before it


@dataclass
class DrillPoint:
    backup_id: str  # the backup, or for a PITR drill the base backup
    finished: datetime
    passed: bool
    restore_seconds: float | None  # the RTO
    checks_passed: int
    checks_total: int
    mode: str = LOGICAL  # LOGICAL (pg_restore of a dump) or PITR (base backup plus WAL)
    rpo_seconds: float | None = None  # PITR: drill start minus the newest archived WAL


@dataclass
class CatalogView:
    """One database's backups (oldest first, at most CHART_BACKUPS) and drills of both
    modes (oldest first, at most CHART_DRILLS)."""

    database: str
    backups: list[BackupPoint] = field(default_factory=list)
    drills: list[DrillPoint] = field(default_factory=list)
    total_backups: int = 0
    storage_errors: list[str] = field(default_factory=list)
    pitr_drilled: bool = False  # a restore_drill job with mode: pitr covers the database

    @property
    def newest(self) -> BackupPoint | None:
        return self.backups[-1] if self.backups else None

    @property
    def newest_passed_drill(self) -> DrillPoint | None:
        """The newest passed logical drill."""
        return self._newest_passed(LOGICAL)

    @property
    def newest_passed_pitr_drill(self) -> DrillPoint | None:
        return self._newest_passed(PITR)

    def _newest_passed(self, mode: str) -> DrillPoint | None:
        passed = [d for d in self.drills if d.passed and d.mode == mode]
        return passed[-1] if passed else None


@dataclass
class DatabaseView:
    name: str
    display: str  # user@host:port/dbname, never a password
    ok: bool
    problems: list[str]
    catalog: CatalogView
    wal: dict[str, Any]  # the WAL archive's fields that are known (empty before continuous archiving)


@dataclass
class RunView:
    status: str
    started: datetime
    duration: float | None
    error: str | None
    summary: list[str]
    figures: dict[str, float]


@dataclass
class JobView:
    name: str
    type: str
    schedule: str
    enabled: bool
    next_run: datetime | None
    runs: list[RunView]  # newest first
    consecutive_failures: int


@dataclass
class PageData:
    generated: datetime
    healthy: bool
    problems: list[str]  # every failing health condition's message
    databases: list[DatabaseView]
    jobs: list[JobView]
    last_prune: tuple[str, RunView] | None  # (job, run)
    last_image_update: tuple[str, RunView] | None
    history_available: bool
    authenticated: bool  # basic auth protects the page


def gather_catalog(config: "Config", history: "History | None" = None,
                   open_storage: Callable | None = None) -> dict[str, CatalogView]:
    """Every database's backups and drill records from the storages its jobs use,
    with the PITR drills' records beside its base backups.

    A storage that cannot be read becomes a ``storage_errors`` line, never an
    exception: the page must answer whatever the storage does.
    """
    open_storage = open_storage or storage_backends.open_storage
    opened: dict[str, Any] = {}
    views: dict[str, CatalogView] = {}
    for db in config.databases:
        view = CatalogView(db)
        jobs = config.jobs_covering(db, "pg_backup") + config.jobs_covering(db, "restore_drill")
        entries: dict[str, Any] = {}
        for name in dict.fromkeys(config.jobs[job].storage for job in jobs):
            try:
                if name not in opened:
                    opened[name] = open_storage(config.storage[name], name=name)
                for entry in list_backups(opened[name], db):
                    entries.setdefault(entry.id, entry)
            except MaintainerError as exc:
                view.storage_errors.append(redact.scrub(f"cannot read storage {name}: {exc.message}"))
            except Exception as exc:  # noqa: BLE001 - the page must answer, whatever the storage did
                view.storage_errors.append(redact.scrub(f"cannot read storage {name}: {type(exc).__name__}: {exc}"))
        ordered = sorted(entries.values(), key=lambda e: e.id)
        view.total_backups = len(ordered)
        view.backups = flag_drops([_point(e) for e in ordered[-CHART_BACKUPS:]])
        drills = [_drill(e.id, v) for e in ordered for v in e.verifications]
        pitr_jobs = config.pitr_drills_covering(db)
        view.pitr_drilled = bool(pitr_jobs)
        for name in dict.fromkeys(config.jobs[job].storage for job in pitr_jobs):
            try:
                if name not in opened:
                    opened[name] = open_storage(config.storage[name], name=name)
                drills += [_pitr_drill(r) for r in pitr_drill_records(opened[name], db)]
            except MaintainerError as exc:
                view.storage_errors.append(redact.scrub(f"cannot read the PITR drill records in storage {name}: "
                                                        f"{exc.message}"))
            except Exception as exc:  # noqa: BLE001 - the page must answer, whatever the storage did
                view.storage_errors.append(redact.scrub(f"cannot read the PITR drill records in storage {name}: "
                                                        f"{type(exc).__name__}: {exc}"))
        view.drills = sorted(drills, key=lambda d: d.finished)[-CHART_DRILLS:]
        views[db] = view
    return views


def _point(entry) -> BackupPoint:
    m = entry.manifest
    return BackupPoint(m.id, _utc(entry.created), m.stored_size, m.total_rows, m.duration, entry.verified,
                       m.suspicious, list(m.suspicious_reasons))


def _drill(backup_id: str, record) -> DrillPoint:
    return DrillPoint(backup_id, _utc(record.finished), record.passed, record.restore_seconds,
                      sum(c.passed for c in record.checks), len(record.checks))


def _pitr_drill(record) -> DrillPoint:
    """A PITR drill's record: its RTO and RPO are the figures it recorded."""
    return DrillPoint(record.backup_id, _utc(record.finished), record.passed, pitr_figure(record, "rto_seconds"),
                      sum(c.passed for c in record.checks), len(record.checks), PITR,
                      pitr_figure(record, "rpo_seconds"))


def flag_drops(points: list[BackupPoint]) -> list[BackupPoint]:
    """Mark each backup much smaller than the one before it (oldest first in, and out)."""
    for before, point in zip(points, points[1:]):
        point.dropped = before.size > 0 and point.size < before.size * DROP_RATIO
    return points


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run_view(run: "Run") -> RunView:
    return RunView(run.status, run.started, run.duration, redact.scrub(run.error_summary or "") or None,
                   [redact.scrub(line) for line in run.summary], dict(run.figures))


def job_views(config: "Config", history: "History | None",
              next_runs: dict[str, datetime | None]) -> list[JobView]:
    views = []
    for name, spec in config.jobs.items():
        runs = [run_view(r) for r in history.runs(name, RUNS_PER_JOB)] if history is not None else []
        failures = history.consecutive_failures(name) if history is not None else 0
        views.append(JobView(name, spec.type, spec.schedule or "continuous", spec.enabled, next_runs.get(name), runs, failures))
    return views


def last_run_of_type(config: "Config", history: "History | None", type_: str) -> tuple[str, RunView] | None:
    """The newest finished run of any job of ``type_``, with its job's name."""
    if history is None:
        return None
    newest: tuple[str, Any] | None = None
    for name in config.jobs_of_type(type_):
        runs = history.last_finished(name)
        if runs and (newest is None or runs[0].started > newest[1].started):
            newest = (name, runs[0])
    return (newest[0], run_view(newest[1])) if newest else None


def database_views(config: "Config", report: "HealthReport", catalog: dict[str, CatalogView],
                   states: dict[str, "DatabaseState"]) -> list[DatabaseView]:
    views = []
    for name, spec in config.databases.items():
        problems = [c.message for c in report.failing if c.database == name]
        state = states.get(name)
        wal = {f: v for f in WAL_FIELDS if (v := getattr(state, f, None)) is not None}
        views.append(DatabaseView(name, spec.display(name), not problems, problems,
                                  catalog.get(name) or CatalogView(name), wal))
    return views
