"""``maintainer daemon`` as a real process: /health, /metrics, healthcheck, SIGHUP, SIGTERM.

The backups it judges are real catalog entries in a local storage directory
(written through the catalog, as the backup job and drills write them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from maintainer.backup import catalog, layout
from maintainer.backup.manifest import CheckResult, Manifest, StoredObject, Verification
from maintainer.storage.local import LocalStorage
from support.s3 import free_port

pytestmark = pytest.mark.integration

MAINTAINER = str(Path(sys.executable).parent / "maintainer")


class DaemonProcess:
    def __init__(self, config: Path, tmp_path: Path):
        env = {**os.environ, "MAINTAINER_CATALOG_TTL": "1"}
        self.proc = subprocess.Popen([MAINTAINER, "-c", str(config), "--log-format", "json", "daemon"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def wait_for(self, name: str, count: int = 1, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events(name)) < count:
            assert self.proc.poll() is None or len(self.events(name)) >= count, "".join(self.lines)
            assert time.monotonic() < deadline, f"no {name} in:\n" + "".join(self.lines)
            time.sleep(0.1)
        return self.events(name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def write_config(tmp_path: Path, port: int, extra_jobs: str = "") -> Path:
    config = tmp_path / "schedules.yaml"
    config.write_text(f"""
storage:
  local: {{url: "file://{tmp_path}/backups"}}
databases:
  app: {{host: 127.0.0.1, password: pw-never-shown-1234, max_backup_age: 26h, max_drill_age: 8d}}
daemon:
  state_dir: {tmp_path}/state
  listen: 127.0.0.1:{port}
  shutdown_grace: 5s
jobs:
  backup: {{type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}}
  drill: {{type: restore_drill, schedule: "30 5 * * 0", databases: [app], storage: local}}
{extra_jobs}""")
    return config


def store_backup(root: Path, taken: datetime, *, drill_passed: bool | None = None) -> str:
    storage = LocalStorage("local", str(root))
    backup_id = layout.new_backup_id(taken)
    manifest = Manifest(
        id=backup_id, database="app", dbname="app", job="backup", run_id="r", server_version="15.10",
        server_version_num=150010, server_major=15, pg_dump_version="15.10", client="local", started=taken,
        finished=taken, duration=1.0, compression={"algorithm": "zstd", "level": 3}, maintainer_version="0.1.0",
        objects=[StoredObject(name="dump", key=layout.object_key("app", backup_id, layout.DUMP),
                              format="pg_dump-custom", raw_size=10, stored_size=7, sha256="0" * 64)],
        row_counts={}, object_counts={}, total_rows=4321, raw_size=10, stored_size=7777)
    storage.put(layout.object_key("app", backup_id, layout.DUMP), b"x" * 7)
    catalog.write_manifest(storage, manifest)
    if drill_passed is not None:
        now = datetime.now(timezone.utc)
        catalog.write_verification(storage, Verification(
            backup_id=backup_id, database="app", run_id="drill-1", result="passed" if drill_passed else "failed",
            checks=[CheckResult(name="rows", passed=drill_passed)], started=now, finished=now,
            restore_seconds=12.5, maintainer_version="0.1.0"))
    return backup_id


@pytest.fixture
def daemon_factory(tmp_path):
    procs = []

    def start(config: Path) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path)
        procs.append(d)
        d.wait_for("daemon.started")
        return d

    yield start
    for d in procs:
        d.stop()


def test_health_names_what_is_missing_until_a_fresh_backup_and_a_passed_drill_exist(tmp_path, daemon_factory):
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = daemon_factory(config)
    url = f"http://127.0.0.1:{port}/health"

    code, body = get(url)
    report = json.loads(body)
    assert code == 503
    assert {(c["check"], c["message"]) for c in report["failing"]} == {
        ("backup_age", "database app: no complete backup yet"),
        ("drill_age", "database app: no passed restore drill yet")}
    check = subprocess.run([MAINTAINER, "-c", str(config), "healthcheck"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "unhealthy: database app: no complete backup yet" in check.stderr

    store_backup(tmp_path / "backups", datetime.now(timezone.utc) - timedelta(hours=30), drill_passed=True)
    time.sleep(1.1)  # the catalog cache's TTL in this test (MAINTAINER_CATALOG_TTL=1), not a timing assertion
    code, body = get(url)
    assert code == 503
    assert [c["check"] for c in json.loads(body)["failing"]] == ["backup_age"]
    assert "is 30h00m old (max 26h00m)" in json.loads(body)["failing"][0]["message"]

    store_backup(tmp_path / "backups", datetime.now(timezone.utc) - timedelta(minutes=5))
    time.sleep(1.1)
    code, body = get(url)
    assert code == 200, body
    check = subprocess.run([MAINTAINER, "-c", str(config), "healthcheck"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "healthy"

    code, metrics = get(f"http://127.0.0.1:{port}/metrics")
    text = metrics.decode()
    assert code == 200
    assert "maintainer_scheduler_up 1.0" in text and "maintainer_healthy 1.0" in text
    assert 'maintainer_backup_newest_size_bytes{database="app"} 7777.0' in text
    assert 'maintainer_backup_newest_rows{database="app"} 4321.0' in text
    assert 'maintainer_drill_last_restore_seconds{database="app"} 12.5' in text
    assert 'maintainer_job_next_run_timestamp_seconds{job="backup"}' in text
    assert "pw-never-shown-1234" not in "".join(daemon.lines) + text
    assert [e["job"] for e in daemon.events("daemon.next_run")] == ["backup", "drill"]


def test_sighup_rejects_an_invalid_config_and_keeps_running_then_applies_a_valid_one(tmp_path, daemon_factory):
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = daemon_factory(config)
    good = config.read_text()

    config.write_text(good.replace('schedule: "15 3 * * *"', 'schedule: "99 3 * * *"'))
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = daemon.wait_for("daemon.reload_rejected")[0]
    assert "99 3 * * *" in " ".join(rejected["problems"]) and "jobs.backup.schedule" in " ".join(rejected["problems"])
    assert get(f"http://127.0.0.1:{port}/health")[0] == 503  # still answering, with the old config
    assert daemon.proc.poll() is None

    config.write_text(good + '  prune: {type: docker_prune, schedule: "0 5 * * *"}\n')
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("daemon.reloaded")
    next_runs = daemon.events("daemon.next_run")
    assert [e["job"] for e in next_runs[-3:]] == ["backup", "drill", "prune"]
    assert 'job="prune"' in get(f"http://127.0.0.1:{port}/metrics")[1].decode()


def test_sigterm_stops_the_daemon_cleanly_with_exit_code_0(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(write_config(tmp_path, port))
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    daemon.wait_for("daemon.stopped")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_a_daemon_without_a_writable_state_dir_exits_with_one_clear_line(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)
    (tmp_path / "state").write_text("not a directory")
    proc = subprocess.run([MAINTAINER, "-c", str(config), "daemon"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"Error: cannot use the run history at {tmp_path}/state/")
    assert "Traceback" not in proc.stderr
