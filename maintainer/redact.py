"""A process-wide list of secret values that must never be printed.

The config loader registers every secret it reads; log formatting, error
output and anything written for people pass text through ``scrub``.
"""

from __future__ import annotations

import threading

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()


def register(value: str | None) -> None:
    """Remember ``value`` as a secret. Values shorter than 4 characters are too
    likely to match ordinary text; they are still never logged by design."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` by ***."""
    if not _secrets or not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def clear() -> None:
    """For tests."""
    with _lock:
        _secrets.clear()
