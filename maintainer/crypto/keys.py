"""age recipients (public keys, all that writing needs) and identities (private keys).

Two kinds, both readable by the standard ``age`` CLI:

- X25519: ``age1...`` recipients and ``AGE-SECRET-KEY-1...`` identities, as
  ``age-keygen`` makes them.
- SSH ed25519: an ``ssh-ed25519 AAAA...`` public key as recipient, and the
  matching unencrypted OpenSSH private key file as identity (age's
  ``ssh-ed25519`` stanza: X25519 on the key converted to Curve25519, with a
  tweak bound to the SSH key).

A recipient wraps a file key into a Stanza; an identity unwraps the stanzas
addressed to it. An identity never shows its secret in ``repr`` or ``str``: it
is named by its public recipient (and the file:line it came from).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from abc import ABC, abstractmethod

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from maintainer.crypto import bech32
from maintainer.crypto.errors import DamagedCiphertext, KeyFormatError
from maintainer.crypto.header import Stanza, b64decode, b64encode, hkdf

RECIPIENT_HRP = "age"
IDENTITY_HRP = "AGE-SECRET-KEY-"
FILE_KEY_SIZE = 16
_ZERO_NONCE = bytes(12)
_X25519_INFO = b"age-encryption.org/v1/X25519"
_SSH_INFO = b"age-encryption.org/v1/ssh-ed25519"


class Recipient(ABC):
    """A public key a file can be encrypted to. ``str()`` is its usual text form."""

    stanza_type: str

    @abstractmethod
    def wrap(self, file_key: bytes) -> Stanza:
        """The stanza that lets this recipient's identity recover ``file_key``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


