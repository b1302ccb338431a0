"""When alerts are sent, and what they say (the sending itself: tests/integration/test_notify.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from maintainer.jobs.base import Event, JobResult
from maintainer.notify import ping_url, should_send_webhook, webhook_payload

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 3, 15, tzinfo=timezone.utc)


def result(status="ok", events=()):
    r = JobResult("backup", "pg_backup", "run-1", T0, T0 + timedelta(seconds=12), summary=["stored 3 MiB"],
                  figures={"bytes": 3 << 20}, events=list(events))
    if status == "failed":
        r.fail("pg_dump exited 1")
    return r


@pytest.mark.parametrize("status, events, on_success, sent", [
    ("failed", [], False, True),
    ("ok", [Event("suspicious_backup", "rows fell by 80%")], False, True),
    ("ok", [], False, False),
    ("ok", [], True, True),
])
def test_failures_and_events_always_notify_successes_only_when_asked(status, events, on_success, sent):
    assert should_send_webhook(result(status, events), on_success) is sent


def test_the_webhook_body_has_job_status_summary_and_error():
    body = webhook_payload(result("failed", [Event("drill_failed", "check orders_count failed", {"database": "app"})]))
    assert body["job"] == "backup" and body["status"] == "failed"
    assert body["summary"] == "stored 3 MiB" and body["error"] == "pg_dump exited 1"
    assert body["events"] == [{"kind": "drill_failed", "message": "check orders_count failed", "database": "app"}]
    assert body["duration"] == 12.0 and body["run_id"] == "run-1"


def test_ping_urls_follow_the_healthchecks_io_convention():
    assert ping_url("https://hc.example/ping/abc/", "start") == "https://hc.example/ping/abc/start"
    assert ping_url("https://hc.example/ping/abc", "success") == "https://hc.example/ping/abc"
    assert ping_url("https://hc.example/ping/abc", "failure") == "https://hc.example/ping/abc/fail"
