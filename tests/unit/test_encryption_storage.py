"""Encrypted objects in a local storage directory, without a database: the keyring,
the verified read of a backup object, and snapshots written and read encrypted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from maintainer.backup.manifest import StoredObject
from maintainer.backup.pipeline import store_stream
from maintainer.config.models import EncryptionSpec
from maintainer.crypto import NoMatchingIdentity, X25519Identity, write_identity_file
from maintainer.crypto.keyring import Keyring, MissingIdentity
from maintainer.errors import StorageError
from maintainer.restore.stream import ChecksumMismatch, VerifiedObject
from maintainer.snapshot.manifest import SnapshotManifest
from maintainer.snapshot.store import find_snapshot, read_members, write_snapshot
from maintainer.storage.local import LocalStorage
from maintainer.storage.objectset import ChecksumMismatch as ArchiveMismatch

pytestmark = pytest.mark.unit

SECRET_ROW = b"a row nobody may read: 4242-4242-4242-4242\n"


def key(tmp_path: Path, name: str) -> tuple[Path, str]:
    identity = X25519Identity.generate()
    write_identity_file(tmp_path / name, identity)
    return tmp_path / name, str(identity.recipient)


def keyring(recipients: list[str], identities: list[Path] | None = None) -> Keyring:
    spec = EncryptionSpec(recipients=recipients, identity_files=[str(p) for p in identities or []])
    return Keyring("offsite", spec)


def store_object(storage: LocalStorage, ring: Keyring, content: bytes) -> StoredObject:
    """What pg_backup does with a dump: zstd, then age, into the storage; the manifest entry."""
    key_name = "pg/app/20261201T000000Z/" + ring.name("dump.pgcustom.zst")
    pieces = iter([content])

    def readinto(buffer: memoryview) -> int:
        data = next(pieces, b"")
        buffer[:len(data)] = data
        return len(data)

    with ring.writer(storage.open_writer(key_name)) as writer:
        result = store_stream(readinto, writer, level=1)
    fields = dict(name="dump", key=key_name, format="pg_dump-custom", raw_size=result.raw_size,
                  stored_size=writer.size, sha256=result.sha256)
    if ring.enabled:
        fields.update(stored_size=writer.stored_size, sha256=writer.stored_sha256,
                      compressed_sha256=result.sha256, encryption=ring.record())
    return StoredObject(**fields)


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    (tmp_path / "store").mkdir()
    return LocalStorage("offsite", str(tmp_path / "store"))


def test_an_encrypted_object_holds_no_plaintext_and_its_manifest_describes_the_stored_bytes(storage, tmp_path):
    path, recipient = key(tmp_path, "a.key")
    ring = keyring([recipient], [path])
    obj = store_object(storage, ring, SECRET_ROW * 1000)

    stored = (tmp_path / "store" / obj.key).read_bytes()
    assert obj.key.endswith("dump.pgcustom.zst.age") and stored.startswith(b"age-encryption.org/v1\n")
    assert b"4242-4242" not in stored
    assert obj.sha256 == hashlib.sha256(stored).hexdigest() and obj.stored_size == len(stored)
    assert obj.encryption.recipients == [recipient]
    assert VerifiedObject(storage, obj, keyring=ring).read_all() == SECRET_ROW * 1000


def test_an_unencrypted_object_reads_without_any_key_in_an_encrypting_storage(storage, tmp_path):
    obj = store_object(storage, Keyring("offsite"), SECRET_ROW)
    _, recipient = key(tmp_path, "a.key")

    assert obj.encryption is None and obj.key.endswith(".zst")
    assert VerifiedObject(storage, obj, keyring=keyring([recipient])).read_all() == SECRET_ROW


def test_no_identity_configured_names_the_storage_and_the_recipients_before_reading(storage, tmp_path):
    _, a = key(tmp_path, "a.key")
    _, b = key(tmp_path, "b.key")
    obj = store_object(storage, keyring([a, b]), SECRET_ROW)

    for ring in (keyring([a, b]), None, keyring([a], [tmp_path / "absent.key"])):
        with pytest.raises(MissingIdentity) as failure:
            VerifiedObject(storage, obj, keyring=ring).read_all()
        message = failure.value.message
        assert "storage 'offsite'" in message and a in message and b in message


def test_a_wrong_identity_names_the_recipients_and_the_key_tried_never_its_secret(storage, tmp_path):
    _, a = key(tmp_path, "a.key")
    wrong_path, wrong = key(tmp_path, "wrong.key")
    obj = store_object(storage, keyring([a]), SECRET_ROW)

    with pytest.raises(NoMatchingIdentity) as failure:
        VerifiedObject(storage, obj, keyring=keyring([a], [wrong_path])).read_all()
    assert a in failure.value.message and wrong in failure.value.message
    assert "AGE-SECRET-KEY" not in failure.value.message


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "appended"])
def test_damaged_ciphertext_is_a_checksum_mismatch_and_releases_nothing_unchecked(storage, tmp_path, damage):
    path, recipient = key(tmp_path, "a.key")
    ring = keyring([recipient], [path])
    obj = store_object(storage, ring, SECRET_ROW * 5000)
    file = tmp_path / "store" / obj.key
    data = bytearray(file.read_bytes())
    if damage == "truncated":
        del data[-40:]
    elif damage == "bit-flipped":
        data[len(data) // 2] ^= 0x01
    else:
        data += b"more"
    file.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatch, match="SHA-256 mismatch"):
        VerifiedObject(storage, obj, keyring=ring).read_all()


def test_ciphertext_stored_damaged_is_an_age_error_even_with_a_matching_checksum(storage, tmp_path):
    path, recipient = key(tmp_path, "a.key")
    ring = keyring([recipient], [path])
    obj = store_object(storage, ring, SECRET_ROW * 5000)
    file = tmp_path / "store" / obj.key
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    obj = obj.model_copy(update={"sha256": hashlib.sha256(data).hexdigest()})  # as if written so

    with pytest.raises(StorageError, match="cannot decrypt"):
        VerifiedObject(storage, obj, keyring=ring).read_all()


def snapshot_manifest(snapshot_id: str) -> SnapshotManifest:
    from datetime import datetime, timezone

    return SnapshotManifest(id=snapshot_id, name="stack", job="snapshot", created=datetime.now(timezone.utc),
                            content_hash="sha256:x", maintainer_version="test")


def test_a_snapshot_is_stored_encrypted_and_read_back_with_either_identity(storage, tmp_path):
    path_a, a = key(tmp_path, "a.key")
    path_b, b = key(tmp_path, "b.key")
    members = {"files/srv/app.conf": SECRET_ROW * 100}
    write_snapshot(storage, "stack", "20261201T000000Z", members, snapshot_manifest("20261201T000000Z"),
                   keyring=keyring([a, b]))
    entry = find_snapshot(storage, "stack")

    stored = (tmp_path / "store" / entry.archive.key).read_bytes()
    assert entry.archive.key.endswith("snapshot.tar.zst.age") and b"4242-4242" not in stored
    assert entry.archive.sha256 == hashlib.sha256(stored).hexdigest() and entry.archive.size == len(stored)
    assert entry.archive.encryption.recipients == [a, b]
    for path in (path_a, path_b):
        assert dict(read_members(storage, entry, keyring([a, b], [path])))["files/srv/app.conf"] == SECRET_ROW * 100
    with pytest.raises(MissingIdentity, match="storage 'offsite'"):
        list(read_members(storage, entry))


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_a_damaged_encrypted_snapshot_is_refused(storage, tmp_path, damage):
    path, a = key(tmp_path, "a.key")
    write_snapshot(storage, "stack", "20261201T000000Z", {"files/x": SECRET_ROW * 3000},
                   snapshot_manifest("20261201T000000Z"), keyring=keyring([a]))
    entry = find_snapshot(storage, "stack")
    file = tmp_path / "store" / entry.archive.key
    data = bytearray(file.read_bytes())
    if damage == "truncated":
        del data[-20:]
    else:
        data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))

    with pytest.raises(ArchiveMismatch, match="SHA-256 mismatch"):
        list(read_members(storage, entry, keyring([a], [path])))


def test_an_unencrypted_snapshot_manifest_is_written_as_before(storage):
    write_snapshot(storage, "stack", "20261201T000000Z", {"files/x": b"x"}, snapshot_manifest("20261201T000000Z"))
    entry = find_snapshot(storage, "stack")

    assert entry.archive.key.endswith("/snapshot.tar.zst")
    assert "encryption" not in entry.manifest.to_json().decode()


def test_switching_a_storage_to_encryption_stores_an_unchanged_snapshot_again_encrypted(tmp_path):
    import time

    from maintainer.config.models import Config
    from maintainer.runner import run_job
    from maintainer.snapshot.store import list_snapshots

    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "app.conf").write_text("banner hello\n")
    path, recipient = key(tmp_path, "a.key")

    def config(setting: dict | None) -> Config:
        local = {"url": f"file://{tmp_path / 'store'}", **({"encryption": setting} if setting else {})}
        return Config.model_validate({"storage": {"local": local}, "jobs": {"snapshot": {
            "type": "config_snapshot", "schedule": "0 4 * * *", "storage": "local", "paths": [str(srv)]}}})

    assert run_job(config(None), "snapshot").figures["stored"] == 1
    time.sleep(1.1)  # snapshot ids are per second
    encrypted = config({"recipients": [recipient], "identity_file": str(path)})
    switched = run_job(encrypted, "snapshot")
    again = run_job(encrypted, "snapshot")

    assert switched.ok and switched.figures["stored"] == 1
    assert again.ok and again.figures["stored"] == 0  # unchanged, and already stored as configured
    plain, sealed = list_snapshots(LocalStorage("local", str(tmp_path / "store")), "snapshot")
    assert plain.archive.encryption is None and sealed.archive.encryption.recipients == [recipient]
