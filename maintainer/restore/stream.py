"""Reading a stored backup object back: hashed while read, decrypted and decompressed on the fly.

Every stored byte passes through SHA-256 and the digest is compared with the
manifest when the stream ends, so a caller that consumes the whole stream
before acting on it (the dump must be complete before pg_restore runs anyway)
never acts on an altered object. Memory stays bounded by the chunk size.

An encrypted object (its manifest entry has ``encryption``) is also
authenticated chunk by chunk by age before zstd sees it, and the compressed
bytes are checked against ``compressed_sha256``. The identity is checked
against the recipients in the manifest before the first byte is read, so a
missing or wrong key fails at once with the storage and recipients named.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import zstandard

from maintainer.backup.manifest import StoredObject
from maintainer.backup.pipeline import IncompleteStream, decompress_frames
from maintainer.crypto.errors import DecryptionError
from maintainer.crypto.keyring import Keyring, decrypting
from maintainer.errors import StorageError
from maintainer.storage.base import Storage

CHUNK = 1024 * 1024


class ChecksumMismatch(StorageError):
    """A stored object's bytes are not the ones the backup wrote."""


class VerifiedObject:
    """One stored object of a backup, read and checked against its manifest entry.

    ``stored_bytes``/``raw_bytes`` count what was read and produced so far.
    """

    def __init__(self, storage: Storage, obj: StoredObject, *, label: str | None = None,
                 keyring: Keyring | None = None):
        self.storage = storage
        self.keyring = keyring or Keyring(storage.name)
        self.obj = obj
        self.label = label or obj.key
        self.stored_bytes = 0
        self.raw_bytes = 0

    def chunks(self) -> Iterator[bytes]:
        """The uncompressed content. Raises ChecksumMismatch after the last byte if
        the stored bytes differ (also when the damage broke decryption or
        decompression first), StorageError if they match but cannot be decrypted
        or decompressed, and MissingIdentity/NoMatchingIdentity before reading
        an encrypted object that the keyring's identities cannot open."""

        identities = None
        if self.obj.encryption is not None:
            identities = self.keyring.identities_for(self.label, self.obj.encryption.recipients)
        digest = hashlib.sha256()
        raw_digest = hashlib.sha256() if self.obj.raw_sha256 else None
        compressed_digest = hashlib.sha256() if identities is not None and self.obj.compressed_sha256 else None
        stream = self.storage.open(self.obj.key)

        def stored_blocks() -> Iterator[bytes]:
            while block := stream.read(CHUNK):
                self.stored_bytes += len(block)
                digest.update(block)
                yield block

        def compressed_blocks() -> Iterator[bytes]:
            if identities is None:
                yield from stored_blocks()
                return

            for plain in decrypting(stored_blocks(), identities):
                if compressed_digest is not None:
                    compressed_digest.update(plain)
                yield plain

        try:
            try:
                for out in decompress_frames(compressed_blocks()):
                    self.raw_bytes += len(out)
                    if raw_digest is not None:
                        raw_digest.update(out)
                    yield out
            except zstandard.ZstdError as exc:
                self._drain(stream, digest)
                self._check_digest(digest)
                raise StorageError(f"{self.label}: cannot decompress (checksum matches, "
                                   f"so the backup was written damaged): {exc}") from None
            except IncompleteStream:
                self._check_digest(digest)
                raise StorageError(f"{self.label}: the compressed stream ends early") from None
            except DecryptionError as exc:  # the identity matched a recipient: the bytes are damaged
                self._drain(stream, digest)
                self._check_digest(digest)
                raise StorageError(f"{self.label}: cannot decrypt (checksum matches, so the backup was "
                                   f"written damaged): {exc.message}") from None
        finally:
            stream.close()
        self._check_digest(digest)
        if self.raw_bytes != self.obj.raw_size:
            raise ChecksumMismatch(f"{self.label}: {self.raw_bytes} bytes after decompression, "
                                   f"the manifest says {self.obj.raw_size}")
        if compressed_digest is not None and compressed_digest.hexdigest() != self.obj.compressed_sha256:
            raise ChecksumMismatch(f"{self.label}: SHA-256 of the decrypted (compressed) content does not match "
                                   "the manifest")
        if raw_digest is not None and raw_digest.hexdigest() != self.obj.raw_sha256:
            raise ChecksumMismatch(f"{self.label}: SHA-256 of the uncompressed content does not match the manifest")

    def read_all(self) -> bytes:
        """The whole verified content; only for small objects (globals)."""
        return b"".join(self.chunks())

    def _drain(self, stream, digest) -> None:
        while block := stream.read(CHUNK):
            self.stored_bytes += len(block)
            digest.update(block)

    def _check_digest(self, digest) -> None:
        if self.stored_bytes != self.obj.stored_size or digest.hexdigest() != self.obj.sha256:
            raise ChecksumMismatch(
                f"{self.label}: SHA-256 mismatch: stored object has {self.stored_bytes} bytes with "
                f"sha256 {digest.hexdigest()[:16]}..., the manifest says {self.obj.stored_size} bytes "
                f"with {self.obj.sha256[:16]}... (the object was altered or damaged in storage)")
