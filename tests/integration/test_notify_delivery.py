"""Alerts sent over real HTTP to a receiver on 127.0.0.1, from a real ``maintainer run``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from maintainer.config.models import NotifySpec, NotifyTarget
from maintainer.jobs.base import JobResult, utcnow
from maintainer.notify import Notifier

pytestmark = pytest.mark.integration

MAINTAINER = str(Path(sys.executable).parent / "maintainer")


class Receiver:
    """A small HTTP server on 127.0.0.1 that records requests; it can fail the first N."""

    def __init__(self, fail_first: int = 0):
        self.requests: list[tuple[str, bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, body))
                code = 500 if len(receiver.requests) <= receiver.fail_first else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def failed_result():
    r = JobResult("backup", "pg_backup", "run-1", utcnow())
    r.fail("pg_dump exited 1")
    r.finished = utcnow()
    return r


def test_a_notifier_that_answers_500_is_retried_a_bounded_number_of_times():
    receiver = Receiver(fail_first=2)
    try:
        spec = NotifySpec(retries=3, targets=[NotifyTarget(type="webhook", url=receiver.url + "/hook")])
        waits = []
        Notifier(spec, sleep=waits.append).run_finished(failed_result())
        assert len(receiver.requests) == 3  # two 500s, then delivered
        assert waits == [1.0, 2.0]
        assert json.loads(receiver.requests[-1][1])["error"] == "pg_dump exited 1"
    finally:
        receiver.close()


def test_a_notifier_that_is_down_gives_up_after_its_retries_without_raising_or_leaking_the_url(caplog):
    from support.s3 import free_port  # a port nothing listens on

    url = f"http://127.0.0.1:{free_port()}/secret-token-abc123"
    spec = NotifySpec(retries=2, timeout=timedelta(seconds=2), targets=[NotifyTarget(type="webhook", url=url)])
    waits = []
    import logging

    with caplog.at_level(logging.WARNING, logger="maintainer"):
        logging.getLogger("maintainer").propagate = True
        try:
            Notifier(spec, sleep=waits.append).run_finished(failed_result())
        finally:
            logging.getLogger("maintainer").propagate = False
    assert waits == [1.0, 2.0]
    # caplog may see a record both on the "maintainer" logger and, propagated, on the root.
    failed = list({id(r): r for r in caplog.records if r.getMessage() == "notify.failed"}.values())
    assert len(failed) == 1 and failed[0].fields["target"] == "webhook#1" and failed[0].fields["attempts"] == 3
    assert "secret-token-abc123" not in caplog.text


def write_config(tmp_path: Path, receiver: Receiver, on_success: bool = False) -> Path:
    config = tmp_path / "schedules.yaml"
    (tmp_path / "hook_url").write_text(receiver.url + "/hook/tok-9f8e7d6c")
    config.write_text(f"""
daemon:
  state_dir: {tmp_path}/state
notify:
  on_success: {str(on_success).lower()}
  retries: 1
  timeout: 5s
  targets:
    - type: webhook
      url_file: {tmp_path}/hook_url
    - type: ping
      url: {receiver.url}/ping/uuid-1234
jobs:
  update:
    type: image_update
    schedule: "0 2 * * 1"
    images: ["127.0.0.1:1/nothing/here:1"]
""")
    return config


def test_maintainer_run_records_the_run_and_alerts_a_failure(tmp_path, receiver):
    config = write_config(tmp_path, receiver)
    proc = subprocess.run([MAINTAINER, "-c", str(config), "run", "update"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    paths = [path for path, _ in receiver.requests]
    assert paths == ["/ping/uuid-1234/start", "/hook/tok-9f8e7d6c", "/ping/uuid-1234/fail"]
    hook = json.loads(receiver.requests[1][1])
    assert hook["job"] == "update" and hook["status"] == "failed" and hook["error"]
    assert "tok-9f8e7d6c" not in proc.stdout + proc.stderr
    status = subprocess.run([MAINTAINER, "-c", str(config), "status", "--json"], capture_output=True, text=True,
                            timeout=60)
    job = json.loads(status.stdout)["jobs"][0]
    assert job["last_run"]["status"] == "failed" and job["consecutive_failures"] == 1


def test_maintainer_run_without_a_usable_state_dir_still_runs_and_alerts(tmp_path, receiver):
    config = write_config(tmp_path, receiver)
    (tmp_path / "state").write_text("a file where the state directory should be")
    proc = subprocess.run([MAINTAINER, "-c", str(config), "run", "update"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "history.unavailable" in proc.stdout
    assert [path for path, _ in receiver.requests][-1] == "/ping/uuid-1234/fail"
