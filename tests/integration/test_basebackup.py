"""pg_basebackup jobs against a real PostgreSQL 15 container: the base backup streams
into storage (plain and encrypted), downloads verified, and pg_verifybackup of the
server's major version accepts it against its own manifest; extra tablespaces are
refused in one line."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest
import yaml
import zstandard

from maintainer.crypto.keyring import Keyring
from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.storage.objectset import ChecksumMismatch
from maintainer.wal import archive, basebackups, layout
from maintainer.wal.lsn import parse_lsn
from maintainer.wal.state import STATES

from support.encryption import encryption, make_key
from support.pgdata import psql, wait_for
from support.postgres import remove_postgres
from support.wal_daemon import MAINTAINER
from support.wal_server import BackgroundRun, drop_slot, pgbench, start_replication_server, switch_wal, wal_config

pytestmark = pytest.mark.integration

PG_VERIFYBACKUP = "/usr/lib/postgresql/15/bin/pg_verifybackup"


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    server = start_replication_server(docker_client, pg_image)
    pgbench(server, "-i", "-s", "3", "-q")
    yield server
    remove_postgres(server)


def download_and_verify(storage, entry, tmp_path, keyring=None):
    tar_path = tmp_path / "base.tar"
    basebackups.download_object(storage, entry.manifest, "base.tar", str(tar_path), keyring)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    with tarfile.open(tar_path) as tar:
        tar.extractall(data_dir)
    out = subprocess.run([PG_VERIFYBACKUP, str(data_dir)], capture_output=True, text=True, timeout=300)
    return out, data_dir


def test_a_base_backup_downloads_verified_and_pg_verifybackup_accepts_it(server, tmp_path):
    config = wal_config(f"file://{tmp_path}/store", server)
    result = run_job(config, "base")
    assert result.ok, result.errors
    storage = open_storage(config.storage["main"], "main")
    [entry] = basebackups.list_base_backups(storage, "pg")
    m = entry.manifest
    assert m.server_major == 15 and m.wal_method == "fetch" and m.client == "local"
    assert parse_lsn(m.stop_lsn) >= parse_lsn(m.start_lsn) > 0 and m.timeline == 1
    assert m.backup_start_time is not None
    sysid = psql(server, "SELECT system_identifier FROM pg_control_system()").strip()
    assert m.system_identifier == sysid
    assert [o.name for o in m.objects] == ["base.tar", "backup_manifest"]
    assert m.objects[0].key == layout.base_object_key("pg", m.id, "base.tar.zst")

    out, data_dir = download_and_verify(storage, entry, tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "backup successfully verified" in out.stdout
    # the backup_manifest stored alone is the one inside the tar
    alone = b"".join(basebackups.read_object(storage, m, "backup_manifest"))
    assert alone == (data_dir / "backup_manifest").read_bytes()
    assert json.loads(alone)["WAL-Ranges"][0]["Start-LSN"] == m.start_lsn


def test_a_base_backup_altered_in_storage_fails_its_download_and_leaves_no_file(server, tmp_path):
    config = wal_config(f"file://{tmp_path}/store", server)
    assert run_job(config, "base").ok
    storage = open_storage(config.storage["main"], "main")
    [entry] = basebackups.list_base_backups(storage, "pg")
    path = storage.root / entry.manifest.objects[0].key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    target = tmp_path / "base.tar"
    with pytest.raises(ChecksumMismatch):
        basebackups.download_object(storage, entry.manifest, "base.tar", str(target))
    assert not target.exists()


def test_an_encrypted_base_backup_is_age_in_storage_and_verifies_after_download(server, tmp_path):
    identity, recipient = make_key(tmp_path, "id.txt")
    config = wal_config(f"file://{tmp_path}/store", server,
                        storage_extra={"encryption": encryption([recipient], [identity])})
    assert run_job(config, "base").ok
    storage = open_storage(config.storage["main"], "main")
    [entry] = basebackups.list_base_backups(storage, "pg")
    tar_obj = entry.manifest.object("base.tar")
    assert tar_obj.key.endswith(".zst.age") and tar_obj.encryption.recipients == [recipient]
    stored = storage.get_bytes(tar_obj.key)
    assert stored.startswith(b"age-encryption.org/v1")
    # the standard tools read it: age -d, then zstd -d gives the tar
    plain = subprocess.run(["age", "-d", "-i", str(identity)], input=stored, capture_output=True, check=True).stdout
    with zstandard.ZstdDecompressor().stream_reader(plain) as reader:
        head = reader.read(1024)
    assert head[257:262] == b"ustar"
    out, _ = download_and_verify(storage, entry, tmp_path, Keyring.of(config, "main"))
    assert out.returncode == 0, out.stderr + out.stdout


def test_a_server_with_another_tablespace_is_refused_in_one_line(docker_client, pg_image, tmp_path):
    other = start_replication_server(docker_client, pg_image)
    try:
        other.container.exec_run(["mkdir", "-p", "/var/lib/postgresql/ts1"], user="postgres")
        psql(other, "CREATE TABLESPACE ts1 LOCATION '/var/lib/postgresql/ts1'")
        config = wal_config(f"file://{tmp_path}/store", other)
        result = run_job(config, "base")
    finally:
        remove_postgres(other)
    assert not result.ok
    [error] = result.errors
    assert "tablespaces besides pg_default (ts1 (/var/lib/postgresql/ts1))" in error and "\n" not in error
    storage = open_storage(config.storage["main"], "main")
    assert list(storage.list("")) == []


def run_cli(config_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([MAINTAINER, "-c", str(config_path), *args], capture_output=True, text=True, timeout=120)


def test_the_cli_lists_base_backups_and_the_wal_range_and_validates_a_continuous_job(server, tmp_path):
    config = wal_config(f"file://{tmp_path}/store", server)
    config_path = tmp_path / "schedules.yaml"
    config_path.write_text(yaml.safe_dump(_doc(server, tmp_path)))
    run = BackgroundRun(config)
    try:
        wait_for(lambda: STATES.get("wal") is not None and STATES.get("wal").up, 60, "the receiver")
        assert run_job(config, "base").ok
        last = switch_wal(server)
        storage = open_storage(config.storage["main"], "main")
        wait_for(lambda: (s := archive.list_archive(storage, "pg").find(last)) is not None and not s.partial, 60,
                 "the switched segment")
    finally:
        assert run.stop().ok
        drop_slot(server)
    [entry] = basebackups.list_base_backups(storage, "pg")

    listed = run_cli(config_path, "backups")
    assert listed.returncode == 0, listed.stderr
    assert entry.id in listed.stdout and f"{entry.manifest.start_lsn} - {entry.manifest.stop_lsn}" in listed.stdout
    assert "WAL archive pg (main): from " in listed.stdout and f"to {last}" in listed.stdout
    assert "gaps: none" in listed.stdout
    as_json = json.loads(run_cli(config_path, "backups", "--json").stdout)
    [base] = [i for i in as_json if i.get("kind") == "base_backup"]
    [wal] = [i for i in as_json if i.get("kind") == "wal_archive"]
    assert base["id"] == entry.id and base["start_lsn"] == entry.manifest.start_lsn
    assert wal["to"] == last and wal["gaps"] == []

    validated = run_cli(config_path, "validate")
    assert validated.returncode == 0, validated.stderr
    assert [ln for ln in validated.stdout.splitlines() if ln.startswith("wal ")][0].split()[2:] == \
        ["continuous", "continuous"]
    checked = run_cli(config_path, "wal", "check")
    assert checked.returncode == 0 and "can be archived" in checked.stdout, checked.stdout + checked.stderr
    planned = run_cli(config_path, "run", "wal", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "would stream WAL on slot maint_test" in planned.stdout and "slot maint_test: would be created" in \
        planned.stdout


def _doc(server, tmp_path) -> dict:
    return {"storage": {"main": {"url": f"file://{tmp_path}/store"}},
            "databases": {"pg": {"host": server.host, "port": server.port, "user": server.user,
                                 "password": server.password, "dbname": "postgres", "sslmode": "disable"}},
            "daemon": {"state_dir": str(tmp_path / "state")},
            "jobs": {"wal": {"type": "wal_archive", "database": "pg", "storage": "main", "slot": "maint_test"},
                     "base": {"type": "pg_basebackup", "database": "pg", "storage": "main",
                              "schedule": "0 3 * * *"}}}
