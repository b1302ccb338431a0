"""Apprise alerts delivered for real: Apprise's generic json:// and form:// targets
post to a receiver on 127.0.0.1 started by the test."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from maintainer import redact
from maintainer.config.models import NotifySpec, NotifyTarget
from maintainer.jobs.base import JobResult, utcnow
from maintainer.notify import Notifier
from support.http_receiver import Receiver
from support.s3 import free_port

pytestmark = pytest.mark.integration

MAINTAINER = str(Path(sys.executable).parent / "maintainer")


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def maintainer_logs(caplog):
    """Records of maintainer's logger (it does not propagate outside tests)."""
    logger = logging.getLogger("maintainer")
    logger.propagate = True
    with caplog.at_level(logging.DEBUG, logger="maintainer"):
        yield caplog
    logger.propagate = False


def failed_result(error: str = "contrivance: pg_dump exited 1") -> JobResult:
    r = JobResult("backup", "pg_backup", "run-1", utcnow())
    r.fail(error)
    r.finished = utcnow()
    return r


def test_a_failure_arrives_as_json_and_as_a_form_with_the_secrets_redacted(receiver):
    redact.register("db-password-9f8e7d")
    try:
        target = NotifyTarget(type="apprise", url=f"json://{receiver.address}/json/tok-json-1 "
                                                  f"form://{receiver.address}/form/tok-form-2")
        Notifier(NotifySpec(targets=[target])).run_finished(
            failed_result("contrivance: password authentication failed for db-password-9f8e7d"))
    finally:
        redact.clear()
    deliveries = sorted(receiver.wait_for(2), key=lambda d: d.path)
    form, as_json = deliveries
    assert as_json.path == "/json/tok-json-1" and as_json.content_type.startswith("application/json")
    message = json.loads(as_json.body)
    assert message["title"] == "maintainer: backup FAILED" and message["type"] == "failure"
    assert message["message"].splitlines() == [
        message["message"].splitlines()[0], "database: contrivance",
        "what failed: contrivance: password authentication failed for ***", "run: maintainer run backup"]
    assert form.path == "/form/tok-form-2" and form.form()["message"] == message["message"]
    assert all(b"db-password-9f8e7d" not in d.body for d in deliveries)


def test_successes_are_sent_only_when_asked(receiver):
    ok = JobResult("backup", "pg_backup", "run-2", utcnow(), summary=["contrivance: 3.1 MiB"])
    ok.finished = utcnow()
    target = NotifyTarget(type="apprise", url=f"json://{receiver.address}/hook")
    Notifier(NotifySpec(targets=[target])).run_finished(ok)
    Notifier(NotifySpec(on_success=True, targets=[target])).run_finished(ok)
    (delivery,) = receiver.wait_for(1)
    assert json.loads(delivery.body)["title"] == "maintainer: backup ok"


def test_an_alert_outside_a_run_reaches_apprise(receiver):
    target = NotifyTarget(type="apprise", url=f"json://{receiver.address}/hook")
    Notifier(NotifySpec(targets=[target])).alert("wal_gap", "segments missing after 0/3000000", severity="critical",
                                                 database="app", command="maintainer wal status app")
    message = json.loads(receiver.wait_for(1)[0].body)
    assert message["title"] == "maintainer critical: wal_gap" and message["type"] == "failure"
    assert message["message"].endswith("run: maintainer wal status app")


def test_a_receiver_answering_500_is_retried_until_it_accepts():
    with Receiver(fail_first=2) as receiver:
        waits: list[float] = []
        spec = NotifySpec(retries=3, targets=[NotifyTarget(type="apprise", url=f"json://{receiver.address}/hook")])
        Notifier(spec, sleep=waits.append).run_finished(failed_result())
        assert len(receiver.wait_for(3)) == 3 and waits == [1.0, 2.0]


def test_a_receiver_that_is_down_is_retried_then_logged_without_the_url(maintainer_logs):
    url = f"json://127.0.0.1:{free_port()}/hook/secret-token-5e6f7a"
    spec = NotifySpec(retries=2, timeout=timedelta(seconds=2), targets=[NotifyTarget(type="apprise", url=url)])
    waits: list[float] = []
    Notifier(spec, sleep=waits.append).run_finished(failed_result())  # returns: never raises
    assert waits == [1.0, 2.0]
    failed = list({id(r): r for r in maintainer_logs.records if r.getMessage() == "notify.failed"}.values())
    assert len(failed) == 1 and failed[0].fields["target"] == "apprise#1" and failed[0].fields["attempts"] == 3
    assert "secret-token-5e6f7a" not in maintainer_logs.text


def test_maintainer_run_alerts_through_an_apprise_url_read_from_a_secret_file(tmp_path, receiver):
    (tmp_path / "apprise_url").write_text(f"json://{receiver.address}/hook/tok-c0ffee12\n")
    config = tmp_path / "schedules.yaml"
    config.write_text(f"""
daemon: {{state_dir: {tmp_path}/state}}
notify:
  retries: 1
  targets:
    - type: apprise
      url_file: {tmp_path}/apprise_url
jobs:
  update: {{type: image_update, schedule: "0 2 * * 1", images: ["127.0.0.1:1/nothing/here:1"]}}
""")
    proc = subprocess.run([MAINTAINER, "-c", str(config), "run", "update"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    (delivery,) = receiver.wait_for(1)
    message = json.loads(delivery.body)
    assert delivery.path == "/hook/tok-c0ffee12"
    assert message["title"] == "maintainer: update FAILED"
    assert "what failed: 127.0.0.1:1/nothing/here:1" in message["message"]
    assert message["message"].endswith("run: maintainer run update")
    assert "tok-c0ffee12" not in proc.stdout + proc.stderr


def test_an_unknown_apprise_service_in_the_config_is_one_line_naming_the_place(tmp_path):
    (tmp_path / "apprise_url").write_text("nosuchservice://tok-deadbeef\n")
    config = tmp_path / "schedules.yaml"
    config.write_text(f"""
notify:
  targets:
    - type: apprise
      url_file: {tmp_path}/apprise_url
jobs:
  update: {{type: image_update, schedule: "0 2 * * 1", images: ["nginx:1.27-alpine"]}}
""")
    proc = subprocess.run([MAINTAINER, "-c", str(config), "validate"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "notify.targets[0]" in proc.stderr and "'nosuchservice://' is not a service Apprise knows" in proc.stderr
    assert "tok-deadbeef" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
