"""`maintainer restore` run as a user would, against real PostgreSQL servers and S3 (moto)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from maintainer.backup import catalog
from maintainer.backup.manifest import CheckResult, Verification

from support.scenarios import (config_data, counts, databases, document, hold_lock, load_contrivance, make_backup,
                                run_cli, s3_config, storage_of, write_config)

pytestmark = pytest.mark.integration


@pytest.fixture
def source(postgres):
    load_contrivance(postgres)
    return postgres


def mark_verified(storage, manifest) -> None:
    now = datetime.now(timezone.utc)
    catalog.write_verification(storage, Verification(
        backup_id=manifest.id, database=manifest.database, run_id="test-" + manifest.id, result="passed",
        checks=[CheckResult(name="pg_restore", passed=True)], started=now, finished=now, maintainer_version="test"))


def prepared(s3_server, s3_bucket, tmp_path, server, *, verified=True, backup_job=True):
    # A config needs a job; without the backup job, a drill of the same storage.
    jobs = None if backup_job else {"drill": {"type": "restore_drill", "schedule": "30 5 * * *",
                                              "databases": ["contrivance"], "storage": "s3"}}
    data = config_data(s3_server, s3_bucket, tmp_path, server, backup_job=backup_job, jobs=jobs)
    config = s3_config(s3_server, s3_bucket, tmp_path, server)
    storage = storage_of(config)
    manifest = make_backup(config)
    if verified:
        mark_verified(storage, manifest)
    return write_config(tmp_path, data), storage, manifest


def ownership_and_grants(server, dbname):
    with server.connect(dbname) as conn:
        owners = {r[0] for r in conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname IN ('app', 'audit')").fetchall()}
        readonly = conn.execute("SELECT has_table_privilege('contrivance_readonly', 'app.builds', 'SELECT')").fetchone()[0]
        schema_owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'").fetchone()[0]
    return owners, readonly, schema_owner


def test_dry_run_prints_the_plan_and_touches_nothing(s3_server, s3_bucket, tmp_path, source):
    config_file, _, manifest = prepared(s3_server, s3_bucket, tmp_path, source)
    before = databases(source)

    out = run_cli(config_file, "restore", "--latest", "--dry-run", "--json")

    assert out.returncode == 0, out.stderr
    plan = document(out.stdout)
    assert plan["backup"] == manifest.id and plan["verified"] is True and plan["dry_run"] is True
    assert plan["restore_into"].startswith("contrivance_restored_") and not plan["replace"]
    assert any("pg_restore --exit-on-error --jobs=2" in s for s in plan["steps"])
    assert databases(source) == before


def test_restore_round_trips_into_a_new_database_with_owners_and_grants(s3_server, s3_bucket, tmp_path, source):
    config_file, _, manifest = prepared(s3_server, s3_bucket, tmp_path, source)
    with source.connect("contrivance") as conn:
        conn.execute("DELETE FROM audit.events WHERE id % 2 = 0")  # the live database moved on

    out = run_cli(config_file, "restore", "--latest", "--database", "contrivance")

    assert out.returncode == 0, out.stderr
    [new] = [d for d in databases(source) if d.startswith("contrivance_restored_")]
    assert f"Restored contrivance/{manifest.id} (verified" in out.stdout
    assert "row counts match the manifest" in out.stdout and "ALTER DATABASE" in out.stdout
    expected = {t: manifest.row_counts[t].rows for t in ("app.accounts", "app.builds", "app.artifacts", "audit.events")}
    assert counts(source, new) == expected
    assert counts(source, "contrivance")["audit.events"] < expected["audit.events"]  # live one untouched
    assert ownership_and_grants(source, new) == ({"contrivance_app"}, True, "contrivance_app")


def test_latest_is_the_newest_backup_and_verified_the_newest_one_a_drill_passed(s3_server, s3_bucket, tmp_path,
                                                                                 source):
    config_file, storage, old = prepared(s3_server, s3_bucket, tmp_path, source, verified=False)

    plan = document(run_cli(config_file, "restore", "--dry-run", "--json").stdout)
    assert plan["backup"] == old.id and plan["verified"] is False
    assert "not verified by a restore drill" in plan["why"]
    refused = run_cli(config_file, "restore", "--dry-run", "--verified")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: ") and "Traceback" not in refused.stderr
    assert "has been verified by a restore drill" in refused.stderr and old.id in refused.stderr

    mark_verified(storage, old)
    time.sleep(1.1)  # backup ids have one-second resolution
    newer = make_backup(s3_config(s3_server, s3_bucket, tmp_path, source))
    for flags in ((), ("--latest",)):
        plan = document(run_cli(config_file, "restore", "--dry-run", "--json", *flags).stdout)
        assert plan["backup"] == newer.id and plan["verified"] is False
    out = run_cli(config_file, "restore", "--dry-run")
    assert f"contrivance/{newer.id} (newest backup, not verified by a restore drill" in out.stdout
    plan = document(run_cli(config_file, "restore", "--dry-run", "--json", "--verified").stdout)
    assert plan["backup"] == old.id and plan["verified"] is True and "1 newer unverified" in plan["why"]
    plan = document(run_cli(config_file, "restore", "--dry-run", "--json", "--backup", old.id).stdout)
    assert plan["backup"] == old.id and "verified by a restore drill on" in plan["why"]
    before_newer = (datetime.strptime(newer.id, "%Y%m%dT%H%M%SZ")).isoformat() + "Z"
    plan = document(run_cli(config_file, "restore", "--dry-run", "--json", "--before", before_newer).stdout)
    assert plan["backup"] == old.id
    none = run_cli(config_file, "restore", "--dry-run", "--before", "2000-01-01T00:00:00Z")
    assert none.returncode == 1 and "no complete backup of contrivance older than 2000-01-01" in none.stderr
    gone = run_cli(config_file, "restore", "--dry-run", "--any")
    assert gone.returncode == 2 and "--any" in gone.stderr and "Traceback" not in gone.stderr


def test_a_failed_restore_of_the_newest_backup_names_the_newest_verified_one(s3_server, s3_bucket, tmp_path, source):
    config_file, storage, verified = prepared(s3_server, s3_bucket, tmp_path, source)
    time.sleep(1.1)
    newest = make_backup(s3_config(s3_server, s3_bucket, tmp_path, source))
    key = newest.object("dump").key
    data = bytearray(storage.get_bytes(key))
    data[len(data) // 2] ^= 0x01  # the stored dump rotted after it was written
    storage.put(key, bytes(data))
    before = databases(source)

    out = run_cli(config_file, "restore", "--latest")

    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "SHA-256 mismatch" in out.stderr and newest.id in out.stdout
    assert f"maintainer restore --backup {verified.id} --database contrivance" in out.stderr
    assert databases(source) == before  # nothing half-restored is left


def test_replace_needs_yes_refuses_other_sessions_and_keeps_the_old_database(s3_server, s3_bucket, tmp_path,
                                                                               source):
    config_file, _, manifest = prepared(s3_server, s3_bucket, tmp_path, source)
    with source.connect("contrivance") as conn:
        conn.execute("DELETE FROM audit.events")  # the incident: data lost after the backup

    not_confirmed = run_cli(config_file, "restore", "--replace", "--no-safety-backup")
    assert not_confirmed.returncode == 2 and "--yes" in not_confirmed.stderr

    with source.connect("contrivance") as session:  # an application still connected
        session.execute("SELECT 1")
        refused = run_cli(config_file, "restore", "--replace", "--yes", "--no-safety-backup")
        assert refused.returncode == 1 and "other session(s) are connected to contrivance" in refused.stderr
        assert "--terminate-connections" in refused.stderr
        assert not [d for d in databases(source) if "_restored_" in d]  # refused before restoring

        out = run_cli(config_file, "restore", "--replace", "--yes", "--no-safety-backup", "--terminate-connections")
    assert out.returncode == 0, out.stderr
    assert counts(source, "contrivance")["audit.events"] == manifest.row_counts["audit.events"].rows
    [kept] = [d for d in databases(source) if d.startswith("contrivance_replaced_")]
    assert counts(source, kept)["audit.events"] == 0
    assert ownership_and_grants(source, "contrivance") == ({"contrivance_app"}, True, "contrivance_app")


def test_replace_without_a_backup_job_for_the_safety_backup_changes_nothing(s3_server, s3_bucket, tmp_path, source):
    config_file, _, _ = prepared(s3_server, s3_bucket, tmp_path, source, backup_job=False)
    before = databases(source)

    out = run_cli(config_file, "restore", "--replace", "--yes")

    assert out.returncode != 0 and "no pg_backup job backs up contrivance" in out.stderr
    assert "--no-safety-backup" in out.stderr
    assert databases(source) == before


def test_restore_across_servers_recreates_roles_owners_and_grants(s3_server, s3_bucket, tmp_path, source,
                                                                  postgres_factory):
    config_file, _, manifest = prepared(s3_server, s3_bucket, tmp_path, source)
    other = postgres_factory()

    out = run_cli(config_file, "restore", "--target-dsn", other.dsn("contrivance"), "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    assert summary["row_counts"]["passed"] and summary["target"].endswith(f":{other.port}")
    new = summary["restore_into"]
    assert counts(other, new)["app.builds"] == manifest.row_counts["app.builds"].rows
    assert ownership_and_grants(other, new) == ({"contrivance_app"}, True, "contrivance_app")
    with other.connect() as conn:
        login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'contrivance_app'").fetchone()[0]
    assert login is True
    # the target's own superuser keeps its password: we can still connect as before
    with other.connect() as conn:
        conn.execute("SELECT 1")


def test_replace_takes_a_safety_backup_of_the_current_database_first(s3_server, s3_bucket, tmp_path, source):
    config_file, storage, manifest = prepared(s3_server, s3_bucket, tmp_path, source)
    with source.connect("contrivance") as conn:
        conn.execute("DELETE FROM app.deployments")
    time.sleep(1.1)  # backup ids have one-second resolution

    out = run_cli(config_file, "restore", "--backup", manifest.id, "--replace", "--yes")

    assert out.returncode == 0, out.stderr
    assert "safety backup:" in out.stdout
    newest, restored = catalog.list_backups(storage, "contrivance")[:2]
    assert restored.id == manifest.id and newest.id > manifest.id
    assert newest.manifest.row_counts["app.deployments"].rows == 0  # the state before the restore
    assert counts_of(source, "contrivance", "app.deployments") == manifest.row_counts["app.deployments"].rows


def counts_of(server, dbname, table) -> int:
    with server.connect(dbname) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_failed_safety_backup_is_a_recorded_failed_run_and_replaces_nothing(s3_server, s3_bucket, tmp_path,
                                                                              postgres_factory):
    """The safety backup goes through the runner: its timeout, its history row; exit 1, not 2."""
    source = postgres_factory(command=["-c", "max_prepared_transactions=2"])
    load_contrivance(source)
    data = config_data(s3_server, s3_bucket, tmp_path, source)
    config = s3_config(s3_server, s3_bucket, tmp_path, source)
    manifest = make_backup(config)
    data["jobs"]["backup"]["timeout"] = "3s"
    config_file = write_config(tmp_path, data)
    with hold_lock(source, "contrivance", "app.builds"):  # pg_dump waits for it forever
        out = run_cli(config_file, "restore", "--backup", manifest.id, "--replace", "--yes", timeout=120)

    assert out.returncode == 1, out.stderr
    assert "safety backup of contrivance failed" in out.stderr and "timed out after 3 s" in out.stderr
    assert "Traceback" not in out.stderr
    assert not [d for d in databases(source) if "_restored_" in d or "_replaced_" in d]
    from maintainer.history import History

    [run] = History.open(tmp_path / "state").runs("backup-safety")
    assert run.status == "failed" and "timed out" in run.error_summary
    assert [b.id for b in catalog.list_backups(storage_of(config), "contrivance")] == [manifest.id]
