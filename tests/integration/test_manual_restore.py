"""The manual procedure in restore/README.md restores a real maintainer backup with only
standard tools (cp, sha256sum, zstd, psql, pg_restore): the block is run exactly as written."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from maintainer.backup import catalog
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.pgdata import REPO, config_for, db_entry, load_contrivance, snapshot_counts

pytestmark = pytest.mark.integration


def manual_procedure() -> str:
    text = (REPO / "restore" / "README.md").read_text()
    m = re.search(r"<!-- manual-restore:begin -->\s*```bash\n(.*?)```\s*<!-- manual-restore:end -->", text, re.S)
    assert m, "restore/README.md has no manual-restore block"
    return m.group(1)


def test_the_documented_manual_procedure_restores_the_newest_backup_into_an_empty_server(
        postgres, postgres_factory, tmp_path):
    load_contrivance(postgres)
    config = config_for(f"file://{tmp_path}/store", {"contrivance": db_entry(postgres, "contrivance")})
    assert run_job(config, "backup").ok
    assert run_job(config, "backup").ok  # two backups: the procedure must pick the newest
    # A failed run's leftovers (no manifest) must not be picked either.
    leftover = tmp_path / "store" / "pg" / "contrivance" / "29991231T235959Z"
    leftover.mkdir()
    (leftover / "dump.pgcustom.zst").write_bytes(b"not a backup")
    newest = catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")[0]
    target = postgres_factory(password=postgres.password)  # globals carry the superuser's password
    env = {**os.environ, "BACKUPS": str(tmp_path / "store"), "DB": "contrivance", "WORK": str(tmp_path / "work"),
           "PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": target.user, "PGPASSWORD": target.password}

    out = subprocess.run(["bash", "-c", manual_procedure()], env=env, capture_output=True, text=True, timeout=300)

    assert out.returncode == 0, out.stderr
    assert f"restored contrivance from backup {newest.id}" in out.stdout
    rows, objects = snapshot_counts(target, "contrivance")
    assert rows == {k: v.rows for k, v in newest.manifest.row_counts.items()}
    assert objects == newest.manifest.object_counts


def test_the_manual_procedure_refuses_an_object_that_does_not_match_its_manifest(postgres, tmp_path):
    load_contrivance(postgres)
    config = config_for(f"file://{tmp_path}/store", {"contrivance": db_entry(postgres, "contrivance")})
    assert run_job(config, "backup").ok
    [backup] = catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")
    dump = tmp_path / "store" / backup.manifest.object("dump").key
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    env = {**os.environ, "BACKUPS": str(tmp_path / "store"), "DB": "contrivance", "WORK": str(tmp_path / "work"),
           "PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "nobody"}

    out = subprocess.run(["bash", "-c", manual_procedure()], env=env, capture_output=True, text=True, timeout=120)

    assert out.returncode != 0
    assert "dump.pgcustom.zst does not match manifest.json" in out.stderr


def encrypted_backup(postgres, tmp_path):
    """A maintainer backup of contrivance into an encrypted file:// storage; (config, identity file)."""
    from support.encryption import encryption, make_key

    key, recipient = make_key(tmp_path, "age.key")
    config = config_for(f"file://{tmp_path}/store", {"contrivance": db_entry(postgres, "contrivance")},
                        storage_extra={"encryption": encryption([recipient])})
    assert run_job(config, "backup").ok
    return config, key


def test_the_manual_procedure_restores_an_encrypted_backup_with_the_age_cli(postgres, postgres_factory, tmp_path):
    load_contrivance(postgres)
    config, key = encrypted_backup(postgres, tmp_path)
    [backup] = catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")
    assert backup.manifest.object("dump").key.endswith(".zst.age")
    target = postgres_factory(password=postgres.password)
    env = {**os.environ, "BACKUPS": str(tmp_path / "store"), "DB": "contrivance", "WORK": str(tmp_path / "work"),
           "AGE_KEY": str(key),
           "PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": target.user, "PGPASSWORD": target.password}

    out = subprocess.run(["bash", "-c", manual_procedure()], env=env, capture_output=True, text=True, timeout=300)

    assert out.returncode == 0, out.stderr
    assert f"restored contrivance from backup {backup.id}" in out.stdout
    rows, objects = snapshot_counts(target, "contrivance")
    assert rows == {k: v.rows for k, v in backup.manifest.row_counts.items()}
    assert objects == backup.manifest.object_counts


def test_the_manual_procedure_stops_at_an_encrypted_backup_without_its_identity(postgres, tmp_path):
    from support.encryption import make_key

    load_contrivance(postgres)
    encrypted_backup(postgres, tmp_path)
    wrong, _ = make_key(tmp_path, "wrong.key")
    env = {**os.environ, "BACKUPS": str(tmp_path / "store"), "DB": "contrivance", "WORK": str(tmp_path / "work"),
           "AGE_KEY": str(wrong), "PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "nobody"}

    out = subprocess.run(["bash", "-c", manual_procedure()], env=env, capture_output=True, text=True, timeout=120)

    assert out.returncode != 0
    assert "no identity matched any of the recipients" in out.stderr
    assert not (tmp_path / "work" / "globals.sql").exists()
