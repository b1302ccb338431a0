"""What every job is: a class with one ``run(ctx)`` that returns a JobResult.

The same job code runs from ``maintainer run NAME``, from the daemon and from
the tests; nothing here knows which one called it.
"""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from maintainer import storage as storage_backends
from maintainer.errors import Interrupted, MaintainerError
from maintainer.logs import EventLogger, get_logger

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.storage.base import Storage


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: 20261126T201500Z-1a2b3c."""
    now = now or utcnow()
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Event:
    """Something a notifier must hear about even when the run succeeded
    (a suspicious backup, for example)."""

    kind: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    job: str
    type: str
    run_id: str
    started: datetime
    finished: datetime | None = None
    status: str = "ok"  # ok | failed
    summary: list[str] = field(default_factory=list)  # lines for a person
    errors: list[str] = field(default_factory=list)  # one line each
    figures: dict[str, float | int] = field(default_factory=dict)  # bytes, counts, durations
    details: dict[str, Any] = field(default_factory=dict)  # structured, for --json and history
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def duration(self) -> float:
        end = self.finished or utcnow()
        return (end - self.started).total_seconds()

    def fail(self, message: str) -> None:
        self.status = "failed"
        self.errors.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "type": self.type, "run_id": self.run_id, "status": self.status,
            "started": self.started.isoformat(), "finished": self.finished.isoformat() if self.finished else None,
            "duration": round(self.duration, 3), "summary": self.summary, "errors": self.errors,
            "figures": self.figures, "details": self.details,
            "events": [{"kind": e.kind, "message": e.message, **e.fields} for e in self.events],
        }


class RunContext:
    """What a job may use while it runs: the config, its storage, a cancel flag."""

    def __init__(self, config: "Config", job_name: str, run_id: str, *, dry_run: bool = False,
                 cancel: threading.Event | None = None,
                 run_other: Callable[[str, str], "JobResult"] | None = None):
        self.config = config
        self.job_name = job_name
        self.run_id = run_id
        self.dry_run = dry_run
        self.cancel = cancel or threading.Event()
        # How this run starts another configured job (an update's backup first): the
        # runner passes itself in, so that jobs never import the layer above them.
        self._run_other = run_other
        self.log: EventLogger = get_logger(f"job.{job_name}")
        self._storages: dict[str, "Storage"] = {}

    def storage(self, name: str) -> "Storage":
        """The named storage backend from the config, opened once per run."""
        if name not in self._storages:
            self._storages[name] = storage_backends.open_storage(self.config.storage[name], name=name)
        return self._storages[name]

    def run_other(self, job_name: str, trigger: str) -> "JobResult":
        """Run another configured job now, through the runner (history, alerts, its
        timeout), sharing this run's cancel flag. MaintainerError outside a runner."""
        if self._run_other is None:
            raise MaintainerError(f"job {self.job_name} can start {job_name} only when run by the runner")
        return self._run_other(job_name, trigger)

    def check_cancelled(self) -> None:
        """Raise Interrupted when the run has been asked to stop."""
        if self.cancel.is_set():
            raise Interrupted(f"job {self.job_name} was stopped")


class Job(ABC):
    """One configured job. Subclasses set ``type_name`` and implement ``run``."""

    type_name: ClassVar[str]

    def __init__(self, name: str, spec: Any, config: "Config"):
        self.name = name
        self.spec = spec
        self.config = config

    def new_result(self, ctx: RunContext) -> JobResult:
        return JobResult(job=self.name, type=self.type_name, run_id=ctx.run_id, started=utcnow())

    @abstractmethod
    def run(self, ctx: RunContext) -> JobResult:
        """Do the work (or, with ctx.dry_run, only plan it) and return the result.

        Expected failures are recorded in the result (``result.fail``) or raised
        as MaintainerError; the runner turns either into a failed run.
        """
