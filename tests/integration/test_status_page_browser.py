"""The status page of a real `maintainer daemon`, loaded in headless Chromium.

Its history is real: backups of a real PostgreSQL server (one of them after most
rows were deleted, so the backup job flags it), a real restore drill, a prune
scoped to this test's label, and an image update pulled from the loopback
registry. Also: an empty history, a failing database, and basic auth.
Set MAINTAINER_DOCS_SCREENSHOT=docs/images/status-page.png to refresh the
screenshot in docs/daemon.md.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import docker.errors
import pytest
import yaml

from support.docker_resources import docker_labels, unique_name
from support.pgdata import REPO, load_contrivance, psql
from support.s3 import free_port
from support.status_page import MAINTAINER, DaemonProcess, dump_dom, get, screenshot, visible_text

pytestmark = pytest.mark.integration


def run(config: Path, job: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAINTAINER, "-c", str(config), "run", job], capture_output=True, text=True, timeout=600)


def push_tiny_image(client, reference: str) -> str:
    """Import a one-file labelled image under ``reference`` and push it; its id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = str(uuid.uuid4()).encode()
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repository, tag = reference.rsplit(":", 1)
    changes = [f'LABEL "{k}"="{v}"' for k, v in docker_labels().items()]
    client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag, changes=changes)
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    return client.images.get(reference).id


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config)
        started.append(daemon)
        daemon.wait_for("http.listening")
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def write_config(tmp_path: Path, port: int, database: dict, jobs: dict, daemon: dict | None = None) -> Path:
    config = tmp_path / "schedules.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"local": {"url": f"file://{tmp_path}/backups"}},
        "databases": {"contrivance": {**database, "max_backup_age": "26h", "max_drill_age": "8d"}},
        "daemon": {"state_dir": str(tmp_path / "state"), "listen": f"127.0.0.1:{port}", **(daemon or {})},
        "jobs": jobs}))
    return config


def test_a_daemon_with_real_history_shows_backups_drill_prune_and_image_update(
        tmp_path, postgres, docker_client, registry, daemons):
    load_contrivance(postgres)
    image = f"{registry}/{unique_name('maintainer-test-base')}:1"
    made = [push_tiny_image(docker_client, image)]
    scope = unique_name("statuspage")
    port = free_port()
    config = write_config(tmp_path, port, {
        "host": postgres.host, "port": postgres.port, "user": postgres.user, "password": postgres.password,
        "dbname": "contrivance", "sslmode": "disable"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local",
                   "suspicious_drop": 0.5},
        "drill": {"type": "restore_drill", "schedule": "30 5 * * *", "databases": ["contrivance"],
                  "storage": "local", "image": "maintainer-test/postgres:{major}",
                  "checks_dir": str(REPO / "restore" / "checks"), "memory": "1g", "cpus": 1,
                  "labels": docker_labels()},
        "prune": {"type": "docker_prune", "schedule": "0 5 * * *", "label_filter": [f"maintainer.test.scope={scope}"]},
        "update-images": {"type": "image_update", "schedule": "0 2 * * 1", "images": [image]}})
    try:
        for job in ("backup", "backup", "backup", "backup", "drill"):
            assert run(config, job).returncode == 0
        psql(postgres, "DELETE FROM audit.events; DELETE FROM app.artifacts; DELETE FROM app.deployments; "
                    "DELETE FROM app.builds", dbname="contrivance")
        flagged = run(config, "backup")
        assert flagged.returncode == 0 and "suspicious" in flagged.stdout
        # A new digest under the same tag in the registry, while the engine keeps the first image.
        newer = push_tiny_image(docker_client, image)
        docker_client.images.remove(newer, force=True)
        docker_client.images.get(made[0]).tag(*image.rsplit(":", 1))
        assert run(config, "prune").returncode == 0
        assert run(config, "update-images").returncode == 0

        daemon = daemons(config)
        url = f"http://127.0.0.1:{port}/"
        dom = dump_dom(url, tmp_path / "chromium")
        text = visible_text(dom)
        assert "This page has no authentication" in text
        section = visible_text(re.search(r'<section class="db" id="db-contrivance">.*?</section>', dom, re.S).group(0))
        assert re.search(r"contrivance OK postgres@127\.0\.0\.1:\d+/contrivance", section), section
        assert re.search(r"Newest backup \d{8}T\d{6}Z, [\d.]+s ago: [\d.]+ KiB, [\d,]+ rows, took [\d.]+s, "
                         r"not verified yet SUSPICIOUS: ", section), section
        assert "(5 complete backups)" in section
        assert re.search(r"Newest passed drill [\dhms.]+ ago .* RTO [\d.]+s, checks (\d+)/\1 passed", section), section
        assert dom.count('class="bar flagged"') == 1  # the suspicious backup, red in the size chart
        assert len(re.findall(r'<rect class="bar', dom)) == 5 + 1  # five backups, one drill
        jobs = {name: visible_text(row) for name, row in re.findall(r'<tr id="job-([\w-]+)">(.*?)</tr>', dom, re.S)}
        assert re.match(r"backup pg_backup ok [\d.]+s ago, [\d.]+s ok .* ok .* \d{4}-\d\d-\d\d 03:15 UTC \(in ",
                        jobs["backup"]), jobs["backup"]
        assert jobs["drill"].startswith("drill restore_drill ok ")
        assert "removed 0 objects, reclaimed 0 B" in text
        assert "update-images: ok" in text and "1 updated, 0 current, 0 failed" in text
        assert postgres.password not in dom
        assert "<script" not in dom

        shot = screenshot(url, tmp_path / "status-page.png", tmp_path / "chromium")
        if os.environ.get("MAINTAINER_DOCS_SCREENSHOT"):
            shutil.copyfile(shot, REPO / os.environ["MAINTAINER_DOCS_SCREENSHOT"])
        assert postgres.password not in "".join(daemon.lines)
    finally:
        for image_id in made + [i.id for i in docker_client.images.list(image.rsplit(":", 1)[0])]:
            try:
                docker_client.images.remove(image_id, force=True)
            except docker.errors.APIError:
                pass


