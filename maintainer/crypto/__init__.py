"""Encryption at rest in the age v1 format (age-encryption.org/v1).

A file maintainer encrypts is an ordinary age file: ``age -d -i KEY FILE``
decrypts it, and maintainer decrypts what ``age -r RECIPIENT`` wrote. The
format is implemented here on ``cryptography``'s primitives (X25519,
HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305), because the Python binding
of an age library (pyrage) only streams by pulling from a file object in one
blocking call, which does not fit a pipeline that pushes chunks, and was 3 to
4 times slower per byte.

The API, for the backup pipeline and restore::

    from maintainer.crypto import Encryptor, Decryptor, EncryptingWriter, decrypt_blocks

    enc = Encryptor(recipients)          # header made here; nothing is written yet
    out = enc.update(data)               # ciphertext so far (may be b""), any number of times
    out = enc.finish()                   # the final chunk; once

    dec = Decryptor(identities)
    out = dec.update(data)               # authenticated plaintext only (may be b"")
    out = dec.finish()                   # the rest; DamagedCiphertext if truncated

    with EncryptingWriter(storage.open_writer(key), recipients) as w:  # a storage Writer
        w.write(chunk)                   # w.stored_sha256 / w.stored_size: the ciphertext

    for plain in decrypt_blocks(iter(lambda: stream.read(CHUNK), b""), identities): ...

Keys: ``parse_recipient("age1...")``, ``read_recipients_file(path)``,
``read_identity_file(path)`` (registers every secret with maintainer.redact),
``X25519Identity.generate()`` and ``write_identity_file(path, identity)``.

Errors (all EncryptionError, a MaintainerError): KeyFormatError (a bad key or
key file, with FILE:LINE), NoMatchingIdentity (wrong key: names the stanza
types and count and the identities tried, by public key), DamagedCiphertext
(not age, truncated, altered; no plaintext of a chunk that failed
authentication is ever returned).
"""

import importlib

from maintainer.crypto.errors import (DamagedCiphertext, DecryptionError, EncryptionError, KeyFormatError,
                                      NoMatchingIdentity)

# The names below load cryptography's OpenSSL bindings (about 8 MB of resident
# memory), so they are imported when first used: a run whose storage is not
# encrypted, which still imports maintainer.crypto.keyring, never pays for them.
_LAZY = {
    "KeyFileUnreadable": "keyfiles", "read_identity_file": "keyfiles", "read_recipients_file": "keyfiles",
    "recipients_of": "keyfiles", "write_identity_file": "keyfiles",
    "Identity": "keys", "Recipient": "keys", "SshEd25519Identity": "keys", "SshEd25519Recipient": "keys",
    "X25519Identity": "keys", "X25519Recipient": "keys", "parse_recipient": "keys",
    "CHUNK": "stream", "Decryptor": "stream", "EncryptingWriter": "stream", "Encryptor": "stream",
    "decrypt_blocks": "stream",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"maintainer.crypto.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maintainer.crypto' has no attribute {name!r}")


FORMAT = "age"

__all__ = [
    "CHUNK", "FORMAT", "DamagedCiphertext", "DecryptionError", "Decryptor", "EncryptingWriter", "EncryptionError",
    "Encryptor", "Identity", "KeyFileUnreadable", "KeyFormatError", "NoMatchingIdentity", "Recipient",
    "SshEd25519Identity", "SshEd25519Recipient", "X25519Identity", "X25519Recipient", "decrypt_blocks",
    "parse_recipient", "read_identity_file", "read_recipients_file", "recipients_of", "write_identity_file",
]
