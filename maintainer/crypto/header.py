"""The textual header of an age v1 file: version line, recipient stanzas, MAC.

::

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64>
    <wrapped file key, base64, lines of 64 columns, the last one shorter>
    --- <HMAC-SHA-256 of everything up to and including "---", base64>

``parse_header`` reads it incrementally from the front of a byte buffer and
says how many bytes it took, so the decryptor can be fed the stream in any
pieces. The MAC is checked by the caller once a file key is unwrapped (only
the file key makes the MAC key).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from maintainer.crypto.errors import DamagedCiphertext

VERSION_LINE = b"age-encryption.org/v1\n"
MAC_MARK = b"---"
# A header is a few hundred bytes per recipient; a "header" that does not end
# within this many bytes is not one, and memory stays bounded either way.
MAX_HEADER = 256 * 1024
_COLUMNS = 64
_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: ``-> type arg...`` and its binary body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        line = " ".join(("->", self.type, *self.args)).encode("ascii") + b"\n"
        body = b64encode(self.body)
        # Full lines of 64 columns, then one shorter line (empty when the body fills the last one).
        lines = [body[i:i + _COLUMNS] for i in range(0, len(body), _COLUMNS)]
        if not lines or len(lines[-1]) == _COLUMNS:
            lines.append(b"")
        return line + b"".join(part + b"\n" for part in lines)


def b64encode(data: bytes) -> bytes:
    """Standard base64 without padding, as every age field is written."""
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes | str, *, what: str) -> bytes:
    """Canonical unpadded base64; DamagedCiphertext (naming ``what``) otherwise."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    if b"=" in raw or b"\r" in raw or b"\n" in raw:
        raise DamagedCiphertext(f"the age header's {what} is not unpadded base64")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DamagedCiphertext(f"the age header's {what} is not valid base64") from None
    if b64encode(data) != raw:
        raise DamagedCiphertext(f"the age header's {what} is not canonical base64")
    return data


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def header_mac(file_key: bytes, header_up_to_mark: bytes) -> bytes:
    """HMAC-SHA-256 keyed from the file key, over the header through ``---``."""
    return hmac.new(hkdf(file_key, b"", b"header"), header_up_to_mark, sha256).digest()


def encode_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    text = VERSION_LINE + b"".join(s.encode() for s in stanzas) + MAC_MARK
    return text + b" " + b64encode(header_mac(file_key, text)) + b"\n"


@dataclass(frozen=True)
class Header:
    stanzas: list[Stanza]
    mac: bytes
    signed: bytes  # the header bytes the MAC covers

    def verify(self, file_key: bytes) -> None:
        """Raises DamagedCiphertext when the MAC does not match (the header was altered)."""
        if not hmac.compare_digest(header_mac(file_key, self.signed), self.mac):
            raise DamagedCiphertext("the age header's MAC does not match: the header was altered")


def parse_header(buffer: bytes | bytearray) -> tuple[Header, int] | None:
    """The header at the start of ``buffer`` and its length, or None if more bytes are needed.

    Raises DamagedCiphertext when the bytes cannot be an age v1 header.
    """
    data = bytes(buffer[:MAX_HEADER + 1])
    if not VERSION_LINE.startswith(data[:len(VERSION_LINE)]):
        _not_age(data)
    pos = len(VERSION_LINE)
    if len(data) < pos:
        return None
    stanzas: list[Stanza] = []
    while True:
        end = _line_end(data, pos)
        if end is None:
            return None
        line = data[pos:end]
        if line.startswith(b"-> "):
            parsed = _parse_stanza(data, pos, end)
            if parsed is None:
                return None
            stanza, pos = parsed
            stanzas.append(stanza)
        elif line.startswith(MAC_MARK + b" "):
            if not stanzas:
                raise DamagedCiphertext("the age header has no recipient stanza")
            mac = b64decode(line[len(MAC_MARK) + 1:], what="MAC")
            if len(mac) != 32:
                raise DamagedCiphertext("the age header's MAC has the wrong length")
            return Header(stanzas, mac, data[:pos + len(MAC_MARK)]), end + 1
        else:
            raise DamagedCiphertext("the age header has a line that is neither a stanza nor the MAC line")


def _line_end(data: bytes, pos: int) -> int | None:
    """Where the header line starting at ``pos`` ends; None while more input is
    needed. DamagedCiphertext once the header has outgrown MAX_HEADER."""
    end = data.find(b"\n", pos)
    if end < 0 and len(data) > MAX_HEADER:
        raise DamagedCiphertext(f"the age header is longer than {MAX_HEADER} bytes: the file is damaged")
    return end if end >= 0 else None


def _parse_stanza(data: bytes, pos: int, end: int) -> tuple[Stanza, int] | None:
    """The stanza whose ``->`` line is data[pos:end], and the position after its body."""
    args = data[pos + 3:end].split(b" ")
    if not args or any(not a or any(c < 33 or c > 126 for c in a) for a in args):
        raise DamagedCiphertext("the age header has a malformed stanza line")
    body = b""
    pos = end + 1
    while True:
        end = _line_end(data, pos)
        if end is None:
            return None
        line = data[pos:end]
        if len(line) > _COLUMNS:
            raise DamagedCiphertext("the age header has a stanza body line longer than 64 columns")
        body += line
        pos = end + 1
        if len(line) < _COLUMNS:
            break
    text = [a.decode("ascii") for a in args]
    return Stanza(text[0], tuple(text[1:]), b64decode(body, what=f"{text[0]} stanza body")), pos


def _not_age(data: bytes) -> None:
    if data.startswith(_ARMOR[:len(data)]):
        raise DamagedCiphertext("this is an ASCII-armored age file, which maintainer does not read",
                                hint="dearmor it with the age CLI: age -d -i KEY FILE")
    if data.startswith(b"age-encryption.org/"):
        version = data.split(b"\n", 1)[0][len(b"age-encryption.org/"):].decode("ascii", "replace")[:20]
        raise DamagedCiphertext(f"unsupported age format version '{version}' (maintainer reads v1)")
    raise DamagedCiphertext("not an age-encrypted file (it does not start with age-encryption.org/v1)")
