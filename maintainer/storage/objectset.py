"""A set of stored items whose manifest is written last: backups and config snapshots.

    <root>/<group>/<id>/<object>...       the item's objects, written first
    <root>/<group>/<id>/manifest.json     written last: the item exists only with it

``<group>`` is what the items belong to (a database, a compose project);
``<id>`` is the UTC time the item was started, 20261126T031500Z, so keys sort
by age. An ObjectSet is the one place that builds and splits these keys, lists
complete items, deletes an item manifest first (from that moment it no longer
exists, even if removing the rest fails), and removes what failed or killed
runs left. ``open_verified`` reads an object back through the SHA-256 its
manifest recorded.

Leftovers. Another run may be writing an item of the same group right now
(``maintainer run`` beside the daemon, an incident restore's safety backup, two
jobs that share a database), so nothing is removed on suspicion alone:

- unfinished writes (partial files, multipart uploads) go when the storage can
  tell their writer died, or after ABANDONED_AFTER without a sign of life where
  it cannot (see Storage.cleanup_incomplete);
- the objects of an item without a manifest go once the newest of them is
  ABANDONED_AFTER old: from its first object's commit until its manifest is
  written, a live run's item has no manifest either;
- directories left empty go with them (local storage).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from maintainer.errors import MaintainerError, StorageError
from maintainer.storage.base import ABANDONED_AFTER, COPY_CHUNK, ObjectInfo, Storage

ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"


def new_id(now: datetime) -> str:
    """The id of an item started at ``now``."""
    return now.astimezone(timezone.utc).strftime(ID_FORMAT)


def parse_id(item_id: str) -> datetime:
    """The UTC time an item id stands for; ValueError if it is not one."""
    return datetime.strptime(item_id[:16], ID_FORMAT).replace(tzinfo=timezone.utc)


class ChecksumMismatch(StorageError):
    """A stored object's bytes are not the ones its manifest recorded."""


@dataclass(frozen=True)
class Item:
    """A complete item (its manifest is stored): every object under it, by name
    relative to the item (``manifest.json``, ``verifications/<run>.json``, ...)."""

    group: str
    id: str
    objects: dict[str, ObjectInfo]


@dataclass(frozen=True)
class ObjectSet:
    root: str
    manifest: str = MANIFEST

    def group_prefix(self, group: str) -> str:
        return f"{self.root}/{group}/"

    def item_prefix(self, group: str, item_id: str) -> str:
        return f"{self.root}/{group}/{item_id}/"

    def key(self, group: str, item_id: str, name: str) -> str:
        return self.item_prefix(group, item_id) + name

    def manifest_key(self, group: str, item_id: str) -> str:
        return self.key(group, item_id, self.manifest)

    def split_key(self, key: str) -> tuple[str, str, str] | None:
        """``<root>/<group>/<id>/<name>`` -> (group, id, name); None for keys outside the set."""
        parts = key.split("/", 3)
        if len(parts) != 4 or parts[0] != self.root:
            return None
        return parts[1], parts[2], parts[3]

    def groups(self, storage: Storage) -> list[str]:
        """Every group with at least one object under an item, complete or not."""
        return sorted({parts[0] for info in storage.list(self.root + "/") if (parts := self.split_key(info.key))})

    def items(self, storage: Storage, group: str | None = None) -> list[Item]:
        """The complete items of ``group`` (of every group when None), oldest first
        within a group. An item whose manifest is missing, or whose id is not an
        item id, is not listed (see remove_leftovers)."""
        found: dict[tuple[str, str], dict[str, ObjectInfo]] = {}
        if group is None:
            for info in storage.list(self.root + "/"):
                if parts := self.split_key(info.key):
                    found.setdefault(parts[:2], {})[parts[2]] = info
        else:
            by_id = _by_item(storage, self.group_prefix(group))
            found = {(group, item_id): objects for item_id, objects in by_id.items()}
        return [Item(item_group, item_id, objects) for (item_group, item_id), objects in sorted(found.items())
                if self.manifest in objects and is_item_id(item_id)]

    def write_manifest(self, storage: Storage, group: str, item_id: str, data: bytes) -> ObjectInfo:
        """Store the manifest, and with it the item. Call only once every other
        object is stored and its checksum known."""
        return storage.put(self.manifest_key(group, item_id), data)

    def delete(self, storage: Storage, group: str, item_id: str) -> None:
        """Manifest first: from that moment the item no longer exists, even if
        the rest stays (the next remove_leftovers takes it). StorageError if a
        deletion fails."""
        storage.delete(self.manifest_key(group, item_id))
        for info in list(storage.list(self.item_prefix(group, item_id))):
            storage.delete(info.key)

    def discard(self, storage: Storage, group: str, item_id: str) -> None:
        """Best effort: remove what a failed write stored before its manifest
        (anything left is a leftover the next run removes)."""
        try:
            for info in list(storage.list(self.item_prefix(group, item_id))):
                storage.delete(info.key)
        except MaintainerError:
            pass

    def remove_leftovers(self, storage: Storage, group: str) -> list[str]:
        """Remove what failed or killed runs left in ``group`` (never an item another
        run is writing: see the module docstring); returns the keys removed."""
        return remove_leftovers(storage, self.group_prefix(group), self.manifest)