def test_an_empty_history_renders_a_page_that_says_nothing_has_run(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, port, {"host": "127.0.0.1", "port": free_port()}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}})
    daemons(config)
    text = visible_text(dump_dom(f"http://127.0.0.1:{port}/", tmp_path / "chromium"))
    for expected in ("maintainer FAILING", "No run history yet", "database contrivance: no complete backup yet",
                     "no passed restore drill yet (no restore_drill job covers it)", "no backups yet",
                     "no restore drills yet", "never run", "no prune has run", "no image update has run"):
        assert expected in text, expected


def test_a_failing_database_shows_the_reason_and_the_jobs_error(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, port, {"host": "127.0.0.1", "port": free_port(), "password": "pw-hidden-4242"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}},
        daemon={"failure_threshold": 1})
    failed = run(config, "backup")
    assert failed.returncode == 1
    daemons(config)
    dom = dump_dom(f"http://127.0.0.1:{port}/", tmp_path / "chromium")
    text = visible_text(dom)
    assert "contrivance FAILING" in text and "/health answers 503" in text
    assert "database contrivance: no complete backup yet" in text
    row = visible_text(re.search(r'<tr id="job-backup">(.*?)</tr>', dom, re.S).group(1))
    assert re.match(r"backup pg_backup failed [\d.]+s ago, [\d.]+s contrivance: .*refused", row), row
    assert "job backup failed its last 1 runs" in text
    assert "pw-hidden-4242" not in dom


def test_basic_auth_guards_the_page_but_not_health_or_metrics(tmp_path, daemons):
    port = free_port()
    (tmp_path / "page_password").write_text("page-pass-7d1e\n")
    config = write_config(tmp_path, port, {"host": "127.0.0.1"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}},
        daemon={"status_page": {"basic_auth": {"username": "ops", "password_file": str(tmp_path / "page_password")}}})
    daemons(config)
    url = f"http://127.0.0.1:{port}"
    code, headers, _ = get(url + "/")
    assert code == 401 and headers["WWW-Authenticate"].startswith("Basic")
    wrong = "Basic " + base64.b64encode(b"ops:nope").decode()
    assert get(url + "/", {"Authorization": wrong})[0] == 401
    right = "Basic " + base64.b64encode(b"ops:page-pass-7d1e").decode()
    code, headers, body = get(url + "/", {"Authorization": right})
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"protected by HTTP basic authentication" in body and b"page-pass-7d1e" not in body
    assert get(url + "/health")[0] == 503 and get(url + "/metrics")[0] == 200


def test_the_page_is_read_only_and_can_be_switched_off(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, port, {"host": "127.0.0.1"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}})
    daemon = daemons(config)
    request = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=30)
    assert request.stdout == "405"
    daemon.stop()
    port = free_port()
    config = write_config(tmp_path, port, {"host": "127.0.0.1"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}},
        daemon={"status_page": {"enabled": False}})
    daemons(config)
    assert get(f"http://127.0.0.1:{port}/")[0] == 404
    assert get(f"http://127.0.0.1:{port}/health")[0] == 503


def test_a_basic_auth_password_that_cannot_be_read_closes_the_page_instead_of_opening_it(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, port, {"host": "127.0.0.1"}, {
        "backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}},
        daemon={"status_page": {"basic_auth": {"username": "ops", "password_file": str(tmp_path / "missing")}}})
    daemon = daemons(config)
    right = "Basic " + base64.b64encode(b"ops:").decode()
    assert get(f"http://127.0.0.1:{port}/")[0] == 503
    assert get(f"http://127.0.0.1:{port}/", {"Authorization": right})[0] == 503
    assert get(f"http://127.0.0.1:{port}/health")[0] == 503  # answers, and judges the backups as before
    daemon.wait_for("http.page_auth_unavailable")
