"""Save images from the engine into content-addressed blobs (see images.backup_store).

An image's blobs are its config (named by the image id) and its layers (named by
their diff ids, from ``docker image inspect``'s RootFS). When storage already has
all of them, the image costs one inspect and no ``docker save`` at all. Otherwise
``docker save`` is read as a stream; each file in it is hashed while it is
copied to a local temporary file (one file at a time, never into memory), and
only a blob the set needs and storage lacks is compressed (zstd), encrypted when
the storage encrypts, and stored, followed by its record. Both the old
``docker save`` layout (``<id>/layer.tar``, ``<hex>.json``) and the OCI layout of
newer engines (``blobs/sha256/<hex>``) are read.

Raises DockerError (engine), StorageError (storage), JobError when the saved
stream lacks a blob the image needs, Interrupted when cancelled.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator

import zstandard

from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import docker_errors
from maintainer.errors import Interrupted, JobError
from maintainer.images.backup_store import BLOBS, BlobIndex, BlobRecord, SavedImage, data_name, write_record
from maintainer.storage.base import COPY_CHUNK, Storage


@dataclass
class SaveReport:
    new: list[BlobRecord] = field(default_factory=list)

    @property
    def new_bytes(self) -> int:
        return sum(r.stored_size for r in self.new)


class _ChunkReader:
    """A ``read(n)`` file over an iterator of byte chunks (the engine's save stream)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = bytearray()
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        while not self._ended and (n < 0 or len(self._buffer) < n):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._ended = True
            else:
                self._buffer += chunk
        if n < 0 or n >= len(self._buffer):
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
        return data


def describe_image(api, ref: str) -> SavedImage:
    """What an image is, from the engine: id, tags, registry digests and layers."""
    with docker_errors(f"inspect image {ref}"):
        attrs = api.inspect_image(ref)
    return SavedImage(id=attrs["Id"], tags=sorted(attrs.get("RepoTags") or []),
                      repo_digests=sorted(attrs.get("RepoDigests") or []),
                      layers=list((attrs.get("RootFS") or {}).get("Layers") or []), size=0)


def _candidate(name: str) -> bool:
    return (name.endswith("/layer.tar") or (name.endswith(".json") and "/" not in name)
            or name.startswith("blobs/sha256/"))


def save_image(api, image: SavedImage, storage: Storage, keyring: Keyring, known: BlobIndex | dict[str, BlobRecord], *,
               level: int = 3, cancel: threading.Event | None = None) -> SaveReport:
    """Store the blobs of ``image`` that ``known`` (digest -> record, updated here) lacks."""
    report = SaveReport()
    missing = {d for d in image.blobs if d not in known}
    if missing:
        with docker_errors(f"save image {image.id[:19]}"):
            stream = api.get_image(image.id, chunk_size=COPY_CHUNK)
            with tarfile.open(fileobj=_ChunkReader(stream), mode="r|") as tar:  # type: ignore[arg-type]
                for member in tar:
                    if cancel is not None and cancel.is_set():
                        raise Interrupted("image save stopped")
                    if not member.isfile() or not _candidate(member.name):
                        continue
                    source = tar.extractfile(member)
                    assert source is not None
                    record = _store_if_missing(source, member.size, storage, keyring, missing, level)
                    if record is not None:
                        known[record.digest] = record
                        missing.discard(record.digest)
                        report.new.append(record)
        if missing:
            raise JobError(f"docker save of {image.tags[0] if image.tags else image.id[:19]} lacked "
                           f"{len(missing)} of its blobs ({sorted(missing)[0][:19]}...)")
    image.size = sum(known[d].size for d in image.blobs)
    return report


def _store_if_missing(source: BinaryIO, size: int, storage: Storage, keyring: Keyring, wanted: set[str],
                      level: int) -> BlobRecord | None:
    """Hash ``source`` into a temporary file; store it when its digest is wanted."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile(prefix="maintainer-image-") as spool:
        copied = 0
        while chunk := source.read(COPY_CHUNK):
            digest.update(chunk)
            spool.write(chunk)
            copied += len(chunk)
        name = f"sha256:{digest.hexdigest()}"
        if name not in wanted:
            return None
        if copied != size:
            raise JobError(f"image blob {name[:19]}: {copied} bytes read, the save stream announced {size}")
        spool.seek(0)
        return store_blob(spool, name, size, storage, keyring, level)


def store_blob(source: BinaryIO, digest: str, size: int, storage: Storage, keyring: Keyring,
               level: int = 3) -> BlobRecord:
    """Compress (and encrypt) ``source`` into the blob of ``digest``, then write its record."""
    key = BLOBS + keyring.name(data_name(digest))
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    stored_hash = hashlib.sha256()
    stored = 0
    with keyring.writer(storage.open_writer(key)) as writer:
        while True:
            chunk = source.read(COPY_CHUNK)
            out = compressor.compress(chunk) if chunk else compressor.flush()
            if out:
                stored_hash.update(out)
                stored += len(out)
                writer.write(out)
            if not chunk:
                break
    if keyring.enabled:
        record = BlobRecord(digest, key, size, writer.stored_size, writer.stored_sha256,
                            encryption=keyring.record())
    else:
        record = BlobRecord(digest, key, size, stored, stored_hash.hexdigest())
    write_record(storage, record)
    return record
