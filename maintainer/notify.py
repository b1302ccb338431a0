"""Alerts: a generic JSON webhook, healthchecks.io-style ping URLs, and Apprise.

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
* apprise: the same events as the webhook, as a short message readable on a
  phone (job, database, what failed, the one line to run), to any service
  Apprise supports (Slack, Telegram, e-mail, ntfy, Matrix, Discord...). The
  message text is built by ``apprise_message``; delivery by the apprise package.

A notifier that is down is retried ``retries`` times with a short backoff and
logged; it never fails the job and never raises. URLs are secrets (they hold
tokens): they are never logged; a target is named by its type and position.
"""

from __future__ import annotations

import json
import logging
import re
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


MAX_WHAT = 200  # characters of the error in an Apprise message: a few lines on a phone, the rest is in the logs
# A "name: ..." or "name/backup: ..." prefix of an error line: the database it is about.
_SUBJECT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:/\S+)?: ")


def result_databases(result: "JobResult") -> list[str]:
    """The databases a run's events, details and error lines name, in order, each once."""
    names = [e.fields.get("database") for e in result.events]
    for key in ("backups", "drills"):
        names += [item.get("database") for item in result.details.get(key, []) if isinstance(item, dict)]
    names += [m.group(1) for line in result.errors if (m := _SUBJECT.match(line))]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def apprise_message(result: "JobResult") -> tuple[str, str]:
    """(title, body) for a phone screen: job, database, what failed, the one line to run."""
    databases = result_databases(result)
    if not result.ok:
        title = f"maintainer: {result.job} FAILED"
        what = result.errors[0] if result.errors else "the run failed"
        if len(what) > MAX_WHAT:
            what = what[:MAX_WHAT - 1] + "\u2026"
        more = f" (+{len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        lines = [f"{result.job} ({result.type}) failed after {round(result.duration, 1)}s", f"what failed: {what}{more}"]
    elif result.events:
        title = f"maintainer: {result.job}: {result.events[0].kind}"
        lines = [f"{result.job} ({result.type}) ended ok with a warning", f"what: {result.events[0].message}"]
    else:
        title = f"maintainer: {result.job} ok"
        lines = [f"{result.job} ({result.type}) ok in {round(result.duration, 1)}s"]
        lines += result.summary[:1]
    if databases:
        lines.insert(1, "database: " + ", ".join(databases))
    if not result.ok or result.events:
        lines.append(f"run: maintainer run {result.job}")
    return redact.scrub(title), redact.scrub("\n".join(lines))


def alert_message(kind: str, message: str, severity: str, fields: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of an alert outside a run, for Apprise."""
    lines = [message]
    if fields.get("database"):
        lines.append(f"database: {fields['database']}")
    if fields.get("command"):
        lines.append(f"run: {fields['command']}")
    return redact.scrub(f"maintainer {severity}: {kind}"), redact.scrub("\n".join(lines))


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
            elif target.type == "apprise" and should_send_webhook(result, on_success) and (url := _url(index, target)):
                title, body = apprise_message(result)
                self._send_apprise(index, target, url, title, body, "info" if result.ok and not result.events
                                   else ("warning" if result.ok else "failure"))

    def alert(self, kind: str, message: str, *, severity: str = "warning", **fields: Any) -> None:
        """An alert that is not the end of a run: something a long-running part of
        maintainer noticed (a gap in the WAL archive, a replication slot over its
        bound, low disk space). Webhooks get one JSON POST, Apprise targets a short
        message (``fields`` may name the ``database`` and the ``command`` to run);
        pings do not apply."""
        payload = {"alert": kind, "severity": severity, "message": message, **fields}
        for index, target in enumerate(self.spec.targets):
            if target.type == "webhook" and (url := _url(index, target)):
                body = redact.scrub(json.dumps(payload, default=str, ensure_ascii=False))
                self._send(index, target, url, body.encode(), "application/json")
            elif target.type == "apprise" and (url := _url(index, target)):
                title, body = alert_message(kind, message, severity, fields)
                self._send_apprise(index, target, url, title, body,
                                   {"critical": "failure", "error": "failure"}.get(severity, "warning"))

    def _send_apprise(self, index: int, target: "NotifyTarget", urls: str, title: str, body: str,
                      kind: str) -> bool:
        """Notify through Apprise with the same bounded retries; True when every
        service accepted it. Never raises, never logs the URL."""
        # apprise costs 0.15 s to import: only configs with an apprise target pay it, when they send.
        import apprise

        # Apprise's own log lines may name the service's host and path, which hold tokens.
        logging.getLogger("apprise").disabled = True
        name = f"apprise#{index + 1}"
        attempts = self.spec.retries + 1
        timeout = max(1.0, self.spec.timeout.total_seconds())
        error = "not sent"
        for attempt in range(1, attempts + 1):
            try:
                sender = apprise.Apprise()
                if not sender.add(urls):
                    log.warning("notify.unavailable", target=name, error="not a URL Apprise supports")
                    return False
                for service in sender:
                    service.socket_connect_timeout = service.socket_read_timeout = timeout
                if sender.notify(body=body, title=title, notify_type=kind):
                    log.debug("notify.sent", target=name, attempt=attempt)
                    return True
                error = "the service did not accept the message"
            except Exception as exc:  # noqa: BLE001 - a notifier never fails the job
                error = type(exc).__name__
            if attempt < attempts:
                self.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("notify.failed", target=name, attempts=attempts, error=redact.scrub(error))
        return False

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
