"""Apprise targets: which URLs the config accepts, and what a phone shows (delivery:
tests/integration/test_apprise_delivery.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from maintainer import redact
from maintainer.config.models import NotifyTarget
from maintainer.jobs.base import Event, JobResult
from maintainer.notify import alert_message, apprise_message, result_databases

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 3, 15, tzinfo=timezone.utc)


def result(errors=(), events=(), job="backup", type_="pg_backup", details=None):
    r = JobResult(job, type_, "run-1", T0, T0 + timedelta(seconds=41.26), summary=["contrivance: 3.1 MiB"],
                  events=list(events), details=dict(details or {}))
    for error in errors:
        r.fail(error)
    return r


@pytest.mark.parametrize("url", ["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F", "tgram://123456789:abcdefg_hijklmnop/12315544",
                                 "mailtos://user:pass@example.com", "ntfys://ntfy.example.com/backups",
                                 "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
                                 "json://127.0.0.1:8080/hook form://127.0.0.1:8080/form"])
def test_every_apprise_service_url_is_accepted(url):
    assert NotifyTarget(type="apprise", url=url).url.get_secret_value() == url


@pytest.mark.parametrize("url, expected", [
    ("nosuch://token-abc123", "'nosuch://' is not a service Apprise knows"),
    ("just-some-token-abc123", "it is not a URL"),
])
def test_a_url_apprise_cannot_use_is_a_config_error_that_never_shows_the_url(url, expected):
    with pytest.raises(ValidationError) as info:
        NotifyTarget(type="apprise", url=url)
    messages = " ".join(e["msg"] for e in info.value.errors())
    assert expected in messages and "abc123" not in messages


def test_headers_belong_to_webhooks_not_to_apprise_urls():
    with pytest.raises(ValidationError, match="headers apply to webhook and ping"):
        NotifyTarget(type="apprise", url="json://127.0.0.1/x", headers={"X-A": "1"})


def test_webhook_urls_are_still_http_urls():
    with pytest.raises(ValidationError, match="http:// or https://"):
        NotifyTarget(type="webhook", url="slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F")


def test_a_failure_reads_as_job_database_what_failed_and_the_line_to_run():
    title, body = apprise_message(result(["contrivance: pg_dump exited 1: connection refused"]))
    assert title == "maintainer: backup FAILED"
    assert body.splitlines() == ["backup (pg_backup) failed after 41.3s", "database: contrivance",
                                 "what failed: contrivance: pg_dump exited 1: connection refused",
                                 "run: maintainer run backup"]


def test_a_suspicious_backup_names_its_database_and_the_warning():
    event = Event("backup.suspicious", "backup contrivance/X is suspicious: rows fell by 80%", {"database": "contrivance"})
    title, body = apprise_message(result(events=[event]))
    assert title == "maintainer: backup: backup.suspicious"
    assert "database: contrivance" in body and "rows fell by 80%" in body and body.endswith("run: maintainer run backup")


def test_several_errors_show_the_first_and_how_many_more():
    _, body = apprise_message(result(["app/20261126T031500Z: drill failed: check rows", "billing: timeout"],
                                     job="drill", type_="restore_drill"))
    assert "database: app, billing" in body
    assert "what failed: app/20261126T031500Z: drill failed: check rows (+1 more)" in body


def test_every_line_of_the_message_is_short_enough_for_a_phone():
    _, body = apprise_message(result(["contrivance: cannot connect"]))
    assert all(len(line) <= 80 for line in body.splitlines())


def test_databases_come_from_events_details_and_error_prefixes_but_not_sentences():
    r = result(["could not remove image x: busy", "app: failed"], events=[Event("k", "m", {"database": "b"})],
               details={"backups": [{"database": "c"}]})
    assert result_databases(r) == ["b", "c", "app"]


def test_secrets_are_redacted_from_the_message():
    redact.register("pw-abcdef-123456")
    try:
        title, body = apprise_message(result(["contrivance: password pw-abcdef-123456 rejected"]))
        _, alert = alert_message("wal_gap", "gap after pw-abcdef-123456", "critical", {"database": "app"})
    finally:
        redact.clear()
    assert "pw-abcdef-123456" not in title + body + alert and "***" in body and "***" in alert


def test_an_alert_outside_a_run_names_database_and_command():
    title, body = alert_message("wal_receiver_down", "WAL receiver stopped", "critical",
                                {"database": "app", "command": "maintainer wal status app"})
    assert title == "maintainer critical: wal_receiver_down"
    assert body.splitlines() == ["WAL receiver stopped", "database: app", "run: maintainer wal status app"]


def test_the_shipped_example_of_the_apprise_secret_is_valid():
    example = Path(__file__).resolve().parents[2] / "deploy" / "secrets" / "alert_apprise_urls.example"
    assert NotifyTarget(type="apprise", url=example.read_text().strip()).type == "apprise"


def test_a_long_error_is_cut_so_the_message_stays_short():
    _, body = apprise_message(result(["contrivance: " + "x" * 1000]))
    what = next(line for line in body.splitlines() if line.startswith("what failed: "))
    assert len(what) == len("what failed: ") + 200 and what.endswith("\u2026")