def is_item_id(item_id: str) -> bool:
    try:
        parse_id(item_id)
    except ValueError:
        return False
    return True


def remove_leftovers(storage: Storage, prefix: str, manifest: str) -> list[str]:
    """Remove leftovers under ``prefix`` (ending in ``/``) whose items are complete
    once ``<prefix><id>/<manifest>`` exists; returns the keys removed."""
    removed = storage.cleanup_incomplete(prefix, older_than=ABANDONED_AFTER)
    settled = datetime.now(timezone.utc) - ABANDONED_AFTER
    for objects in items_without_manifest(storage, prefix, manifest).values():
        if max(o.modified for o in objects) > settled:
            continue  # maybe a live run between its first object and its manifest
        for info in objects:
            storage.delete(info.key)
            removed.append(info.key)
    return removed


def items_without_manifest(storage: Storage, prefix: str, manifest: str) -> dict[str, list[ObjectInfo]]:
    """The stored objects of each item under ``prefix`` that has no manifest, by item id."""
    return {item_id: list(objects.values()) for item_id, objects in _by_item(storage, prefix).items()
            if manifest not in objects}


def _by_item(storage: Storage, prefix: str) -> dict[str, dict[str, ObjectInfo]]:
    """Every object under ``<prefix><id>/``, by item id and name within the item.
    Objects directly under ``prefix`` are in no item: not ours to judge."""
    found: dict[str, dict[str, ObjectInfo]] = {}
    for info in storage.list(prefix):
        item_id, sep, name = info.key[len(prefix):].partition("/")
        if sep and item_id and name:
            found.setdefault(item_id, {})[name] = info
    return found


class VerifiedReader:
    """A stored object read through SHA-256. ``verify()`` reads whatever the
    consumer left and raises ChecksumMismatch unless the object has exactly the
    size and SHA-256 its manifest recorded; until then, the bytes read are unchecked."""

    def __init__(self, stream: BinaryIO, *, size: int, sha256: str, label: str):
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = size
        self.sha256 = sha256
        self.label = label
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._digest.update(data)
        self.bytes_read += len(data)
        return data

    def verify(self) -> None:
        while self.read(COPY_CHUNK):
            pass
        digest = self._digest.hexdigest()
        if self.bytes_read != self.size or digest != self.sha256:
            raise ChecksumMismatch(
                f"{self.label}: SHA-256 mismatch: the stored object has {self.bytes_read} bytes with sha256 "
                f"{digest[:16]}..., the manifest says {self.size} bytes with {self.sha256[:16]}... "
                f"(the object was altered or damaged in storage)")

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "VerifiedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_verified(storage: Storage, key: str, *, size: int, sha256: str, label: str) -> VerifiedReader:
    """Open ``key`` to be read and then verified; ObjectNotFound when it does not exist."""
    return VerifiedReader(storage.open(key), size=size, sha256=sha256, label=label)
