"""Where snapshots live in storage, how they are archived, listed, read and deleted.

    snapshots/<name>/<snapshot id>/snapshot.tar.zst   the members, one zstd-compressed tar
    snapshots/<name>/<snapshot id>/manifest.json      written last: a snapshot exists only with it

``<name>`` is the compose project (or the job name); ``<snapshot id>`` is the UTC
time, 20261126T040000Z, so keys sort by age. The manifest is also the tar's
last member, so an extracted snapshot describes itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from maintainer.errors import MaintainerError, ObjectNotFound, StorageError
from maintainer.storage.base import Storage

ROOT = "snapshots"
ARCHIVE = "snapshot.tar.zst"
MANIFEST = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
FORMAT = 1


class SnapshotNotFound(MaintainerError):
    """No snapshot matches what was asked for."""


def new_snapshot_id(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime(ID_FORMAT)


def parse_snapshot_id(snapshot_id: str) -> datetime:
    return datetime.strptime(snapshot_id[:16], ID_FORMAT).replace(tzinfo=timezone.utc)


def prefix(name: str, snapshot_id: str = "") -> str:
    return f"{ROOT}/{name}/" + (f"{snapshot_id}/" if snapshot_id else "")


def content_hash(members: dict[str, bytes]) -> str:
    """sha256 over every member's name and content: the snapshot's identity, free of times."""
    h = hashlib.sha256()
    for name in sorted(members):
        h.update(name.encode() + b"\0" + hashlib.sha256(members[name]).hexdigest().encode() + b"\n")
    return "sha256:" + h.hexdigest()


@dataclass
class SnapshotEntry:
    name: str
    id: str
    manifest: dict

    @property
    def created(self) -> datetime:
        return parse_snapshot_id(self.id)

    @property
    def size(self) -> int:
        return int(self.manifest.get("archive", {}).get("size") or 0)


def write_snapshot(storage: Storage, name: str, snapshot_id: str, members: dict[str, bytes], manifest: dict,
                   level: int = 10) -> dict:
    """Stream the members and the manifest into one tar.zst, then write the manifest
    beside it (last). Returns the manifest as stored."""
    import zstandard

    key = prefix(name, snapshot_id) + ARCHIVE
    inner = dict(manifest)
    digest = hashlib.sha256()
    with storage.open_writer(key) as writer:
        class _Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b) -> int:
                b = bytes(b)
                digest.update(b)
                writer.write(b)
                return len(b)

        sink = _Sink()
        cctx = zstandard.ZstdCompressor(level=level)
        with cctx.stream_writer(sink, closefd=False) as zout:
            with tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                mtime = int(parse_snapshot_id(snapshot_id).timestamp())
                for member_name in sorted(members):
                    _add(tar, member_name, members[member_name], mtime)
                _add(tar, MANIFEST, json.dumps(inner, indent=2, sort_keys=True).encode() + b"\n", mtime)
    info = writer.info
    assert info is not None
    stored = {**manifest, "archive": {"key": key, "size": info.size, "sha256": digest.hexdigest()}}
    try:
        storage.put(prefix(name, snapshot_id) + MANIFEST, json.dumps(stored, indent=2, sort_keys=True).encode() + b"\n")
    except BaseException:
        storage.delete(key)  # an archive without its manifest is never listed: remove it now
        raise
    return stored


def remove_leftovers(storage: Storage, name: str) -> list[str]:
    """What failed or killed snapshot runs left under this snapshot name (see
    maintainer.storage.leftovers: never a snapshot another run is writing)."""
    from maintainer.storage import leftovers

    return leftovers.remove_leftovers(storage, prefix(name), MANIFEST)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def list_snapshots(storage: Storage, name: str) -> list[SnapshotEntry]:
    """Complete snapshots (those with a manifest), oldest first."""
    entries = []
    for obj in storage.list(prefix(name)):
        rest = obj.key[len(prefix(name)):]
        parts = rest.split("/")
        if len(parts) != 2 or parts[1] != MANIFEST:
            continue
        try:
            parse_snapshot_id(parts[0])
            manifest = json.loads(storage.get_bytes(obj.key))
        except (ValueError, ObjectNotFound):
            continue
        entries.append(SnapshotEntry(name, parts[0], manifest))
    return sorted(entries, key=lambda e: e.id)


def find_snapshot(storage: Storage, name: str, snapshot_id: str | None = None) -> SnapshotEntry:
    entries = list_snapshots(storage, name)
    if not entries:
        raise SnapshotNotFound(f"no snapshots of {name} in storage {storage.name} ({storage.url})")
    if snapshot_id is None:
        return entries[-1]
    for e in entries:
        if e.id == snapshot_id:
            return e
    raise SnapshotNotFound(f"no snapshot {snapshot_id} of {name} in storage {storage.name}",
                           hint=f"`maintainer snapshots` lists them; newest is {entries[-1].id}")


def read_members(storage: Storage, entry: SnapshotEntry) -> Iterator[tuple[str, bytes]]:
    """Each (member name, content) of a stored snapshot, streaming from storage."""
    import zstandard

    key = entry.manifest.get("archive", {}).get("key") or prefix(entry.name, entry.id) + ARCHIVE
    try:
        with storage.open(key) as raw:
            with zstandard.ZstdDecompressor().stream_reader(raw) as zin:
                with tarfile.open(fileobj=zin, mode="r|") as tar:
                    for info in tar:
                        if not info.isfile():
                            continue
                        f = tar.extractfile(info)
                        yield info.name, f.read() if f else b""
    except (tarfile.TarError, zstandard.ZstdError) as exc:
        raise StorageError(f"snapshot {entry.name}/{entry.id} is damaged: {exc}") from None


def delete_snapshot(storage: Storage, entry: SnapshotEntry) -> None:
    """Manifest first: from that moment the snapshot no longer exists, even if the rest stays."""
    storage.delete(prefix(entry.name, entry.id) + MANIFEST)
    storage.delete(prefix(entry.name, entry.id) + ARCHIVE)
