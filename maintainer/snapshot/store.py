"""Where snapshots live in storage, how they are archived, listed, read and deleted.

    snapshots/<name>/<snapshot id>/snapshot.tar.zst   the members, one zstd-compressed tar
    snapshots/<name>/<snapshot id>/snapshot.tar.zst.age  the same, encrypted (age), when the storage encrypts
    snapshots/<name>/<snapshot id>/manifest.json      written last: a snapshot exists only with it

``<name>`` is the compose project (or the job name). Snapshots are an ObjectSet
(maintainer.storage.objectset), like backups: the same ids, listing, deletion
and clean-up. The manifest is also the tar's last member, so an extracted
snapshot describes itself; the one beside the archive records its SHA-256,
which every read checks.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

import zstandard
from pydantic import ValidationError

from maintainer.crypto.errors import DecryptionError
from maintainer.crypto.keyring import DecryptingReader, Keyring
from maintainer.errors import MaintainerError, ObjectNotFound, StorageError
from maintainer.snapshot.manifest import SnapshotArchive, SnapshotManifest
from maintainer.storage.base import Storage
from maintainer.storage.objectset import ChecksumMismatch, ObjectSet, open_verified, parse_id

SNAPSHOTS = ObjectSet("snapshots")
ARCHIVE = "snapshot.tar.zst"


class SnapshotNotFound(MaintainerError):
    """No snapshot matches what was asked for."""


@dataclass
class SnapshotEntry:
    name: str
    id: str
    manifest: SnapshotManifest

    @property
    def created(self) -> datetime:
        return parse_id(self.id)

    @property
    def archive(self) -> SnapshotArchive:
        assert self.manifest.archive is not None  # list_snapshots lists no snapshot without one
        return self.manifest.archive

    @property
    def size(self) -> int:
        return self.archive.size


def write_snapshot(storage: Storage, name: str, snapshot_id: str, members: dict[str, bytes],
                   manifest: SnapshotManifest, level: int = 10, keyring: Keyring | None = None) -> SnapshotEntry:
    """Stream the members and the manifest into one tar.zst (encrypted with age when
    ``keyring`` is enabled), then write the manifest beside it (last), with the
    archive's size and SHA-256. Returns the snapshot as stored. On failure nothing
    of it stays behind (best effort)."""

    keyring = keyring or Keyring(storage.name)
    key = SNAPSHOTS.key(name, snapshot_id, keyring.name(ARCHIVE))
    digest = hashlib.sha256()
    with keyring.writer(storage.open_writer(key)) as writer:
        class _Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b) -> int:
                b = bytes(b)
                digest.update(b)
                writer.write(b)
                return len(b)

        cctx = zstandard.ZstdCompressor(level=level)
        with cctx.stream_writer(_Sink(), closefd=False) as zout:
            with tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                mtime = int(parse_id(snapshot_id).timestamp())
                for member_name in sorted(members):
                    _add(tar, member_name, members[member_name], mtime)
                _add(tar, SNAPSHOTS.manifest, manifest.to_json(archive=False), mtime)
    assert writer.info is not None
    if keyring.enabled:
        archive = SnapshotArchive(key=key, size=writer.stored_size, sha256=writer.stored_sha256,
                                  encryption=keyring.record(), compressed_sha256=digest.hexdigest())
    else:
        archive = SnapshotArchive(key=key, size=writer.info.size, sha256=digest.hexdigest())
    stored = manifest.model_copy(update={"archive": archive})
    try:
        SNAPSHOTS.write_manifest(storage, name, snapshot_id, stored.to_json())
    except BaseException:
        SNAPSHOTS.discard(storage, name, snapshot_id)  # an archive without its manifest is never listed
        raise
    return SnapshotEntry(name, snapshot_id, stored)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def remove_leftovers(storage: Storage, name: str) -> list[str]:
    """What failed or killed snapshot runs left under this snapshot name (never a
    snapshot another run is writing: see maintainer.storage.objectset)."""
    return SNAPSHOTS.remove_leftovers(storage, name)


def list_snapshots(storage: Storage, name: str) -> list[SnapshotEntry]:
    """Complete snapshots (those with a valid manifest), oldest first."""
    entries = []
    for item in SNAPSHOTS.items(storage, name):
        try:
            manifest = SnapshotManifest.model_validate_json(storage.get_bytes(item.objects[SNAPSHOTS.manifest].key))
        except (ValidationError, ValueError, ObjectNotFound):
            continue
        if manifest.archive is not None:
            entries.append(SnapshotEntry(name, item.id, manifest))
    return entries


def find_snapshot(storage: Storage, name: str, snapshot_id: str | None = None) -> SnapshotEntry:
    """The snapshot with this id, or the newest; SnapshotNotFound says what exists."""
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


def read_members(storage: Storage, entry: SnapshotEntry,
                 keyring: Keyring | None = None) -> Iterator[tuple[str, bytes]]:
    """Each (member name, content) of a stored snapshot, streaming from storage.

    The archive passes through SHA-256, checked after the last member: consume
    every member before acting on any. Raises ChecksumMismatch if the stored
    archive is not the one written (also when the damage broke decryption or
    decompression first), StorageError if it matches but cannot be read, and
    for an encrypted archive MissingIdentity/NoMatchingIdentity (naming the
    storage and recipients) before reading it, DamagedCiphertext never: an
    altered chunk is reported as the checksum mismatch it is."""

    label = f"snapshot {entry.name}/{entry.id}"
    archive = entry.archive
    keyring = keyring or Keyring(storage.name)
    identities = (keyring.identities_for(label, archive.encryption.recipients)
                  if archive.encryption is not None else None)
    with open_verified(storage, archive.key, size=archive.size, sha256=archive.sha256, label=label) as raw:
        plain = DecryptingReader(raw, identities) if identities is not None else raw
        try:
            with zstandard.ZstdDecompressor().stream_reader(plain, closefd=False) as zin:
                with tarfile.open(fileobj=zin, mode="r|") as tar:
                    for info in tar:
                        if not info.isfile():
                            continue
                        f = tar.extractfile(info)
                        yield info.name, f.read() if f else b""
        except DecryptionError as exc:  # the identity matched a recipient: the bytes are damaged
            raw.verify()
            raise StorageError(f"{label} cannot be decrypted (its SHA-256 matches, so it was stored that way): "
                               f"{exc.message}") from None
        except MaintainerError:
            raise
        except Exception as exc:  # noqa: BLE001 - damaged bytes break tarfile in many ways
            raw.verify()  # altered in storage: say that, not how the damage showed
            if not isinstance(exc, (tarfile.TarError, zstandard.ZstdError, EOFError)):
                raise
            raise StorageError(f"{label} is damaged (its SHA-256 matches, so it was stored that way): "
                               f"{exc}") from None
        if identities is not None:
            try:
                plain.read()  # to the final chunk: age's end-of-stream check (a truncation fails here)
            except DecryptionError as exc:
                raw.verify()
                raise StorageError(f"{label} cannot be decrypted (its SHA-256 matches, so it was stored that "
                                   f"way): {exc.message}") from None
        raw.verify()
        if identities is not None:
            if archive.compressed_sha256 and plain.plain_sha256 != archive.compressed_sha256:
                raise ChecksumMismatch(f"{label}: SHA-256 of the decrypted (compressed) archive does not match "
                                       "the manifest")


def delete_snapshot(storage: Storage, entry: SnapshotEntry) -> None:
    """Manifest first: from that moment the snapshot no longer exists, even if the rest stays."""
    SNAPSHOTS.delete(storage, entry.name, entry.id)
