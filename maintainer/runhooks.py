"""What happens around every real run, from the daemon or ``maintainer run``:
the run history row and the notifications.

Neither may ever fail the run: a missing state directory or a notifier that
is down is logged and the run goes on.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from maintainer.history import history_for
from maintainer.logs import get_logger
from maintainer.notify import notifier_for

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.jobs.base import JobResult

log = get_logger("hooks")


class RunHooks:
    def __init__(self, config: "Config", job_spec: Any, history=None, notifier=None):
        self.config = config
        self.job_spec = job_spec
        self.history = history
        self.notifier = notifier

    @classmethod
    def for_config(cls, config: "Config", job_name: str, job_spec: Any = None) -> "RunHooks":
        spec = job_spec if job_spec is not None else config.jobs.get(job_name)
        return cls(config, spec, history_for(config), notifier_for(config.notify))

    def started(self, job: str, type_: str, run_id: str, started: datetime, trigger: str = "manual") -> None:
        if self.history is not None:
            try:
                self.history.record_start(job, type_, run_id, started, trigger)
            except Exception as exc:  # noqa: BLE001 - history must never fail a run
                log.warning("history.write_failed", error=f"{type(exc).__name__}: {exc}")
        if self.notifier is not None:
            try:
                self.notifier.run_started(job, run_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("notify.crashed", error=f"{type(exc).__name__}: {exc}")

    def finished(self, result: "JobResult") -> None:
        if self.history is not None:
            try:
                self.history.record_result(result)
            except Exception as exc:  # noqa: BLE001
                log.warning("history.write_failed", error=f"{type(exc).__name__}: {exc}")
        if self.notifier is not None:
            try:
                override = getattr(self.job_spec, "notify_success", None)
                self.notifier.run_finished(result, override)
            except Exception as exc:  # noqa: BLE001
                log.warning("notify.crashed", error=f"{type(exc).__name__}: {exc}")
