"""Helpers for the WAL archive and base backup tests (no tests here)."""

from __future__ import annotations

import os

from maintainer.wal import layout, store
from maintainer.wal.lsn import segment_name

MB = 1024 * 1024


def fake_segment(timeline: int, segno: int, size: int = MB) -> tuple[str, bytes]:
    """A segment name and distinct bytes of ``size`` (real WAL is not needed to test the archive's bookkeeping)."""
    return segment_name(timeline, segno, size), os.urandom(64) + bytes(size - 64)


def store_segments(storage, server: str, timeline: int, segnos, *, size: int = MB, keyring=None) -> dict[str, bytes]:
    """Store complete fake segments and the archive record; name -> raw bytes."""
    store.ensure_archive_record(storage, server, system_identifier="7300000000000000001", wal_segment_size=size,
                                pg_major=15)
    out = {}
    for segno in segnos:
        name, data = fake_segment(timeline, segno, size)
        store.put_segment(storage, server, name, data, keyring)
        out[name] = data
    return out


def segment_keys(storage, server: str) -> list[str]:
    return [i.key for i in storage.list(layout.server_prefix(server)) if layout.parse_segment_key(i.key)]
