"""Suspicious backups and retention on real storage: a sharp drop is kept but marked and
reported; retention touches only its own database, keeps the newest and the newest verified."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from maintainer.backup import catalog, layout
from maintainer.backup.manifest import CheckResult, Verification
from maintainer.config.loader import parse_config
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.pgdata import config_for, db_entry, load_contrivance, psql

pytestmark = pytest.mark.integration

KEEP_ONE = {"keep_last": 1, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def test_a_backup_that_lost_most_rows_is_kept_marked_suspicious_and_reported(postgres, tmp_path):
    load_contrivance(postgres)
    config = config_for(f"file://{tmp_path}/store", {"contrivance": db_entry(postgres, "contrivance")},
                        job={"retention": KEEP_ONE})
    assert run_job(config, "backup").ok
    psql(postgres, "TRUNCATE app.builds, audit.events CASCADE",
         dbname="contrivance")

    result = run_job(config, "backup")

    assert result.ok, result.errors
    [event] = [e for e in result.events if e.kind == "backup.suspicious"]
    assert "total rows fell" in event.message
    entries = catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")
    assert [e.suspicious for e in entries] == [True, False]  # the good one is not replaced by the suspicious one
    assert any("warning:" in line for line in result.summary)


def test_retention_keeps_the_newest_and_the_newest_verified_and_never_touches_other_databases(postgres, tmp_path):
    load_contrivance(postgres)
    psql(postgres, "CREATE DATABASE contrivance2")
    psql(postgres, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)", dbname="contrivance2")
    doc = {
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"contrivance": db_entry(postgres, "contrivance"), "contrivance2": db_entry(postgres, "contrivance2")},
        "jobs": {
            "backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["contrivance"], "storage": "main",
                       "retention": KEEP_ONE},
            "other": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["contrivance2"], "storage": "main",
                      "retention": KEEP_ONE},
        },
    }
    config = parse_config(json.dumps(doc), "test.yaml")
    storage = open_storage(config.storage["main"], "main")
    assert run_job(config, "other").ok
    assert run_job(config, "backup").ok
    [a] = catalog.list_backups(storage, "contrivance")
    now = datetime.now(timezone.utc)
    catalog.write_verification(storage, Verification(
        backup_id=a.id, database="contrivance", run_id="drill-1", result="passed",
        checks=[CheckResult(name="row counts", passed=True)], started=now, finished=now, maintainer_version="test"))
    assert run_job(config, "backup").ok
    b = catalog.list_backups(storage, "contrivance")[0]

    plan = run_job(config, "backup", dry_run=True)

    assert plan.ok
    assert any(f"would delete {layout.backup_prefix('contrivance', b.id)}" in line for line in plan.summary), plan.summary
    assert b.id in [e.id for e in catalog.list_backups(storage, "contrivance")]  # a dry run deletes nothing

    result = run_job(config, "backup")

    assert result.ok
    ids = [e.id for e in catalog.list_backups(storage, "contrivance")]
    assert len(ids) == 2 and a.id in ids and b.id not in ids
    assert not (tmp_path / "store" / layout.backup_prefix("contrivance", b.id)).exists()
    assert len(catalog.list_backups(storage, "contrivance2")) == 1
