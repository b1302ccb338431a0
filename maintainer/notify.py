"""Alerts: a generic JSON webhook and healthchecks.io-style ping URLs.

What is sent, and when:

* webhook: one JSON POST when a run ends, if it failed, carries events (a
  suspicious backup, a failed drill) or succeeded with ``on_success`` set
  (``notify_success`` on a job overrides it). Body: job, type, run_id, status,
  summary, error, events, figures, started, finished, duration.
* alert: one JSON POST (alert, severity, message, fields) to webhooks when
  something outside a run needs a person (``Notifier.alert``).
* ping: ``<url>/start`` when a run starts, ``<url>`` when it succeeds and
  ``<url>/fail`` when it fails, for every run: a dead man's switch needs the
  success pings, so ``on_success`` does not apply to pings.

A notifier that is down is retried ``retries`` times with a short backoff and
logged; it never fails the job and never raises. URLs are secrets (they hold
tokens): they are never logged; a target is named by its type and position.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Callable

from maintainer import redact
from maintainer.errors import MaintainerError
from maintainer.logs import get_logger

if TYPE_CHECKING:
    from maintainer.config.models import NotifySpec, NotifyTarget
    from maintainer.jobs.base import JobResult

log = get_logger("notify")

USER_AGENT = "maintainer-notify"


def should_send_webhook(result: "JobResult", on_success: bool) -> bool:
    """Failures and runs with events always; successes only when asked."""
    return (not result.ok) or bool(result.events) or on_success


def webhook_payload(result: "JobResult") -> dict[str, Any]:
    return {
        "job": result.job, "type": result.type, "run_id": result.run_id, "status": result.status,
        "summary": "\n".join(result.summary), "error": "; ".join(result.errors) or None,
        "events": [{"kind": e.kind, "message": e.message, **e.fields} for e in result.events],
        "figures": result.figures, "started": result.started.isoformat(),
        "finished": result.finished.isoformat() if result.finished else None,
        "duration": round(result.duration, 3),
    }


def ping_url(base: str, phase: str) -> str:
    """healthchecks.io convention: <url>/start, <url>, <url>/fail."""
    base = base.rstrip("/")
    return {"start": f"{base}/start", "success": base, "failure": f"{base}/fail"}[phase]


class Notifier:
    """Sends to every target of a NotifySpec. ``sleep`` is injectable for tests."""

    def __init__(self, spec: "NotifySpec", *, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        self.spec = spec
        self.backoff = backoff
        self.sleep = sleep

    def run_started(self, job: str, run_id: str) -> None:
        for index, target in enumerate(self.spec.targets):
            if target.type == "ping" and (url := _url(index, target)):
                self._send(index, target, ping_url(url, "start"), f"started {job} {run_id}".encode(), "text/plain")

    def run_finished(self, result: "JobResult", notify_success: bool | None = None) -> None:
        on_success = self.spec.on_success if notify_success is None else notify_success
        for index, target in enumerate(self.spec.targets):
            if target.type == "ping" and (url := _url(index, target)):
                body = "\n".join([f"{result.job} {result.status} run {result.run_id}", *result.summary, *result.errors])
                phase = "success" if result.ok else "failure"
                self._send(index, target, ping_url(url, phase), redact.scrub(body).encode(), "text/plain")
            elif target.type == "webhook" and should_send_webhook(result, on_success) and (url := _url(index, target)):
                body = redact.scrub(json.dumps(webhook_payload(result), default=str, ensure_ascii=False))
                self._send(index, target, url, body.encode(), "application/json")

    def alert(self, kind: str, message: str, *, severity: str = "warning", **fields: Any) -> None:
        """An alert that is not the end of a run: something a long-running part of
        maintainer noticed (a gap in the WAL archive, a replication slot over its
        bound, low disk space). Webhooks get one JSON POST; pings do not apply."""
        payload = {"alert": kind, "severity": severity, "message": message, **fields}
        for index, target in enumerate(self.spec.targets):
            if target.type == "webhook" and (url := _url(index, target)):
                body = redact.scrub(json.dumps(payload, default=str, ensure_ascii=False))
                self._send(index, target, url, body.encode(), "application/json")

    def _send(self, index: int, target: "NotifyTarget", url: str, body: bytes, content_type: str) -> bool:
        """POST with bounded retries; True when a 2xx arrived. Never raises."""
        name = f"{target.type}#{index + 1}"
        attempts = self.spec.retries + 1
        timeout = max(1.0, self.spec.timeout.total_seconds())
        error = "not sent"
        for attempt in range(1, attempts + 1):
            try:
                request = urllib.request.Request(url, data=body, method="POST", headers={
                    "Content-Type": content_type, "User-Agent": USER_AGENT, **target.headers})
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
                    response.read(1024)
                log.debug("notify.sent", target=name, attempt=attempt)
                return True
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = _reason(exc)
            if attempt < attempts:
                self.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("notify.failed", target=name, attempts=attempts, error=redact.scrub(error))
        return False


def _url(index: int, target: "NotifyTarget") -> str | None:
    """The target's URL, or None (logged) when its secret file could not be read."""
    try:
        return target.url.get_secret_value()
    except MaintainerError as exc:
        log.warning("notify.unavailable", target=f"{target.type}#{index + 1}", error=exc.message)
        return None


def _reason(exc: BaseException) -> str:
    """A reason without the URL in it (URLError's str can carry the host)."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__ if not isinstance(reason, str) else reason


def notifier_for(spec: "NotifySpec") -> Notifier | None:
    return Notifier(spec) if spec.targets else None
