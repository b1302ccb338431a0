"""Bech32 (BIP 173) as age uses it: for ``age1...`` recipients and ``AGE-SECRET-KEY-1...`` identities.

age drops BIP 173's 90-character limit (an identity is 74 characters, a
post-quantum recipient far longer) and nothing else. A string is all lower or
all upper case; the checksum is computed over its lower-case form. Encoding
and decoding are a few dozen operations per key, so plain Python is enough; a
package for this would be one more dependency for 50 lines.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """Not a valid Bech32 string; the message says why and never quotes the string."""


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                check ^= g
    return check


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    mask = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & mask)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & mask)
    elif bits >= from_bits or (acc << (to_bits - bits)) & mask:
        raise Bech32Error("has non-zero padding bits")
    return out


def encode(hrp: str, data: bytes) -> str:
    """``hrp`` + ``1`` + data and checksum, in lower case (upper-case ``hrp`` gives an upper-case string)."""
    upper = hrp.isupper()
    hrp = hrp.lower()
    words = _regroup(data, 8, 5, pad=True)
    checksum = _polymod(_expand(hrp) + words + [0] * 6) ^ 1
    words += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    text = hrp + "1" + "".join(CHARSET[w] for w in words)
    return text.upper() if upper else text


def decode(text: str) -> tuple[str, bytes]:
    """(lower-case hrp, data) of a Bech32 string. Raises Bech32Error."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixes upper and lower case")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or not hrp or len(rest) < 6:
        raise Bech32Error("is too short to be Bech32")
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("has a character that Bech32 does not use")
    try:
        words = [_VALUES[c] for c in rest]
    except KeyError:
        raise Bech32Error("has a character that Bech32 does not use") from None
    if _polymod(_expand(hrp) + words) != 1:
        raise Bech32Error("has a wrong checksum (a typing mistake, or a truncated copy)")
    return hrp, bytes(_regroup(words[:-6], 5, 8, pad=False))
