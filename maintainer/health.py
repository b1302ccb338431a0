"""Is the deployment protected? The answer behind /health, /metrics and alerts.

Healthy means all of:

* the scheduler is alive;
* for every database in the config, the newest complete backup (one with a
  manifest) is younger than its ``max_backup_age``;
* for every database, the newest passed restore drill is younger than its
  ``max_drill_age`` (a drill's Verification record beside a backup or, for a
  PITR drill, beside a base backup; or an ok run of a restore_drill job naming
  the database);
* no job failed its last ``daemon.failure_threshold`` runs;
* for every database a wal_archive job archives: its receiver is up, the
  archive lags by no more than the job's ``max_wal_lag``, and no segment is
  missing since the newest base backup (a gap heals when a new base backup
  starts after it). In the daemon these come from the receiver's live state
  (maintainer.wal.state); elsewhere from storage: the age of the newest
  archived WAL and the gaps, with the receiver's state unknown.

``evaluate`` is pure (state in, report out); ``gather_databases`` reads the
backup catalog of the storages that the database's jobs use (and the PITR
drill records beside its base backups), and
``CatalogCache`` keeps that reading until the run history changes or it ages
out, so a health probe every 30 s does not list S3 every 30 s.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable


from maintainer import disk, storage as storage_backends
from maintainer.backup.catalog import list_backups
from maintainer.backup.manifest import Verification
from maintainer.wal import archive as wal_archive
from maintainer.wal.basebackups import oldest_needed_lsn
from maintainer.wal.verifications import pitr_drill_records, pitr_figure
from maintainer.wal.layout import parse_segment_key
from maintainer.wal.state import STATES
from maintainer.errors import MaintainerError
from maintainer.units import human_duration
from maintainer.logs import get_logger

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.history import History

log = get_logger("health")

# How long a reading of the backup catalog is reused when no run has started or
# ended since (runs invalidate it at once). MAINTAINER_CATALOG_TTL overrides.
CATALOG_TTL_SECONDS = float(os.environ.get("MAINTAINER_CATALOG_TTL", "300"))


@dataclass
class DatabaseState:
    database: str
    backup_jobs: list[str] = field(default_factory=list)
    drill_jobs: list[str] = field(default_factory=list)
    newest_backup_id: str | None = None
    newest_backup: datetime | None = None  # when it was taken
    newest_verified: datetime | None = None  # when the newest drill-verified backup was taken
    newest_size: int | None = None  # stored bytes of the newest backup
    newest_rows: int | None = None
    newest_suspicious: bool = False
    last_drill_passed: datetime | None = None  # when the newest passed drill finished
    last_drill_restore_seconds: float | None = None
    storage_errors: list[str] = field(default_factory=list)
    wal_jobs: list[str] = field(default_factory=list)  # wal_archive jobs archiving this database's server
    wal_lag_seconds: float | None = None
    wal_receiver_up: bool | None = None  # None: not known here (no receiver in this process)
    wal_gaps: int | None = None
    wal_last_segment_time: datetime | None = None
    wal_problem: str | None = None  # the receiver's last error, or the gaps, for the message
    pitr_drill_jobs: list[str] = field(default_factory=list)  # restore_drill jobs with mode: pitr
    last_pitr_drill_passed: datetime | None = None  # when the newest passed PITR drill finished
    last_pitr_rto_seconds: float | None = None  # of that drill: start of recovery to a usable server
    last_pitr_rpo_seconds: float | None = None  # of that drill: drill start minus the newest archived WAL
    last_pitr_replay_mb_s: float | None = None  # of that drill: WAL replayed per second


@dataclass
class JobState:
    job: str
    type: str
    consecutive_failures: int = 0
    last_error: str | None = None


@dataclass
class Condition:
    check: str  # scheduler | backup_age | drill_age | job_failures | storage
    ok: bool
    message: str
    database: str | None = None
    job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class HealthReport:
    checked_at: datetime
    conditions: list[Condition]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.conditions)

    @property
    def failing(self) -> list[Condition]:
        return [c for c in self.conditions if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing", "checked_at": self.checked_at.isoformat(),
                "failing": [c.to_dict() for c in self.failing], "checks": [c.to_dict() for c in self.conditions]}


def _age(seconds: float) -> str:
    return human_duration(seconds)


def evaluate(config: "Config", now: datetime, *, scheduler_alive: bool,
             databases: dict[str, DatabaseState], jobs: dict[str, JobState]) -> HealthReport:
    """The health report for this state. Pure: no I/O, no clock."""
    conditions = [Condition("scheduler", scheduler_alive,
                            "scheduler is running" if scheduler_alive else "scheduler is not running")]
    for name, spec in config.databases.items():
        state = databases.get(name) or DatabaseState(name)
        for error in state.storage_errors:
            conditions.append(Condition("storage", False, f"database {name}: {error}", database=name))
        max_backup = spec.max_backup_age.total_seconds()
        if not state.backup_jobs:
            conditions.append(Condition("backup_age", False, f"database {name}: no pg_backup job backs it up",
                                        database=name))
        elif state.newest_backup is None:
            conditions.append(Condition("backup_age", False, f"database {name}: no complete backup yet", database=name))
        else:
            age = (now - state.newest_backup).total_seconds()
            ok = age < max_backup
            conditions.append(Condition(
                "backup_age", ok, f"database {name}: newest complete backup {state.newest_backup_id} is "
                f"{_age(age)} old (max {_age(max_backup)})", database=name))
        max_drill = spec.max_drill_age.total_seconds()
        if state.last_drill_passed is None:
            why = "" if state.drill_jobs else " (no restore_drill job covers it)"
            conditions.append(Condition("drill_age", False, f"database {name}: no passed restore drill yet{why}",
                                        database=name))
        else:
            age = (now - state.last_drill_passed).total_seconds()
            conditions.append(Condition("drill_age", age < max_drill, f"database {name}: newest passed restore "
                                        f"drill finished {_age(age)} ago (max {_age(max_drill)})", database=name))
        conditions.extend(_wal_conditions(config, name, state))
    threshold = config.daemon.failure_threshold
    for name, state in sorted(jobs.items()):
        if state.consecutive_failures >= threshold:
            conditions.append(Condition(
                "job_failures", False, f"job {name} failed its last {state.consecutive_failures} runs"
                + (f": {state.last_error}" if state.last_error else ""), job=name))
    return HealthReport(now, conditions)


def _wal_conditions(config: "Config", name: str, state: DatabaseState) -> list[Condition]:
    if not state.wal_jobs:
        return []
    max_lag = min(config.jobs[job].max_wal_lag.total_seconds() for job in state.wal_jobs)
    out = []
    if state.wal_receiver_up is not None:
        out.append(Condition("wal_receiver", state.wal_receiver_up, f"database {name}: WAL receiver is "
                             + ("up" if state.wal_receiver_up else "down" + (f" ({state.wal_problem})"
                                                                               if state.wal_problem else "")),
                             database=name))
    if state.wal_lag_seconds is not None:
        out.append(Condition("wal_lag", state.wal_lag_seconds <= max_lag, f"database {name}: WAL archive lags by "
                             f"{_age(state.wal_lag_seconds)} (max_wal_lag {_age(max_lag)})", database=name))
    elif state.wal_receiver_up is None:
        out.append(Condition("wal_lag", False, f"database {name}: no WAL archived yet", database=name))
    if state.wal_gaps is not None:
        out.append(Condition("wal_gaps", state.wal_gaps == 0, f"database {name}: " + (
            "no WAL segment missing since the newest base backup" if not state.wal_gaps else
            f"{state.wal_gaps} WAL segment(s) missing since the newest base backup; take a new base backup"),
            database=name))
    return out


def wal_jobs_of(config: "Config", database: str) -> list[str]:
    return config.jobs_covering(database, "wal_archive")


def with_live_wal(states: dict[str, DatabaseState]) -> dict[str, DatabaseState]:
    """``states`` with the WAL fields of databases whose receiver runs in this process
    taken from its live state (copies; the cached reading stays as it was)."""
    out = dict(states)
    for name, state in states.items():
        for job in state.wal_jobs:
            live = STATES.get(job)
            if live is None:
                continue
            gaps = live.gaps if live.gaps is not None else state.wal_gaps
            out[name] = replace(state, wal_receiver_up=live.up, wal_lag_seconds=live.lag_seconds,
                                wal_gaps=gaps, wal_last_segment_time=live.last_segment_time or
                                state.wal_last_segment_time, wal_problem=live.last_error or live.gap_text)
            break
    return out


def fill_wal_state(config: "Config", state: DatabaseState, storages: dict[str, Any], now: datetime) -> None:
    """The WAL fields as storage tells them: the age of the newest archived WAL object
    and the gaps since the newest base backup (raises what storage raises)."""
    for job in state.wal_jobs:
        storage = storages[config.jobs[job].storage]
        listing = wal_archive.list_archive(storage, state.database)
        times = [info.modified for key, info in listing.objects.items() if parse_segment_key(key)]
        if times:
            newest = max(times)
            state.wal_last_segment_time = newest
            state.wal_lag_seconds = max(0.0, (now - newest).total_seconds())
        gaps = wal_archive.archive_gaps(storage, listing, oldest_needed_lsn(storage, state.database))
        state.wal_gaps = sum(g.count for g in gaps)
        state.wal_problem = "; ".join(g.describe() for g in gaps) or None
        return


def job_states(config: "Config", history: "History | None") -> dict[str, JobState]:
    """Consecutive failures of every configured job, from the run history."""
    states = {}
    for name, spec in config.jobs.items():
        state = JobState(name, spec.type)
        if history is not None:
            state.consecutive_failures = history.consecutive_failures(name)
            if state.consecutive_failures:
                last = history.last_finished(name)
                state.last_error = last[0].error_summary if last else None
        states[name] = state
    return states


def gather_databases(config: "Config", history: "History | None" = None,
                     open_storage: Callable | None = None) -> dict[str, DatabaseState]:
    """Read the catalog of every storage the database's jobs use. Storage
    failures become ``storage_errors``, never exceptions."""
    open_storage = open_storage or storage_backends.open_storage
    opened: dict[str, Any] = {}
    states: dict[str, DatabaseState] = {}
    for db in config.databases:
        state = DatabaseState(db, config.jobs_covering(db, "pg_backup"), config.jobs_covering(db, "restore_drill"),
                              pitr_drill_jobs=config.pitr_drills_covering(db))
        storages = []
        for job in state.backup_jobs + state.drill_jobs:
            name = config.jobs[job].storage
            if name not in storages:
                storages.append(name)
        entries = []
        for name in storages:
            try:
                if name not in opened:
                    opened[name] = open_storage(config.storage[name], name=name)
                entries.extend(list_backups(opened[name], db))
            except MaintainerError as exc:
                state.storage_errors.append(f"cannot read storage {name}: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - health must answer, whatever the storage did
                state.storage_errors.append(f"cannot read storage {name}: {type(exc).__name__}: {exc}")
        _fill_from_catalog(state, entries)
        records: list[Verification] = []
        for name in dict.fromkeys(config.jobs[job].storage for job in state.pitr_drill_jobs):
            try:
                if name not in opened:
                    opened[name] = open_storage(config.storage[name], name=name)
                records.extend(pitr_drill_records(opened[name], db))
            except MaintainerError as exc:
                state.storage_errors.append(f"cannot read the PITR drill records in storage {name}: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - health must answer, whatever the storage did
                state.storage_errors.append(f"cannot read the PITR drill records in storage {name}: "
                                            f"{type(exc).__name__}: {exc}")
        fill_pitr_state(state, records)
        state.wal_jobs = wal_jobs_of(config, db)
        if state.wal_jobs:
            try:
                for job in state.wal_jobs:
                    name = config.jobs[job].storage
                    if name not in opened:
                        opened[name] = open_storage(config.storage[name], name=name)
                fill_wal_state(config, state, opened, datetime.now(timezone.utc))
            except MaintainerError as exc:
                state.storage_errors.append(f"cannot read the WAL archive: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - health must answer, whatever the storage did
                state.storage_errors.append(f"cannot read the WAL archive: {type(exc).__name__}: {exc}")
        if history is not None:
            for job in state.drill_jobs:
                run = history.last_with_status(job, "ok")
                if run and run.finished and (state.last_drill_passed is None or run.finished > state.last_drill_passed):
                    state.last_drill_passed = run.finished
        states[db] = state
    return states


def _fill_from_catalog(state: DatabaseState, entries: list) -> None:
    entries = sorted(entries, key=lambda e: e.id, reverse=True)
    if entries:
        newest = entries[0]
        state.newest_backup_id = newest.id
        state.newest_backup = newest.created
        state.newest_size = newest.manifest.stored_size
        state.newest_rows = newest.manifest.total_rows
        state.newest_suspicious = newest.suspicious
    verified = [e for e in entries if e.verified]
    if verified:
        state.newest_verified = verified[0].created
    records = [v for e in entries for v in e.verifications]
    passed = [v for v in records if v.passed]
    if passed:
        last = max(passed, key=lambda v: v.finished)
        state.last_drill_passed = _utc(last.finished)
    if records:
        state.last_drill_restore_seconds = max(records, key=lambda v: v.finished).restore_seconds


def fill_pitr_state(state: DatabaseState, records: list[Verification]) -> None:
    """The newest passed PITR drill's time and figures; it counts as a passed drill too."""
    passed = [r for r in records if r.passed]
    if not passed:
        return
    newest = max(passed, key=lambda r: _utc(r.finished))
    state.last_pitr_drill_passed = _utc(newest.finished)
    state.last_pitr_rto_seconds = pitr_figure(newest, "rto_seconds")
    state.last_pitr_rpo_seconds = pitr_figure(newest, "rpo_seconds")
    state.last_pitr_replay_mb_s = pitr_figure(newest, "replay_mb_s")
    if state.last_drill_passed is None or state.last_pitr_drill_passed > state.last_drill_passed:
        state.last_drill_passed = state.last_pitr_drill_passed


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class CatalogCache:
    """gather_databases, re-read when the run history changed or after ``ttl`` seconds."""

    def __init__(self, config_getter: Callable[[], "Config"], history: "History | None",
                 ttl: float = CATALOG_TTL_SECONDS, gather: Callable = gather_databases):
        self._config = config_getter
        self.history = history
        self.ttl = ttl
        self._gather = gather
        self._lock = threading.Lock()
        self._key: Any = None
        self._at = 0.0
        self._value: dict[str, DatabaseState] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._key = None

    def get(self) -> dict[str, DatabaseState]:
        config = self._config()
        marker = self.history.change_marker() if self.history is not None else None
        key = (id(config), marker)
        with self._lock:
            if key == self._key and time.monotonic() - self._at < self.ttl:
                return self._value
            self._value = self._gather(config, self.history)
            self._key, self._at = key, time.monotonic()
            return self._value


def disk_conditions(config: "Config") -> list[Condition]:
    """Watched filesystems below their docker_prune ``when_free_below``, each named (maintainer.disk)."""
    return [Condition("disk_space", False, message, job=job) for job, message in disk.low_space_conditions(config)]


def check(config: "Config", history: "History | None", cache: CatalogCache, scheduler_alive: bool,
          now: datetime | None = None) -> HealthReport:
    """The current health report (reads the history, and the catalog through the cache)."""
    now = now or datetime.now(timezone.utc)
    report = evaluate(config, now, scheduler_alive=scheduler_alive, databases=with_live_wal(cache.get()),
                      jobs=job_states(config, history))
    report.conditions += disk_conditions(config)
    return report
