"""Where image backups live in storage: content-addressed blobs, and sets whose manifest
is written last.

    image-blobs/<hex>.zst[.age]         a layer tar or an image config, zstd-compressed,
                                        age-encrypted when the storage encrypts
    image-blobs/<hex>.json              its record, written after it: size, stored size,
                                        SHA-256 of the stored bytes, encryption
    image-sets/<group>/<id>/manifest.json   one saved set: its images and every blob
                                        record they need (ObjectSet: written last)

``<hex>`` is the SHA-256 of the uncompressed content: a layer's diff id, or the
image id for a config. So a layer is stored once, whatever number of images and
sets use it, and a daily run stores only the layers that changed. A blob exists
only once its record exists (the record is written last, as a manifest is).

Deleting: sets go by retention (manifest first). A blob goes only when no
remaining set of any group references it and its record is older than
ABANDONED_AFTER (a run that is writing a new set may have stored the blob and
not yet its manifest). Data without a record goes after ABANDONED_AFTER too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from maintainer.errors import MaintainerError, ObjectNotFound, StorageError
from maintainer.storage.base import ABANDONED_AFTER, Storage
from maintainer.storage.objectset import Item, ObjectSet, parse_id

BLOBS = "image-blobs/"
SETS = ObjectSet("image-sets")  # an ObjectSet root is one path segment
RECORD_SUFFIX = ".json"
FORMAT = 1


class ImageSetNotFound(MaintainerError):
    """No saved image set matches what was asked for."""


@dataclass
class BlobRecord:
    digest: str  # sha256:<hex> of the uncompressed content
    key: str  # where the stored bytes are
    size: int  # uncompressed bytes
    stored_size: int
    sha256: str  # of the stored bytes
    compression: str = "zstd"
    encryption: dict | None = None  # {"format": "age", "recipients": [...]} when encrypted

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def record_key(digest: str) -> str:
    return f"{BLOBS}{digest.removeprefix('sha256:')}{RECORD_SUFFIX}"


def data_name(digest: str) -> str:
    return f"{digest.removeprefix('sha256:')}.zst"


@dataclass
class SavedImage:
    id: str  # sha256:<config digest>: what `docker images --no-trunc` shows, kept by a load
    tags: list[str]
    repo_digests: list[str]  # registry facts when it was saved (a load cannot bring them back)
    layers: list[str]  # diff ids, base first (RootFS.Layers)
    size: int  # uncompressed bytes of config and distinct layers

    @property
    def blobs(self) -> list[str]:
        return [self.id, *dict.fromkeys(self.layers)]


@dataclass
class SetManifest:
    id: str
    group: str
    job: str
    run_id: str
    created: datetime
    images: list[SavedImage]
    blobs: dict[str, BlobRecord]  # every blob the images need
    new_blobs: int = 0  # stored by this run
    new_bytes: int = 0  # stored bytes this run added
    format: int = FORMAT

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["created"] = self.created.isoformat()
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, label: str) -> "SetManifest":
        try:
            doc = json.loads(data)
            doc["created"] = datetime.fromisoformat(doc["created"])
            doc["images"] = [SavedImage(**i) for i in doc["images"]]
            doc["blobs"] = {k: BlobRecord(**v) for k, v in doc["blobs"].items()}
            return cls(**doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{label}: unreadable image set manifest ({type(exc).__name__}: {exc})") from None

    @property
    def stored_size(self) -> int:
        return sum(b.stored_size for b in self.blobs.values())


@dataclass
class SetEntry:
    group: str
    id: str
    manifest: SetManifest
    objects: dict = field(default_factory=dict)

    @property
    def created(self) -> datetime:
        return parse_id(self.id)


def stored_blobs(storage: Storage) -> dict[str, BlobRecord]:
    """Every complete blob (its record exists), by digest."""
    found = {}
    for info in storage.list(BLOBS):
        if info.key.endswith(RECORD_SUFFIX):
            record = read_record(storage, info.key)
            if record is not None:
                found[record.digest] = record
    return found


class BlobIndex:
    """Which blobs storage holds, from one listing; a record is read only when a run
    asks for that digest (one small GET per blob an image needs, not per blob stored)."""

    def __init__(self, storage: Storage):
        self._storage = storage
        self._keys = {info.key for info in storage.list(BLOBS) if info.key.endswith(RECORD_SUFFIX)}
        self._records: dict[str, BlobRecord | None] = {}

    def get(self, digest: str) -> BlobRecord | None:
        if digest not in self._records:
            key = record_key(digest)
            self._records[digest] = read_record(self._storage, key) if key in self._keys else None
        return self._records[digest]

    def __contains__(self, digest: str) -> bool:
        return self.get(digest) is not None

    def __getitem__(self, digest: str) -> BlobRecord:
        record = self.get(digest)
        if record is None:
            raise KeyError(digest)
        return record

    def __setitem__(self, digest: str, record: BlobRecord) -> None:
        self._records[digest] = record
        self._keys.add(record_key(digest))


def read_record(storage: Storage, key: str) -> BlobRecord | None:
    try:
        return BlobRecord(**json.loads(storage.get_bytes(key)))
    except ObjectNotFound:
        return None
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{key}: unreadable blob record ({type(exc).__name__})") from None


def write_record(storage: Storage, record: BlobRecord) -> None:
    storage.put(record_key(record.digest), json.dumps(asdict(record), sort_keys=True).encode())


def list_sets(storage: Storage, group: str | None = None) -> list[SetEntry]:
    """Complete sets, oldest first within a group."""
    return [_entry(storage, item) for item in SETS.items(storage, group)]


def _entry(storage: Storage, item: Item) -> SetEntry:
    key = SETS.manifest_key(item.group, item.id)
    return SetEntry(item.group, item.id, SetManifest.from_json(storage.get_bytes(key), key), item.objects)


def find_set(storage: Storage, group: str | None, set_id: str | None) -> SetEntry:
    """The set ``set_id`` (newest when None); ImageSetNotFound naming what exists."""
    sets = sorted(list_sets(storage, group), key=lambda e: e.id)
    if not sets:
        raise ImageSetNotFound(f"no saved image set in storage '{storage.name}'"
                               + (f" for {group}" if group else ""), hint="run the image_backup job first")
    if set_id is None:
        return sets[-1]
    for entry in sets:
        if entry.id == set_id:
            return entry
    raise ImageSetNotFound(f"no image set {set_id} in storage '{storage.name}' (sets: "
                           + ", ".join(e.id for e in sets[-5:]) + ")", hint="see `maintainer images`")


def delete_unreferenced_blobs(storage: Storage, now: datetime | None = None) -> list[str]:
    """Delete blobs no complete set references (record first); returns their digests."""
    now = now or datetime.now(timezone.utc)
    settled = now - ABANDONED_AFTER
    referenced = {d for entry in list_sets(storage) for d in entry.manifest.blobs}
    deleted = []
    objects = list(storage.list(BLOBS))
    keys = {o.key for o in objects}
    records = {o.key: o for o in objects if o.key.endswith(RECORD_SUFFIX)}
    for key, info in records.items():
        record = read_record(storage, key)
        if record is None or record.digest in referenced or info.modified > settled:
            continue
        storage.delete(key)
        storage.delete(record.key)
        deleted.append(record.digest)
    recorded_data = set()
    for key in records:
        hex_ = key[len(BLOBS):-len(RECORD_SUFFIX)]
        recorded_data |= {k for k in keys if k.startswith(f"{BLOBS}{hex_}.") and k != key}
    for info in objects:
        if info.key in records or info.key in recorded_data or info.modified > settled:
            continue
        storage.delete(info.key)  # data a killed run stored without its record
    return deleted

