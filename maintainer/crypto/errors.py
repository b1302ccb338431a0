"""The errors of maintainer.crypto: one base, and what each failure means for the caller.

Messages name keys only by their public side (``age1...``, ``ssh-ed25519 ...``)
and files by path and line; never a secret key, never plaintext.
"""

from __future__ import annotations

from maintainer.errors import MaintainerError


class EncryptionError(MaintainerError):
    """Base of every failure to encrypt, decrypt or read a key."""


class KeyFormatError(EncryptionError):
    """A recipient or identity that does not parse, or a key file that cannot be read.

    ``where`` is ``FILE:LINE`` (or ``FILE``) when the key came from a file.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.where = where
        self.reason = message


class DecryptionError(EncryptionError):
    """The encrypted stream could not be turned back into the plaintext."""


class NoMatchingIdentity(DecryptionError):
    """None of the identities given opens the file key: the file was encrypted to other recipients."""


class DamagedCiphertext(DecryptionError):
    """The stream is not age, or was truncated or altered. No plaintext of a chunk
    that failed authentication is ever returned."""
