"""Image backup storage on a real local storage: blobs stored once and read back
verified, manifests that read back as written, choosing images to restore."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone

import pytest

from maintainer.crypto.keyring import Keyring
from maintainer.images.backup_store import (SETS, ImageSetNotFound, SavedImage, SetManifest,
                                            delete_unreferenced_blobs, find_set, stored_blobs)
from maintainer.images.load import blob_chunks, select_images
from maintainer.images.save import store_blob
from maintainer.storage.local import LocalStorage
from maintainer.storage.objectset import ChecksumMismatch

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def storage(tmp_path):
    return LocalStorage("main", str(tmp_path))


def put(storage, data: bytes):
    return store_blob(io.BytesIO(data), digest(data), len(data), storage, Keyring("main"))


def manifest(set_id: str, images: list[SavedImage], records: dict, group: str = "shop") -> SetManifest:
    return SetManifest(id=set_id, group=group, job="images", run_id="r", created=T0, images=images, blobs=records)


def test_a_blob_reads_back_exactly_and_an_altered_one_is_refused(storage, tmp_path):
    data = b"layer " * 100_000
    record = put(storage, data)
    assert record.size == len(data) and record.stored_size < len(data) // 10
    assert stored_blobs(storage) == {record.digest: record}
    assert b"".join(blob_chunks(storage, Keyring("main"), record)) == data

    path = tmp_path / record.key
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumMismatch, match="SHA-256 mismatch"):
        b"".join(blob_chunks(storage, Keyring("main"), record))


def test_a_set_manifest_reads_back_as_written_and_find_set_names_what_exists(storage):
    config, layer = put(storage, b"{}"), put(storage, b"x" * 1000)
    image = SavedImage(config.digest, ["shop/app:1"], ["reg/shop/app@sha256:" + "a" * 64], [layer.digest], 1002)
    for set_id in ("20261201T020000Z", "20261202T020000Z"):
        m = manifest(set_id, [image], {config.digest: config, layer.digest: layer})
        SETS.write_manifest(storage, "shop", set_id, m.to_json())
    newest = find_set(storage, "shop", None)
    assert newest.id == "20261202T020000Z"
    assert newest.manifest == manifest("20261202T020000Z", [image], {config.digest: config, layer.digest: layer})
    with pytest.raises(ImageSetNotFound, match="no image set 20250101T000000Z .*sets: 20261201T020000Z, 20261202"):
        find_set(storage, "shop", "20250101T000000Z")
    with pytest.raises(ImageSetNotFound, match="no saved image set in storage 'main' for other"):
        find_set(storage, "other", None)


def test_images_are_chosen_by_tag_as_people_write_it_or_by_id_prefix():
    app = SavedImage("sha256:" + "1" * 64, ["postgres:15"], [], [], 0)
    web = SavedImage("sha256:" + "2" * 64, ["127.0.0.1:5555/shop/web:2"], [], [], 0)
    m = manifest("20261201T020000Z", [app, web], {})
    assert select_images(m, []) == [app, web]
    assert select_images(m, ["docker.io/library/postgres:15"]) == [app]
    assert select_images(m, ["2" * 12, "postgres:15"]) == [web, app]
    with pytest.raises(ImageSetNotFound, match="has no image redis:7 .it has postgres:15, 127.0.0.1:5555/shop/web:2"):
        select_images(m, ["redis:7"])


def test_only_blobs_no_set_references_go_and_only_once_settled(storage):
    kept, dropped = put(storage, b"kept" * 10), put(storage, b"dropped" * 10)
    image = SavedImage(kept.digest, [], [], [], 0)
    SETS.write_manifest(storage, "shop", "20261201T020000Z",
                        manifest("20261201T020000Z", [image], {kept.digest: kept}).to_json())
    assert delete_unreferenced_blobs(storage) == []  # just written: maybe a live run's
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert delete_unreferenced_blobs(storage, now=later) == [dropped.digest]
    assert set(stored_blobs(storage)) == {kept.digest}
    assert not storage.exists(dropped.key)
