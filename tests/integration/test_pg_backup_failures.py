"""Every way a backup can fail ends as a failed run with a clear reason, no manifest,
nothing listed and nothing left behind; other databases of the job still run."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from maintainer.backup import catalog, layout
from maintainer.cli.main import main
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.pgdata import (all_files, config_for, db_entry, fill_random, load_contrivance, partial_files,
                                    pg_dump_pids, s3_storage, wait_for)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_cli(tmp_path: Path, config_doc: dict, *args: str, capsys) -> tuple[int, str, str]:
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps(config_doc))
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["--log-format", "json", "-c", str(path), *args])
    finally:  # the CLI logs to the captured stdout; detach it before capsys closes it
        logger = logging.getLogger("maintainer")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("case, expected", [
    ("wrong password", 'password authentication failed for user "postgres"'),
    ("host down", "connection refused"),
    ("missing database", 'database "no_such_db" does not exist'),
])
def test_a_backup_that_cannot_connect_fails_with_one_clear_line_and_stores_nothing(
        case, expected, postgres, tmp_path, capsys):
    entry = db_entry(postgres, "postgres")
    if case == "wrong password":
        entry["password"] = "not-the-password"
    elif case == "host down":
        entry["port"] = _free_port()
    else:
        entry["dbname"] = "no_such_db"
    doc = {"storage": {"main": {"url": f"file://{tmp_path}/store"}}, "databases": {"app": entry},
           "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["app"], "storage": "main"}}}

    code, out, err = _run_cli(tmp_path, doc, "run", "backup", capsys=capsys)

    assert code == 1
    error_lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], err
    assert "Traceback" not in err + out
    assert "not-the-password" not in err + out
    assert all_files(tmp_path / "store") == []
    code, out, _ = _run_cli(tmp_path, doc, "backups", capsys=capsys)
    assert code == 0 and "no complete backups" in out


def test_one_failing_database_fails_the_run_but_the_others_are_backed_up(postgres, tmp_path, capsys):
    load_contrivance(postgres)
    doc = {"storage": {"main": {"url": f"file://{tmp_path}/store"}},
           "databases": {"gone": db_entry(postgres, "gone_db"), "contrivance": db_entry(postgres, "contrivance")},
           "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["gone", "contrivance"],
                               "storage": "main"}}}

    code, out, err = _run_cli(tmp_path, doc, "run", "backup", capsys=capsys)

    assert code == 1
    assert "gone: FAILED" in out and "contrivance: backup " in out
    code, out, _ = _run_cli(tmp_path, doc, "backups", "--json", capsys=capsys)
    listed = json.loads(out)
    assert [b["database"] for b in listed] == ["contrivance"]


def test_pg_dump_killed_mid_stream_fails_the_run_and_leaves_no_partial_object(postgres, tmp_path):
    fill_random(postgres, "noise", 8)
    store = tmp_path / "store"
    # zstd level 12 compresses the dump's hex text at about 3 MB/s: the stream lasts seconds.
    config = config_for(f"file://{store}", {"noise": db_entry(postgres, "noise")}, job={"compression_level": 12})
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_job(config, "backup")))
    runner.start()
    wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(store)), what="the dump to stream")
    for pid in pg_dump_pids(postgres.port):
        os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)

    result = outcome["result"]
    assert not result.ok
    assert "pg_dump was killed by signal 9" in result.errors[0]
    assert all_files(store) == []
    assert catalog.list_backups(open_storage(config.storage["main"], "main")) == []


def test_s3_stopped_mid_upload_fails_the_run_stops_pg_dump_and_lists_nothing(postgres, s3_server_factory, tmp_path):
    fill_random(postgres, "noise", 12)
    s3 = s3_server_factory()
    bucket = "mid-upload"
    s3.client().create_bucket(Bucket=bucket)
    url, extra = s3_storage(s3, bucket)
    config = config_for(url, {"noise": db_entry(postgres, "noise")}, job={"compression_level": 12}, storage_extra=extra)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_job(config, "backup")))
    runner.start()
    wait_for(lambda: s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads"), what="a multipart upload")
    s3.stop()
    runner.join(timeout=180)

    result = outcome["result"]
    assert not result.ok
    assert "noise: " in result.errors[0] and "S3" in result.errors[0]
    assert pg_dump_pids(postgres.port) == []
    s3.start()  # an empty server again: nothing of the failed run can be listed
    s3.client().create_bucket(Bucket=bucket)
    assert catalog.list_backups(open_storage(config.storage["main"], "main")) == []


def test_the_next_run_aborts_untraceable_stale_uploads_and_keeps_what_a_live_run_may_be_writing(
        postgres, s3_server, s3_bucket):
    """Runs killed mid-dump are covered by test_leftovers_killed_runs; here, what no
    record ties to a process: an upload of an older version (moto dates every
    upload long ago, so it is stale), and a dump stored a moment ago without a
    manifest, which a live run may still be finishing."""
    load_contrivance(postgres)
    url, extra = s3_storage(s3_server, s3_bucket)
    config = config_for(url, {"contrivance": db_entry(postgres, "contrivance")}, storage_extra=extra)
    client = s3_server.client()
    dead = layout.backup_prefix("contrivance", "20260101T000000Z")
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=f"backups/{dead}{layout.DUMP}")
    client.upload_part(Bucket=s3_bucket, Key=f"backups/{dead}{layout.DUMP}", UploadId=upload["UploadId"],
                       PartNumber=1, Body=b"x" * 1024)
    busy = layout.backup_prefix("contrivance", "20260101T000001Z")
    client.put_object(Bucket=s3_bucket, Key=f"backups/{busy}{layout.DUMP}", Body=b"dump without manifest yet")
    storage = open_storage(config.storage["main"], "main")
    assert catalog.list_backups(storage) == []  # never listed, even before clean-up

    result = run_job(config, "backup")

    assert result.ok, result.errors
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert not any(dead in k for k in keys)
    assert f"backups/{busy}{layout.DUMP}" in keys
    (listed,) = catalog.list_backups(storage)  # this run's backup only
    assert listed.id != "20260101T000001Z"
