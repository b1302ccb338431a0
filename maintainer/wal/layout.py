"""Where the WAL archive and the base backups live in storage. The only place
that builds these keys; the archiver writes them and point-in-time restore reads
them, so both follow this one description.

    wal/<server>/archive.json                          the archive's identity, written once:
                                                       system_identifier, wal_segment_size, pg major
    wal/<server>/<TLI>/<SEGMENT>-<SHA256>.zst          one complete segment, zstd
    wal/<server>/<TLI>/<SEGMENT>-<SHA256>.zst.age      the same, encrypted (age), when the storage encrypts
    wal/<server>/<TLI>/<SEGMENT>.partial.zst[.age]     the segment being written now, flushed every
                                                       flush interval; replaced by the complete one
    wal/<server>/history/<TLI>.history.zst[.age]       a timeline history file

    base/<server>/<id>/base.tar.zst[.age]              pg_basebackup -Ft -D - (the server's
                                                       backup_manifest is its last member)
    base/<server>/<id>/backup_manifest.zst[.age]       that backup_manifest, also stored alone
    base/<server>/<id>/manifest.json                   maintainer's manifest, written last: the base
                                                       backup exists only with it (an ObjectSet)

``<server>`` is the name of the databases entry the job connects through (one
archive per PostgreSQL cluster). ``<TLI>`` is the timeline as 8 hex digits,
``<SEGMENT>`` the 24-hex segment file name (which starts with the timeline),
``<SHA256>`` the SHA-256 of the raw segment (before compression and
encryption), so every stored segment can be verified on its own, without an
index (pgBackRest names its archive files the same way). ``<id>`` is the UTC
start time of the base backup, 20261126T031500Z.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maintainer.storage.objectset import MANIFEST, ObjectSet

WAL_ROOT = "wal"
BASE_ROOT = "base"
ARCHIVE_RECORD = "archive.json"
HISTORY_DIR = "history"
BASE_TAR = "base.tar.zst"
BACKUP_MANIFEST = "backup_manifest.zst"
COMPRESSED = ".zst"
PARTIAL = ".partial"

BASE_BACKUPS = ObjectSet(BASE_ROOT, MANIFEST)

_SEGMENT = re.compile(r"^(?P<segment>[0-9A-F]{24})(?:-(?P<sha256>[0-9a-f]{64})|(?P<partial>\.partial))\.zst(?P<age>\.age)?$")
_HISTORY = re.compile(r"^(?P<tli>[0-9A-F]{8})\.history\.zst(?P<age>\.age)?$")


def server_prefix(server: str) -> str:
    return f"{WAL_ROOT}/{server}/"


def archive_record_key(server: str) -> str:
    return f"{WAL_ROOT}/{server}/{ARCHIVE_RECORD}"


def timeline_dir(timeline: int) -> str:
    return f"{timeline:08X}"


def segment_key(server: str, segment: str, sha256: str, *, encrypted: bool = False) -> str:
    """The key of a complete segment (``segment`` is its 24-hex file name)."""
    return f"{WAL_ROOT}/{server}/{segment[:8]}/{segment}-{sha256}{COMPRESSED}" + (".age" if encrypted else "")


def partial_key(server: str, segment: str, *, encrypted: bool = False) -> str:
    return f"{WAL_ROOT}/{server}/{segment[:8]}/{segment}{PARTIAL}{COMPRESSED}" + (".age" if encrypted else "")


def history_key(server: str, timeline: int, *, encrypted: bool = False) -> str:
    return f"{WAL_ROOT}/{server}/{HISTORY_DIR}/{timeline:08X}.history{COMPRESSED}" + (".age" if encrypted else "")


@dataclass(frozen=True)
class StoredSegment:
    """A segment object found in storage."""

    key: str
    segment: str  # 24 hex digits
    sha256: str | None  # of the raw segment; None for a partial segment
    partial: bool
    encrypted: bool

    @property
    def timeline(self) -> int:
        return int(self.segment[:8], 16)


def parse_segment_key(key: str) -> StoredSegment | None:
    """A segment object's key split into its parts; None for any other key."""
    name = key.rsplit("/", 1)[-1]
    match = _SEGMENT.match(name)
    if not match:
        return None
    return StoredSegment(key=key, segment=match["segment"], sha256=match["sha256"],
                         partial=bool(match["partial"]), encrypted=bool(match["age"]))


def parse_history_key(key: str) -> int | None:
    """The timeline of a history object's key; None for any other key."""
    match = _HISTORY.match(key.rsplit("/", 1)[-1])
    return int(match["tli"], 16) if match else None


def base_object_key(server: str, backup_id: str, name: str) -> str:
    return BASE_BACKUPS.key(server, backup_id, name)


def base_manifest_key(server: str, backup_id: str) -> str:
    return BASE_BACKUPS.manifest_key(server, backup_id)
