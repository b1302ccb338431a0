"""Structured logging: JSON lines when not on a terminal, readable lines on one.

Log calls name an event and pass fields: ``log.info("backup.stored", key=k, bytes=n)``.
The job name and run id of the current run are added from context variables.
Every line passes through the secret redactor before it is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Iterator

from maintainer import redact

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

ROOT = "maintainer"


@contextlib.contextmanager
def run_context(job: str | None, run_id: str | None) -> Iterator[None]:
    """Tag every log line inside the block with the job name and run id."""
    t1, t2 = _job.set(job), _run_id.set(run_id)
    try:
        yield
    finally:
        _job.reset(t1)
        _run_id.reset(t2)


class EventLogger:
    """A thin wrapper: ``log.info(event, **fields)``."""

    def __init__(self, name: str):
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            exc_info = fields.pop("exc_info", None)
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", {}) or {})
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        if _job.get():
            out["job"] = _job.get()
        if _run_id.get():
            out["run_id"] = _run_id.get()
        for key, value in _record_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return redact.scrub(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        parts = [ts, f"{record.levelname:<7}"]
        if _job.get():
            parts.append(f"[{_job.get()}]")
        parts.append(record.getMessage())
        fields = " ".join(f"{k}={_short(v)}" for k, v in _record_fields(record).items())
        if fields:
            parts.append(fields)
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact.scrub(text)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if " " not in text else json.dumps(text)


def setup_logging(fmt: str | None = None, *, debug: bool = False, stream=None) -> None:
    """Configure the maintainer logger. ``fmt`` is json, text or None (auto by terminal)."""
    stream = stream or sys.stdout
    if fmt is None:
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger(ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    # Third-party libraries stay quiet unless debugging.
    for noisy in ("apscheduler", "botocore", "boto3", "urllib3", "docker", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