class Identity(ABC):
    """A private key. ``source`` says where it was read (``FILE:LINE``), for messages."""

    source: str | None = None

    @property
    @abstractmethod
    def recipient(self) -> Recipient:
        """The public key that encrypts to this identity."""

    @abstractmethod
    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if ``stanza`` is addressed to this identity, else None.

        Raises DamagedCiphertext for a stanza of this identity's type that is malformed.
        """

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<{type(self).__name__} for {self.recipient}{where}>"

    __str__ = __repr__


def _wrap_x25519(file_key: bytes, their_public: bytes, info: bytes,
                 tweak: bytes | None = None) -> tuple[bytes, bytes]:
    """(ephemeral share, wrapped file key) for the Curve25519 point ``their_public``."""
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(their_public))
    if tweak is not None:
        shared = X25519PrivateKey.from_private_bytes(tweak).exchange(X25519PublicKey.from_public_bytes(shared))
    key = hkdf(shared, share + their_public, info)
    return share, ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def _unwrap_x25519(private: X25519PrivateKey, share_text: str, body: bytes, info: bytes, kind: str,
                   tweak: bytes | None = None) -> bytes | None:
    share = b64decode(share_text, what=f"{kind} stanza's ephemeral share")
    if len(share) != 32:
        raise DamagedCiphertext(f"the age header's {kind} stanza has an ephemeral share of the wrong length")
    if len(body) != FILE_KEY_SIZE + 16:
        raise DamagedCiphertext(f"the age header's {kind} stanza has a body of the wrong length")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(share))
        if tweak is not None:
            shared = X25519PrivateKey.from_private_bytes(tweak).exchange(X25519PublicKey.from_public_bytes(shared))
    except ValueError:  # an all-zero shared secret: a low-order share, never made by an honest sender
        raise DamagedCiphertext(f"the age header's {kind} stanza has an invalid ephemeral share") from None
    key = hkdf(shared, share + private.public_key().public_bytes_raw(), info)
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


class X25519Recipient(Recipient):
    stanza_type = "X25519"

    def __init__(self, public: bytes):
        if len(public) != 32:
            raise KeyFormatError("an X25519 recipient is 32 bytes")
        self.public = public

    @classmethod
    def parse(cls, text: str) -> "X25519Recipient":
        """An ``age1...`` string. Raises KeyFormatError (never quoting the text)."""
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as exc:
            raise KeyFormatError(f"the age1 recipient {exc}") from None
        if hrp != RECIPIENT_HRP:
            raise KeyFormatError(f"'{hrp}1...' recipients (post-quantum or plugin keys) are not supported: "
                                 "use an X25519 recipient (age1..., from age-keygen or maintainer keys generate) "
                                 "or an ssh-ed25519 key")
        if len(data) != 32:
            raise KeyFormatError("the age1 recipient has the wrong length (a truncated copy?)")
        return cls(data)

    def wrap(self, file_key: bytes) -> Stanza:
        share, body = _wrap_x25519(file_key, self.public, _X25519_INFO)
        return Stanza(self.stanza_type, (b64encode(share).decode("ascii"),), body)

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public)


class X25519Identity(Identity):
    def __init__(self, secret: bytes, source: str | None = None):
        if len(secret) != 32:
            raise KeyFormatError("an X25519 identity is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self._recipient = X25519Recipient(self._key.public_key().public_bytes_raw())
        self.source = source

    @classmethod
    def generate(cls) -> "X25519Identity":
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str, source: str | None = None) -> "X25519Identity":
        """An ``AGE-SECRET-KEY-1...`` string. Raises KeyFormatError (never quoting the text)."""
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as exc:
            raise KeyFormatError(f"the AGE-SECRET-KEY-1 identity {exc}", where=source) from None
        if hrp != IDENTITY_HRP.lower() or len(data) != 32:
            raise KeyFormatError("not an X25519 identity (post-quantum and plugin identities are not supported)",
                                 where=source)
        return cls(data, source)

    def secret_text(self) -> str:
        """The ``AGE-SECRET-KEY-1...`` text: only for writing the identity file."""
        return bech32.encode(IDENTITY_HRP, self._key.private_bytes_raw())

    @property
    def recipient(self) -> X25519Recipient:
        return self._recipient

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "X25519":
            return None
        if len(stanza.args) != 1:
            raise DamagedCiphertext("the age header has an X25519 stanza with the wrong number of arguments")
        return _unwrap_x25519(self._key, stanza.args[0], stanza.body, _X25519_INFO, "X25519")


# ---------------------------------------------------------------- ssh-ed25519

_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P


def _ed25519_to_x25519(public: bytes) -> bytes:
    """The Curve25519 u-coordinate of an Ed25519 public key (u = (1 + y) / (1 - y)).

    Raises KeyFormatError when the 32 bytes are not a point of the curve.
    """
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise KeyFormatError("the ssh-ed25519 key is not a valid Ed25519 point")
    # x^2 = (y^2 - 1) / (d y^2 + 1) must have a square root for the point to exist.
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    if x2 and pow(x2, (_P - 1) // 2, _P) != 1:
        raise KeyFormatError("the ssh-ed25519 key is not a valid Ed25519 point")
    u = (1 + y) * pow(1 - y, -1, _P) % _P
    return u.to_bytes(32, "little")


def _ssh_string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(data):
        raise KeyFormatError("the ssh-ed25519 key is truncated")
    size = int.from_bytes(data[pos:pos + 4], "big")
    if pos + 4 + size > len(data):
        raise KeyFormatError("the ssh-ed25519 key is truncated")
    return data[pos + 4:pos + 4 + size], pos + 4 + size


def _ssh_tweak(wire: bytes) -> bytes:
    return hkdf(b"", wire, _SSH_INFO)


def _ssh_tag(wire: bytes) -> str:
    return b64encode(hashlib.sha256(wire).digest()[:4]).decode("ascii")


class SshEd25519Recipient(Recipient):
    stanza_type = "ssh-ed25519"

    def __init__(self, wire: bytes, comment: str = ""):
        """``wire`` is the SSH public key blob (what the base64 field of the line decodes to)."""
        kind, pos = _ssh_string(wire, 0)
        public, pos = _ssh_string(wire, pos)
        if kind != b"ssh-ed25519" or len(public) != 32 or pos != len(wire):
            raise KeyFormatError("not an ssh-ed25519 public key")
        self.wire = wire
        self.comment = comment
        self.curve25519 = _ed25519_to_x25519(public)

    @classmethod
    def parse(cls, text: str) -> "SshEd25519Recipient":
        """An ``ssh-ed25519 AAAA... [comment]`` line, as in ``~/.ssh/id_ed25519.pub``."""
        parts = text.split(None, 2)
        if len(parts) < 2 or parts[0] != "ssh-ed25519":
            raise KeyFormatError("not an ssh-ed25519 public key line (ssh-ed25519 AAAA... comment)")
        try:
            wire = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise KeyFormatError("the ssh-ed25519 key is not valid base64") from None
        return cls(wire, parts[2].strip() if len(parts) > 2 else "")

    def wrap(self, file_key: bytes) -> Stanza:
        share, body = _wrap_x25519(file_key, self.curve25519, _SSH_INFO, tweak=_ssh_tweak(self.wire))
        return Stanza(self.stanza_type, (_ssh_tag(self.wire), b64encode(share).decode("ascii")), body)

    def __str__(self) -> str:
        return "ssh-ed25519 " + base64.b64encode(self.wire).decode("ascii")


class SshEd25519Identity(Identity):
    def __init__(self, seed: bytes, source: str | None = None):
        public_line = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode("ascii")
        self._recipient = SshEd25519Recipient.parse(public_line)
        # Ed25519's secret scalar is the first half of SHA-512(seed); X25519 clamps it the same way.
        self._key = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
        self.source = source

    @classmethod
    def from_openssh(cls, data: bytes, source: str | None = None) -> "SshEd25519Identity":
        """An unencrypted OpenSSH private key file (``ssh-keygen -t ed25519 -N ''``)."""
        try:
            key = load_ssh_private_key(data, password=None)
        except TypeError:
            raise KeyFormatError("the SSH private key is protected by a passphrase, which maintainer cannot ask for",
                                 where=source, hint="use an age identity (maintainer keys generate) for "
                                                    "unattended restores") from None
        except (ValueError, NotImplementedError):
            raise KeyFormatError("not a readable OpenSSH private key", where=source) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError("only ssh-ed25519 keys are supported (not RSA or ECDSA)", where=source)
        return cls(key.private_bytes_raw(), source)

    @property
    def recipient(self) -> SshEd25519Recipient:
        return self._recipient

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "ssh-ed25519":
            return None
        if len(stanza.args) != 2:
            raise DamagedCiphertext("the age header has an ssh-ed25519 stanza with the wrong number of arguments")
        if stanza.args[0] != _ssh_tag(self._recipient.wire):
            return None
        return _unwrap_x25519(self._key, stanza.args[1], stanza.body, _SSH_INFO, "ssh-ed25519",
                              tweak=_ssh_tweak(self._recipient.wire))


def parse_recipient(text: str) -> Recipient:
    """``age1...`` or ``ssh-ed25519 AAAA... [comment]``. Raises KeyFormatError.

    The message never quotes ``text``: a secret key pasted by mistake must not
    end up in a log.
    """
    text = text.strip()
    if text.upper().startswith(IDENTITY_HRP):
        raise KeyFormatError("this is an identity (a secret key), not a recipient: give its public key "
                             "(age1..., printed by `maintainer keys recipient FILE` or `age-keygen -y FILE`)")
    if text.startswith("ssh-ed25519 "):
        return SshEd25519Recipient.parse(text)
    if text.startswith(("ssh-rsa ", "ecdsa-", "sk-")):
        raise KeyFormatError("only ssh-ed25519 SSH keys are supported as recipients (not RSA, ECDSA or FIDO keys)")
    if text.lower().startswith("age1"):
        return X25519Recipient.parse(text)
    raise KeyFormatError("not an age recipient (expected age1... or ssh-ed25519 AAAA...)")
