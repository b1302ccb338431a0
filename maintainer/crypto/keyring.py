"""How one storage encrypts: its recipients for writing, its identities for reading.

A ``Keyring`` is built from the storage's ``encryption`` setting wherever a job
or command opens that storage, and handed to the code that writes or reads its
objects. Writing asks only for the recipients; the identities are read (from
their files, each time, so a rotated key is picked up) only when an encrypted
object is read. Whether an object is encrypted is decided by its manifest
entry, never by the current setting: a storage that switched to encryption
still reads its older, unencrypted objects, and one that switched back still
needs the identity for the encrypted ones.

Errors name the storage and the recipients an object was encrypted to (public
keys, from the manifest), never a secret: MissingIdentity when no identity is
configured or its file cannot be read, NoMatchingIdentity when none of the
identities is one of those recipients.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator, Sequence

from maintainer.crypto.errors import DecryptionError, NoMatchingIdentity
from maintainer.errors import MaintainerError

if TYPE_CHECKING:
    from maintainer.config.models import Config, EncryptionSpec
    from maintainer.crypto.keys import Identity, Recipient
    from maintainer.storage.base import Writer

FORMAT = "age"
SUFFIX = ".age"  # appended to an encrypted object's usual name: dump.pgcustom.zst.age


class MissingIdentity(DecryptionError):
    """An encrypted object is to be read and no identity is available."""


class Keyring:
    """The ``encryption`` setting of storage ``storage``; ``spec`` None: unencrypted."""

    def __init__(self, storage: str, spec: "EncryptionSpec | None" = None):
        self.storage = storage
        self.spec = spec
        self._recipients: list[Recipient] | None = None

    @classmethod
    def of(cls, config: "Config", storage: str) -> "Keyring":
        return cls(storage, config.storage[storage].encryption)

    @property
    def enabled(self) -> bool:
        """New objects are encrypted."""
        return self.spec is not None

    def recipients(self) -> list["Recipient"]:
        """Every recipient (read once per keyring). KeyFormatError for a bad one."""
        assert self.spec is not None
        if self._recipients is None:
            self._recipients = self.spec.recipient_keys()
        return self._recipients

    def record(self) -> dict:
        """What a manifest says about an object encrypted now: format and recipients (public keys)."""
        return {"format": FORMAT, "recipients": [str(r) for r in self.recipients()]}

    def name(self, plain_name: str) -> str:
        """The stored name of an object: ``plain_name`` with ``.age`` when encrypted."""
        return plain_name + SUFFIX if self.enabled else plain_name

    def writer(self, inner: "Writer") -> "Writer":
        """``inner`` itself, or an EncryptingWriter around it (``stored_sha256``/``stored_size``)."""
        if not self.enabled:
            return inner
        # Lazy: loading cryptography's AEAD bindings costs ~22 ms and ~10 MB RSS, and unencrypted runs never need them.
        from maintainer.crypto.stream import EncryptingWriter

        try:
            return EncryptingWriter(inner, self.recipients())
        except BaseException:  # a bad recipients file: leave no upload or temp file behind
            inner.abort()
            raise

    def seal(self, data: bytes) -> bytes:
        """``data`` as stored: encrypted when enabled (small objects: globals)."""
        if not self.enabled:
            return data
        # Lazy: loading cryptography's AEAD bindings costs ~22 ms and ~10 MB RSS, and unencrypted runs never need them.
        from maintainer.crypto.stream import Encryptor

        enc = Encryptor(self.recipients())
        return enc.update(data) + enc.finish()

    # -- reading -------------------------------------------------------
    def identities_for(self, label: str, recipients: Sequence[str]) -> list["Identity"]:
        """The identities to read ``label``, encrypted to ``recipients``.

        Raises MissingIdentity (none configured, or a file unreadable) and
        NoMatchingIdentity (none of them is one of ``recipients``): before a byte
        of the object is read.
        """
        to = describe_recipients(recipients)
        if self.spec is None or not self.spec.identity_paths():
            raise MissingIdentity(
                f"{label} in storage '{self.storage}' is encrypted ({FORMAT}) to {to}, and no identity is "
                f"configured for storage '{self.storage}'",
                hint=f"set storage.{self.storage}.encryption.identity_file to the private key of one of them")
        try:
            identities = self.spec.identity_keys()
        except MaintainerError as exc:
            raise MissingIdentity(f"{label} in storage '{self.storage}' is encrypted ({FORMAT}) to {to}, and "
                                  f"the identity cannot be read: {exc.message}", hint=exc.hint) from None
        wanted = set(recipients)
        if not any(str(i.recipient) in wanted for i in identities):
            tried = ", ".join(f"{i.recipient}" + (f" ({i.source})" if i.source else "") for i in identities)
            raise NoMatchingIdentity(
                f"{label} in storage '{self.storage}' is encrypted to {to}; none of the identities configured "
                f"is one of them (tried {tried})",
                hint="list the identity of one of those recipients in encryption.identity_file(s); an old "
                     "identity stays needed for as long as backups made for it are kept")
        return identities


def describe_recipients(recipients: Sequence[str]) -> str:
    return ", ".join(recipients) if recipients else "(no recipient recorded)"


def decrypting(blocks: Iterable[bytes], identities: Sequence["Identity"]) -> Iterator[bytes]:
    """The plaintext of the age stream ``blocks``; see maintainer.crypto.stream.decrypt_blocks."""
    # Lazy: loading cryptography's AEAD bindings costs ~22 ms and ~10 MB RSS, and unencrypted runs never need them.
    from maintainer.crypto.stream import decrypt_blocks

    return decrypt_blocks(blocks, identities)


class DecryptingReader:
    """A file-like ``read(n)`` of the plaintext of the age stream in ``raw``
    (for readers that pull, such as zstandard's stream_reader). Hashes the
    plaintext (the compressed bytes) in ``plain_sha256``. Raises what
    Decryptor raises; the truncation error comes when ``raw`` ends."""

    def __init__(self, raw: BinaryIO, identities: Sequence["Identity"], chunk: int = 1024 * 1024):
        # Lazy: loading cryptography's AEAD bindings costs ~22 ms and ~10 MB RSS, and unencrypted runs never need them.
        from maintainer.crypto.stream import Decryptor

        self._raw = raw
        self._dec = Decryptor(identities)
        self._chunk = chunk
        self._buffer = bytearray()
        self._ended = False
        self._digest = hashlib.sha256()

    @property
    def plain_sha256(self) -> str:
        return self._digest.hexdigest()

    def read(self, n: int = -1) -> bytes:
        while not self._ended and (n < 0 or len(self._buffer) < n):
            block = self._raw.read(self._chunk)
            out = self._dec.update(block) if block else self._dec.finish()
            self._ended = not block
            self._digest.update(out)
            self._buffer += out
        if n < 0 or n >= len(self._buffer):
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
        return data

    def readable(self) -> bool:
        return True
