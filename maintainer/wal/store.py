"""Writing the WAL archive: segments, partial segments, history files and the record.

Each object is the raw file compressed with zstd (with the frame checksum, so a
partial segment or a history file, which carry no SHA-256 in their names, still
verify on read) and sealed with age when the storage encrypts. Objects are
small (a segment is 16 MB raw by default), so each is encoded in memory and
put in one atomic write; the complete segment's write removes its partial.
Raises StorageError from the storage, JobError when the archive in storage
belongs to another cluster.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import datetime, timezone

import zstandard

from maintainer.crypto.keyring import Keyring
from maintainer.errors import JobError
from maintainer.storage.base import Storage
from maintainer.wal import layout
from maintainer.wal.archive import ArchiveRecord, read_archive_record

LEVEL = 3  # WAL compresses about 3-6x at level 3, at hundreds of MB/s


def encode(data: bytes, keyring: Keyring | None) -> bytes:
    """``data`` as stored: zstd with a content checksum, then age when enabled."""
    packed = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compress(data)
    return keyring.seal(packed) if keyring is not None else packed


def encrypted(keyring: Keyring | None) -> bool:
    return keyring is not None and keyring.enabled


def put_segment(storage: Storage, server: str, name: str, data: bytes, keyring: Keyring | None) -> str:
    """Store a complete segment under its name and SHA-256, then drop its partial; the key."""
    enc = encrypted(keyring)
    key = layout.segment_key(server, name, hashlib.sha256(data).hexdigest(), encrypted=enc)
    storage.put(key, encode(data, keyring))
    for stale in (layout.partial_key(server, name, encrypted=False), layout.partial_key(server, name, encrypted=True)):
        storage.delete(stale)
    return key


def put_partial(storage: Storage, server: str, name: str, data: bytes, keyring: Keyring | None) -> str:
    """Store (replace) the partial segment ``name``; the key."""
    key = layout.partial_key(server, name, encrypted=encrypted(keyring))
    storage.put(key, encode(data, keyring))
    return key


def put_history(storage: Storage, server: str, timeline: int, data: bytes, keyring: Keyring | None) -> str:
    key = layout.history_key(server, timeline, encrypted=encrypted(keyring))
    storage.put(key, encode(data, keyring))
    return key


def ensure_archive_record(storage: Storage, server: str, *, system_identifier: str, wal_segment_size: int,
                          pg_major: int) -> ArchiveRecord:
    """The archive's record, written when missing; JobError when the stored one is
    another cluster's (mixing two clusters' WAL would make both useless)."""
    record = read_archive_record(storage, server)
    if record is None:
        record = ArchiveRecord(server=server, system_identifier=system_identifier, wal_segment_size=wal_segment_size,
                               pg_major=pg_major, created=datetime.now(timezone.utc))
        storage.put(layout.archive_record_key(server), record.model_dump_json(indent=2).encode())
        return record
    if record.system_identifier != system_identifier:
        raise JobError(f"WAL archive {server} in {storage.url} belongs to the cluster with system identifier "
                       f"{record.system_identifier}, and the server now is {system_identifier}",
                       hint=f"a new cluster needs its own archive: move wal/{server}/ away or archive it under "
                            "another databases entry name")
    if record.wal_segment_size != wal_segment_size:
        raise JobError(f"WAL archive {server}: stored with {record.wal_segment_size}-byte segments, the server "
                       f"now uses {wal_segment_size}")
    if record.pg_major != pg_major:  # record what wrote the newest WAL
        record = record.model_copy(update={"pg_major": pg_major})
        storage.put(layout.archive_record_key(server), record.model_dump_json(indent=2).encode())
    return record


class SegmentEncoder:
    """A segment arriving in pieces: hashed, compressed into a spool (memory up to
    SPOOL bytes, then a temporary file), so a 1 GB segment never sits in memory.
    ``finish`` returns the SHA-256 of the raw bytes; then ``store`` it."""

    SPOOL = 32 * 1024 * 1024

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.raw_size = 0
        self.spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL)
        self._cobj = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compressobj()

    def update(self, data: bytes) -> None:
        self.digest.update(data)
        self.raw_size += len(data)
        self.spool.write(self._cobj.compress(data))

    def finish(self) -> str:
        self.spool.write(self._cobj.flush())
        self.spool.seek(0)
        return self.digest.hexdigest()

    def store(self, storage: Storage, key: str, keyring: Keyring | None) -> int:
        """Put the compressed bytes (sealed when the keyring encrypts) under ``key``; the stored size."""
        self.spool.seek(0)
        inner = storage.open_writer(key)
        writer = keyring.writer(inner) if keyring is not None else inner
        with writer:
            while chunk := self.spool.read(1024 * 1024):
                writer.write(chunk)
        return getattr(writer, "stored_size", None) or inner.size

    def close(self) -> None:
        self.spool.close()


def store_segment(storage: Storage, server: str, name: str, encoder: SegmentEncoder, keyring: Keyring | None,
                  *, partial: bool) -> str:
    """Store an encoded segment: complete (under its SHA-256, then its partial goes) or partial."""
    enc = encrypted(keyring)
    if partial:
        key = layout.partial_key(server, name, encrypted=enc)
        encoder.store(storage, key, keyring)
        return key
    key = layout.segment_key(server, name, encoder.digest.hexdigest(), encrypted=enc)
    encoder.store(storage, key, keyring)
    for stale in (layout.partial_key(server, name, encrypted=False), layout.partial_key(server, name, encrypted=True)):
        storage.delete(stale)
    return key
