"""Restore drills against the real Docker engine, a real PostgreSQL source and S3 (moto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from maintainer.backup import catalog
from maintainer.backup.manifest import TableCount
from maintainer.config.models import Config
from maintainer.runner import run_job

from support.scenarios import (REPO, config_data, drill_containers, load_contrivance, make_backup, s3_config, storage_of,
                                drill_job, test_labels, write_config)

pytestmark = pytest.mark.integration


@pytest.fixture
def source(postgres):
    load_contrivance(postgres)
    return postgres


def setup(s3_server, s3_bucket, tmp_path, source, **job):
    config = s3_config(s3_server, s3_bucket, tmp_path, source, jobs={"drill": drill_job(**job)})
    storage = storage_of(config)
    manifest = make_backup(config)
    return config, storage, manifest


def volumes_of(container) -> list[str]:
    return [m["Name"] for m in container.attrs.get("Mounts", []) if m.get("Type") == "volume"]


def assert_no_volumes(docker_client, names):
    left = {v.name for v in docker_client.volumes.list()} & set(names)
    assert not left, f"volumes left behind: {left}"


def test_a_drill_passes_on_a_good_backup_and_records_it(docker_client, s3_server, s3_bucket, tmp_path, source):
    config, storage, manifest = setup(s3_server, s3_bucket, tmp_path, source, amcheck=True)

    result = run_job(config, "drill")

    assert result.ok, result.errors
    [record] = catalog.list_backups(storage, "contrivance")[0].verifications
    assert record.passed and record.backup_id == manifest.id and record.run_id == result.run_id
    names = {c.name: c for c in record.checks}
    for name in ("checksum", "globals", "pg_restore", "row_counts", "object_counts", "amcheck",
                 "sql:roles_restored", "sql:tables_owned_by_app_role", "sql:audit_log_fresh"):
        assert names[name].passed, (name, names[name].detail)
    assert record.restore_seconds > 0 and record.bytes_restored >= manifest.object("dump").raw_size
    assert record.backup_age_seconds >= 0 and record.overhead_seconds > 0
    assert record.image == "maintainer-test/postgres:15"
    assert record.model_extra["tmpfs"] is True  # a small backup fits in memory: tmpfs "auto"
    assert catalog.list_backups(storage, "contrivance")[0].verified
    assert drill_containers(docker_client, result.run_id) == []


def test_a_flipped_byte_in_the_stored_dump_fails_with_a_checksum_error(docker_client, s3_server, s3_bucket,
                                                                        tmp_path, source):
    config, storage, manifest = setup(s3_server, s3_bucket, tmp_path, source)
    key = manifest.object("dump").key
    data = bytearray(storage.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    storage.put(key, bytes(data))

    result = run_job(config, "drill")

    assert not result.ok
    assert "checksum" in result.errors[0] and "SHA-256 mismatch" in result.errors[0]
    [record] = catalog.list_backups(storage, "contrivance")[0].verifications
    assert record.result == "failed" and [c.name for c in record.checks] == ["checksum"]
    assert drill_containers(docker_client, result.run_id) == []


def test_a_manifest_whose_row_counts_disagree_fails_the_row_check(docker_client, s3_server, s3_bucket,
                                                                  tmp_path, source):
    config, storage, manifest = setup(s3_server, s3_bucket, tmp_path, source)
    edited = manifest.model_copy(deep=True)
    edited.row_counts["app.builds"] = TableCount(rows=manifest.row_counts["app.builds"].rows + 7, exact=True)
    catalog.write_manifest(storage, edited)

    result = run_job(config, "drill")

    assert not result.ok
    assert "row_counts" in result.errors[0] and "app.builds" in result.errors[0]
    record = catalog.list_backups(storage, "contrivance")[0].verifications[0]
    checks = {c.name: c.passed for c in record.checks}
    assert checks["row_counts"] is False and checks["pg_restore"] is True and checks["object_counts"] is True


@pytest.fixture
def webhook():
    """A webhook receiver on 127.0.0.1: (url, list of received JSON bodies)."""
    import http.server
    import json
    import threading

    received: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_failing_sql_check_fails_the_drill_is_named_and_notified(docker_client, s3_server, s3_bucket, tmp_path,
                                                                   source, webhook):
    extra = tmp_path / "extra.sql"
    extra.write_text("-- check: no_failed_builds\n-- expect: rows = 0\n"
                     "SELECT id FROM app.builds WHERE status = 'failed';\n")
    url, received = webhook
    config, storage, _ = setup(s3_server, s3_bucket, tmp_path, source, extra_checks=[str(extra)])
    config = config.model_copy(update={"notify": config.notify.model_validate(
        {"targets": [{"type": "webhook", "url": url}], "retries": 0})})

    result = run_job(config, "drill")

    assert not result.ok
    assert "sql:no_failed_builds" in result.errors[0] and "expected rows = 0" in result.errors[0]
    assert any("sql:no_failed_builds" in json.dumps(body) for body in received), received
    record = catalog.list_backups(storage, "contrivance")[0].verifications[0]
    assert {c.name for c in record.checks if not c.passed} == {"sql:no_failed_builds"}
    assert drill_containers(docker_client, result.run_id) == []


def test_a_drill_that_times_out_leaves_no_container_or_volume(docker_client, s3_server, s3_bucket, tmp_path,
                                                               source):
    # On disk (not tmpfs), so the drill has a data volume whose removal is checked.
    config, storage, _ = setup(s3_server, s3_bucket, tmp_path, source, timeout="1s", tmpfs=False)
    seen: list = []

    # Record the container's volumes while it exists, from a second thread.
    import threading

    stop = threading.Event()

    def watch():
        for _ in range(200):
            if stop.is_set():
                return
            for c in docker_client.api.containers(all=True, filters={"label": "maintainer.drill=1"}):
                if (c.get("Labels") or {}).get("maintainer.test.pid") == str(os.getpid()):
                    seen.append([m["Name"] for m in c.get("Mounts", []) if m.get("Type") == "volume"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_job(config, "drill")
    finally:
        stop.set()
        watcher.join()

    assert not result.ok and "timed out after 1 s" in result.errors[0]
    assert drill_containers(docker_client, result.run_id) == []
    assert seen and any(seen), "the drill container (with its data volume) was never seen"
    assert_no_volumes(docker_client, [v for vols in seen for v in vols])
    assert catalog.list_backups(storage, "contrivance")[0].verifications == []


def test_a_drill_killed_with_sigterm_leaves_no_container_or_volume(docker_client, s3_server, s3_bucket, tmp_path,
                                                                    postgres):
    load_contrivance(postgres, scale=20)  # big enough that the restore is still running when stopped
    data = config_data(s3_server, s3_bucket, tmp_path, postgres, jobs={"drill": drill_job(tmpfs=False)})
    config_file = write_config(tmp_path, data)
    make_backup(s3_config(s3_server, s3_bucket, tmp_path, postgres))

    proc = subprocess.Popen([sys.executable, "-m", "maintainer", "--config", str(config_file), "--log-format",
                             "json", "run", "drill"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        container = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and container is None:
            for c in docker_client.api.containers(filters={"label": "maintainer.drill=1"}):
                if (c.get("Labels") or {}).get("maintainer.drill.pid") == str(proc.pid):
                    container = docker_client.containers.get(c["Id"])
            time.sleep(0.1)
        assert container is not None, "the drill container never started"
        time.sleep(1.0)  # inside the start-up or restore
        volumes = volumes_of(container)
        assert volumes, "an on-disk drill has a data volume"
        run_id = container.labels["maintainer.run_id"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err.decode()
    assert b"interrupted" in out + err
    assert drill_containers(docker_client, run_id) == []
    assert_no_volumes(docker_client, volumes)


def test_the_sweep_removes_drills_of_dead_runs_but_not_of_running_ones(docker_client, pg_image):
    from maintainer.restore.container import PID_LABEL, PID_START_LABEL, sweep_leftovers, owner_labels

    dead = subprocess.Popen(["true"])
    dead.wait()
    made = []
    try:
        for pid_label, name in ((str(dead.pid), "dead"), (None, "alive")):
            labels = {**test_labels(), **owner_labels(f"sweep-{name}-{os.getpid()}", time.time() + 3600)}
            if pid_label:
                labels[PID_LABEL] = pid_label
                labels.pop(PID_START_LABEL, None)
            made.append(docker_client.containers.create(pg_image, command=["sleep", "60"], entrypoint=[],
                                                        labels=labels, name=f"maintainer-test-sweep-{name}-{os.getpid()}"))
        old_labels = {**test_labels(), **owner_labels(f"sweep-old-{os.getpid()}", time.time() - 10)}
        made.append(docker_client.containers.create(pg_image, command=["sleep", "60"], entrypoint=[],
                                                    labels=old_labels, name=f"maintainer-test-sweep-old-{os.getpid()}"))

        removed = sweep_leftovers(docker_client)

        assert f"maintainer-test-sweep-dead-{os.getpid()}" in removed
        assert f"maintainer-test-sweep-old-{os.getpid()}" in removed  # past its deadline
        assert f"maintainer-test-sweep-alive-{os.getpid()}" not in removed
        left = {c.name for c in docker_client.containers.list(all=True, filters={"label": "maintainer.drill=1"})}
        assert f"maintainer-test-sweep-alive-{os.getpid()}" in left
    finally:
        for c in made:
            try:
                c.remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - already removed by the sweep
                pass


def test_the_drill_image_follows_the_backups_server_major(docker_client, s3_server, s3_bucket, tmp_path, pg17):
    load_contrivance(pg17)
    data = config_data(s3_server, s3_bucket, tmp_path, pg17, jobs={"drill": drill_job()})
    # pg_dump 17 runs inside the PostgreSQL 17 container (the local one is 15).
    data["databases"]["contrivance"]["client"] = {"mode": "exec", "container": pg17.container.name}
    config = Config.model_validate(data)
    manifest = make_backup(config)
    assert manifest.server_major == 17

    result = run_job(config, "drill")

    assert result.ok, result.errors
    [record] = catalog.list_backups(storage_of(config), "contrivance")[0].verifications
    assert record.passed and record.image == "maintainer-test/postgres:17"
    assert drill_containers(docker_client, result.run_id) == []
