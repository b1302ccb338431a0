"""Encryption at rest end to end, into S3 (moto): backup, config snapshot, restore,
drill and snapshot restore with age identities, and every way the key or the
ciphertext can be wrong. One encrypted backup and snapshot serve every test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.crypto.keyring import Keyring
from maintainer.restore.stream import VerifiedObject
from maintainer.runner import run_job
from maintainer.snapshot.store import list_snapshots

from support.encryption import CONFIG_VALUE, ROW_VALUE, encryption, make_key, planted_contrivance, sha256, stored_objects
from support.scenarios import (config_data, databases, drill_job, make_backup, run_cli, storage_of,
                                write_config)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _age_cli() -> None:
    if shutil.which("age") is None:
        pytest.fail("age is not installed; run scripts/testbed.sh (apt-get install age)", pytrace=False)


@pytest.fixture(scope="module")
def source(docker_client, pg_image):
    with planted_contrivance(docker_client, pg_image) as server:
        yield server


@pytest.fixture(scope="module")
def enc(s3_server, module_s3_bucket, source, tmp_path_factory):
    """One backup and one config snapshot in an S3 storage encrypted to two recipients (A, B)."""
    tmp = tmp_path_factory.mktemp("encrypted")
    key_a, rec_a = make_key(tmp, "a.key")
    key_b, rec_b = make_key(tmp, "b.key")
    key_wrong, rec_wrong = make_key(tmp, "wrong.key")
    conf = tmp / "srv"
    conf.mkdir()
    (conf / "app.conf").write_text(f"# the application's settings\nbanner {CONFIG_VALUE}\n")
    jobs = {"drill": drill_job(),
            "snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *", "storage": "s3", "paths": [str(conf)]}}
    data = config_data(s3_server, module_s3_bucket, tmp, source, jobs=jobs)
    data["storage"]["s3"]["encryption"] = encryption([rec_a, rec_b], [key_a])
    config = Config.model_validate(data)
    manifest = make_backup(config)
    snap = run_job(config, "snapshot")
    assert snap.ok, snap.errors
    return SimpleNamespace(tmp=tmp, data=data, config=config, manifest=manifest, storage=storage_of(config),
                           config_file=write_config(tmp, data), key_a=key_a, key_b=key_b, key_wrong=key_wrong,
                           recipients=[rec_a, rec_b], rec_wrong=rec_wrong, snapshot_id=snap.details["snapshot_id"])


def variant(enc, tmp_path: Path, setting: dict) -> tuple[Config, Path]:
    """The same config with another ``encryption`` setting (other identities)."""
    data = {**enc.data, "storage": {"s3": {**enc.data["storage"]["s3"], "encryption": setting}}}
    return Config.model_validate(data), write_config(tmp_path, data)


@contextlib.contextmanager
def stored_as(storage, key: str, data: bytes):
    """Replace an object for the duration of a test, then put the original back."""
    original = storage.get_bytes(key)
    storage.put(key, data)
    try:
        yield
    finally:
        storage.put(key, original)


def restored_databases(server) -> list[str]:
    return [d for d in databases(server) if d.startswith("contrivance_restored_")]


def test_no_row_data_and_no_config_file_content_is_in_any_stored_byte(enc):
    objects = stored_objects(enc.storage)

    for key, data in objects.items():
        assert ROW_VALUE.encode() not in data, key
        assert CONFIG_VALUE.encode() not in data, key
    names = {k.rsplit("/", 1)[-1] for k in objects}
    assert {"dump.pgcustom.zst.age", "globals.sql.zst.age", "snapshot.tar.zst.age", "manifest.json"} <= names
    assert not names & {"dump.pgcustom.zst", "globals.sql.zst", "snapshot.tar.zst"}


def test_the_manifests_stay_plaintext_and_record_how_each_object_is_encrypted(enc):
    manifest = catalog.list_backups(enc.storage, "contrivance")[0].manifest  # no identity needed to list
    assert manifest.id == enc.manifest.id and manifest.recipients == enc.recipients
    for obj in manifest.objects:
        stored = enc.storage.get_bytes(obj.key)
        assert obj.key.endswith(".zst.age") and stored.startswith(b"age-encryption.org/v1\n")
        assert obj.encryption.format == "age" and obj.encryption.recipients == enc.recipients
        assert obj.sha256 == sha256(stored) and obj.stored_size == len(stored)
        assert obj.compressed_sha256 and obj.compressed_sha256 != obj.sha256
    [snapshot] = list_snapshots(enc.storage, "snapshot")
    archive = snapshot.archive
    stored = enc.storage.get_bytes(archive.key)
    assert archive.encryption.recipients == enc.recipients
    assert archive.sha256 == sha256(stored) and archive.size == len(stored)


@pytest.mark.parametrize("key", ["key_a", "key_b"])
def test_the_age_cli_decrypts_the_dump_with_either_identity_and_pg_restore_reads_it(enc, tmp_path, key):
    dump = tmp_path / "dump.pgcustom.zst.age"
    dump.write_bytes(enc.storage.get_bytes(enc.manifest.object("dump").key))

    out = subprocess.run(["bash", "-o", "pipefail", "-c",
                          f"age -d -i {getattr(enc, key)} {dump} | zstd -d | pg_restore -f -"],
                         capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert ROW_VALUE in out.stdout and "CREATE TABLE public.planted" in out.stdout


def test_either_identity_alone_reads_every_object_through_its_checks(enc):
    for key in (enc.key_a, enc.key_b):
        config, _ = variant(enc, enc.tmp, encryption(enc.recipients, [key]))
        keyring = Keyring.of(config, "s3")
        for obj in enc.manifest.objects:
            reader = VerifiedObject(enc.storage, obj, keyring=keyring)
            assert sum(len(c) for c in reader.chunks()) == obj.raw_size


def test_restore_latest_decrypts_with_the_identity_and_brings_the_rows_back(enc, source):
    out = run_cli(enc.config_file, "restore", "--latest", "--database", "contrivance")

    assert out.returncode == 0, out.stderr
    [new] = restored_databases(source)
    with source.connect(new) as conn:
        assert conn.execute("SELECT note FROM public.planted").fetchall() == [(ROW_VALUE,)]
    with source.connect("postgres") as conn:
        conn.execute(f'DROP DATABASE "{new}"')


def test_a_drill_passes_with_the_identity(enc):
    result = run_job(enc.config, "drill")

    assert result.ok, result.errors
    entry = catalog.list_backups(enc.storage, "contrivance")[0]
    assert any(v.passed for v in entry.verifications)


def test_snapshot_restore_decrypts_the_archive(enc, tmp_path):
    out = run_cli(enc.config_file, "snapshot", "restore", "--latest", "--to", str(tmp_path / "out"))

    assert out.returncode == 0, out.stderr
    [conf] = (tmp_path / "out" / "files").rglob("app.conf")
    assert CONFIG_VALUE in conf.read_text()


@pytest.mark.parametrize("case", ["wrong identity", "missing identity file", "no identity configured"])
def test_a_missing_or_wrong_identity_is_one_clear_error_and_nothing_is_restored(enc, source, tmp_path, case):
    setting = {"wrong identity": encryption(enc.recipients, [enc.key_wrong]),
               "missing identity file": encryption(enc.recipients, [tmp_path / "absent.key"]),
               "no identity configured": encryption(enc.recipients)}[case]
    config, config_file = variant(enc, tmp_path, setting)

    out = run_cli(config_file, "restore", "--latest", "--database", "contrivance")
    snap = run_cli(config_file, "snapshot", "restore", "--latest", "--to", str(tmp_path / "out"))
    drill = run_job(config, "drill")

    for stderr in (out.stderr, snap.stderr):
        [line, *_] = stderr.splitlines()
        assert line.startswith("Error: ") and "storage 's3'" in line, stderr
        assert all(r in line for r in enc.recipients), line
        assert "AGE-SECRET-KEY" not in stderr
    assert out.returncode == 1 and snap.returncode == 1
    assert restored_databases(source) == [] and not (tmp_path / "out").exists()
    assert not drill.ok and "storage 's3'" in drill.errors[0] and enc.recipients[0] in drill.errors[0]
    if case == "wrong identity":
        assert enc.rec_wrong in out.stderr  # the identity tried, by its public key


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_ciphertext_is_refused_by_restore_and_fails_the_drill(enc, source, damage):
    key = enc.manifest.object("dump").key
    data = enc.storage.get_bytes(key)
    altered = data[:len(data) - 100] if damage == "truncated" else bytearray(data)
    if damage == "bit-flipped":
        altered[len(data) // 2] ^= 0x01
    with stored_as(enc.storage, key, bytes(altered)):
        out = run_cli(enc.config_file, "restore", "--latest", "--database", "contrivance")
        drill = run_job(enc.config, "drill")

    assert out.returncode == 1 and "SHA-256 mismatch" in out.stderr, out.stderr
    assert restored_databases(source) == []
    assert not drill.ok and "checksum" in drill.errors[0] and "SHA-256 mismatch" in drill.errors[0]


def test_a_snapshot_altered_in_storage_is_refused(enc, tmp_path):
    [snapshot] = list_snapshots(enc.storage, "snapshot")
    data = bytearray(enc.storage.get_bytes(snapshot.archive.key))
    data[len(data) // 2] ^= 0x01
    with stored_as(enc.storage, snapshot.archive.key, bytes(data)):
        out = run_cli(enc.config_file, "snapshot", "restore", "--latest", "--to", str(tmp_path / "out"))

    assert out.returncode == 1 and "SHA-256 mismatch" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_listing_and_the_restore_plan_need_no_identity_and_say_what_is_encrypted(enc, tmp_path):
    _, config_file = variant(enc, tmp_path, encryption(enc.recipients))  # a backup-only container: no identity

    listed = run_cli(config_file, "backups")
    plan = run_cli(config_file, "restore", "--latest", "--dry-run")
    snapshots = run_cli(config_file, "snapshots")

    assert listed.returncode == 0 and enc.manifest.id in listed.stdout and "encrypted" in listed.stdout, listed.stderr
    assert plan.returncode == 0 and "decrypting (age)" in plan.stdout and enc.recipients[1] in plan.stdout, plan.stderr
    assert snapshots.returncode == 0 and enc.snapshot_id in snapshots.stdout, snapshots.stderr
