"""An object set whose manifest is written last, on a local storage directory: keys,
listing only complete items, deletion manifest first, leftovers, verified reads."""

from __future__ import annotations

import hashlib
import io
import os
import time
from datetime import datetime, timezone

import pytest

from maintainer.errors import StorageError
from maintainer.storage.local import LocalStorage
from maintainer.storage.objectset import ChecksumMismatch, ObjectSet, VerifiedReader, new_id, parse_id

pytestmark = pytest.mark.unit

ITEMS = ObjectSet("things")


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage("local", str(tmp_path / "store"))


def store_item(storage, group: str, item_id: str, *, manifest: bool = True, extra: tuple[str, ...] = ()) -> None:
    storage.put(ITEMS.key(group, item_id, "data.bin"), b"data")
    for name in extra:
        storage.put(ITEMS.key(group, item_id, name), b"{}")
    if manifest:
        ITEMS.write_manifest(storage, group, item_id, b"{}")


def age(storage: LocalStorage, group: str, item_id: str, seconds: float) -> None:
    for path in (storage.root / ITEMS.item_prefix(group, item_id)).rglob("*"):
        os.utime(path, (time.time() - seconds,) * 2)


def test_keys_are_root_group_id_and_name_and_split_back():
    assert ITEMS.key("app", "20261126T031500Z", "data.bin") == "things/app/20261126T031500Z/data.bin"
    assert ITEMS.manifest_key("app", "20261126T031500Z") == "things/app/20261126T031500Z/manifest.json"
    assert ITEMS.split_key("things/app/20261126T031500Z/sub/x.json") == ("app", "20261126T031500Z", "sub/x.json")
    assert ITEMS.split_key("other/app/20261126T031500Z/x") is None
    assert ITEMS.split_key("things/app/x") is None


def test_an_id_is_the_utc_second_and_parses_back():
    when = datetime(2026, 11, 26, 4, 15, 0, 123456).astimezone()
    assert parse_id(new_id(when)) == when.replace(microsecond=0).astimezone(timezone.utc)
    with pytest.raises(ValueError):
        parse_id("latest")


def test_only_items_with_a_manifest_and_a_valid_id_are_listed_oldest_first(storage):
    store_item(storage, "app", "20260102T000000Z", extra=("verifications/r1.json",))
    store_item(storage, "app", "20260101T000000Z")
    store_item(storage, "app", "20260103T000000Z", manifest=False)  # a run that died before its manifest
    store_item(storage, "app", "not-an-id")
    store_item(storage, "app2", "20260101T000000Z")
    storage.put("things/app/stray", b"not inside an item")

    items = ITEMS.items(storage, "app")

    assert [i.id for i in items] == ["20260101T000000Z", "20260102T000000Z"]
    assert sorted(items[1].objects) == ["data.bin", "manifest.json", "verifications/r1.json"]
    assert items[1].objects["data.bin"].key == "things/app/20260102T000000Z/data.bin"
    assert [(i.group, i.id) for i in ITEMS.items(storage)] == [
        ("app", "20260101T000000Z"), ("app", "20260102T000000Z"), ("app2", "20260101T000000Z")]
    assert ITEMS.groups(storage) == ["app", "app2"]
    assert ITEMS.items(storage, "nothing") == []


class DeleteFails:
    """A storage whose deletions of anything but manifests fail."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def delete(self, key):
        if not key.endswith("/manifest.json"):
            raise StorageError(f"delete {key}: access denied")
        self.real.delete(key)


def test_deleting_removes_the_manifest_first_so_a_half_deleted_item_is_never_listed(storage):
    store_item(storage, "app", "20260101T000000Z", extra=("verifications/r1.json",))
    store_item(storage, "app", "20260102T000000Z")

    with pytest.raises(StorageError):
        ITEMS.delete(DeleteFails(storage), "app", "20260101T000000Z")

    assert [i.id for i in ITEMS.items(storage, "app")] == ["20260102T000000Z"]
    age(storage, "app", "20260101T000000Z", 7200)
    assert sorted(ITEMS.remove_leftovers(storage, "app")) == [
        "things/app/20260101T000000Z/data.bin", "things/app/20260101T000000Z/verifications/r1.json"]

    ITEMS.delete(storage, "app", "20260102T000000Z")
    assert list(storage.list()) == []
    assert not (storage.root / "things" / "app").exists()  # directories go with their last object


def test_leftovers_are_removed_once_settled_never_a_fresh_item_nor_a_complete_one(storage):
    store_item(storage, "app", "20260101T000000Z", manifest=False)
    store_item(storage, "app", "20260102T000000Z", manifest=False)  # maybe a live run
    store_item(storage, "app", "20260103T000000Z")
    store_item(storage, "app2", "20260101T000000Z", manifest=False)
    for group, item_id in [("app", "20260101T000000Z"), ("app", "20260103T000000Z"), ("app2", "20260101T000000Z")]:
        age(storage, group, item_id, 7200)

    assert ITEMS.remove_leftovers(storage, "app") == ["things/app/20260101T000000Z/data.bin"]

    assert [o.key for o in storage.list()] == [
        "things/app/20260102T000000Z/data.bin", "things/app/20260103T000000Z/data.bin",
        "things/app/20260103T000000Z/manifest.json", "things/app2/20260101T000000Z/data.bin"]


def test_discarding_a_failed_write_removes_all_it_stored_and_never_raises(storage):
    store_item(storage, "app", "20260101T000000Z", manifest=False, extra=("more.bin",))
    ITEMS.discard(storage, "app", "20260101T000000Z")
    assert list(storage.list()) == []
    ITEMS.discard(DeleteFails(storage), "app", "20260101T000000Z")  # nothing there: still fine
    storage.put(ITEMS.key("app", "20260102T000000Z", "data.bin"), b"x")
    ITEMS.discard(DeleteFails(storage), "app", "20260102T000000Z")  # best effort: the failure is swallowed


DATA = bytes(range(256)) * 4000


def reader(stored: bytes, expected: bytes = DATA) -> VerifiedReader:
    return VerifiedReader(io.BytesIO(stored), size=len(expected), sha256=hashlib.sha256(expected).hexdigest(),
                          label="thing app/1")


def test_a_verified_read_of_the_bytes_written_passes_also_when_the_reader_stopped_early():
    r = reader(DATA)
    assert r.read(10) == DATA[:10]
    r.verify()  # reads the rest itself
    assert r.bytes_read == len(DATA)


@pytest.mark.parametrize("stored", [
    DATA[:500] + bytes([DATA[500] ^ 1]) + DATA[501:],  # one flipped bit
    DATA[:-1],  # truncated
    DATA + b"\0",  # appended to
], ids=["flipped", "truncated", "appended"])
def test_a_verified_read_of_altered_bytes_fails_naming_the_object(stored):
    r = reader(stored)
    r.read()
    with pytest.raises(ChecksumMismatch, match=r"^thing app/1: SHA-256 mismatch: .* altered or damaged in storage"):
        r.verify()
