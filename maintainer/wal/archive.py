"""Reading the WAL archive of a server: what is stored, what is missing, and the bytes.

Reading the archive (what point-in-time restore and health use)::

    from maintainer.wal import archive
    listing = archive.list_archive(storage, server)        # one storage listing of wal/<server>/
    listing.record                                         # ArchiveRecord or None: system id, segment size, major
    listing.segments[(tli, segno)]                         # complete segments (layout.StoredSegment)
    listing.partials[(tli, segno)]                         # .partial segments not yet replaced
    listing.find(name)                                     # by 24-hex file name: complete first, else partial
    history = archive.timeline_history(storage, listing, tli, keyring)   # [HistoryEntry], [] for TLI 1
    archive.find_gaps(listing, start_lsn, end_lsn, tli, history)         # [Gap]: missing segment runs
    archive.continuous_ranges(listing)                     # [SegmentRange] per timeline, no hole inside
    archive.read_segment(storage, stored, keyring)         # raw bytes, SHA-256 checked
    archive.read_history(storage, listing, tli, keyring)   # raw text of <TLI>.history

LSN and name math is in ``maintainer.wal.lsn`` (parse_lsn, format_lsn, segment_of,
segment_name, parse_segment_name), timeline paths in ``maintainer.wal.timeline``.
``keyring`` is the storage's maintainer.crypto.keyring.Keyring, or None for a
storage that never encrypted. A segment's key carries the SHA-256 of its raw
bytes, so each one verifies on its own, with no index to trust.

Errors: SegmentChecksumMismatch (a ChecksumMismatch, a StorageError) when the
bytes read are not the ones archived (also when damage broke decryption or
decompression); ObjectNotFound when the object is gone; MissingIdentity or
NoMatchingIdentity for an encrypted object the keyring cannot open;
HistoryError for an unreadable timeline history.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime

import zstandard
from pydantic import BaseModel, ConfigDict, ValidationError

from maintainer.crypto.errors import DecryptionError, NoMatchingIdentity
from maintainer.crypto.keyring import Keyring, MissingIdentity
from maintainer.errors import MaintainerError, ObjectNotFound
from maintainer.storage.base import ObjectInfo, Storage
from maintainer.storage.objectset import ChecksumMismatch
from maintainer.wal import layout
from maintainer.wal.layout import StoredSegment
from maintainer.wal.lsn import (DEFAULT_SEGMENT_SIZE, format_lsn, parse_segment_name, segment_name, segment_of,
                                segment_start)
from maintainer.wal.timeline import HistoryEntry, parse_history, segments_between

MAX_SEGMENT = 1024 ** 3  # the largest wal_segment_size: a bound for decompression


class SegmentChecksumMismatch(ChecksumMismatch):
    """A stored WAL segment or history file is not what was archived."""


class ArchiveRecord(BaseModel):
    """``wal/<server>/archive.json``: which cluster the archive belongs to. Written
    when the archive starts; a receiver pointed at another cluster refuses to mix
    its WAL in (the system identifier differs)."""

    model_config = ConfigDict(extra="allow")
    format: int = 1
    server: str
    system_identifier: str
    wal_segment_size: int
    pg_major: int
    created: datetime


@dataclass(frozen=True)
class SegmentRange:
    """Consecutive complete segments of one timeline: WAL from ``start_lsn`` up to
    (not including) ``end_lsn``."""

    timeline: int
    first: int  # segment numbers
    last: int
    first_name: str
    last_name: str
    start_lsn: int
    end_lsn: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Gap:
    """Segments missing from the archive: ``first``..``last`` of ``timeline``."""

    timeline: int
    first: int
    last: int
    first_name: str
    last_name: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        more = f" .. {self.last_name} ({self.count} segments)" if self.count > 1 else ""
        return f"missing {self.first_name}{more}"


@dataclass
class ArchiveListing:
    server: str
    record: ArchiveRecord | None
    segment_size: int
    segments: dict[tuple[int, int], StoredSegment] = field(default_factory=dict)
    partials: dict[tuple[int, int], StoredSegment] = field(default_factory=dict)
    histories: dict[int, str] = field(default_factory=dict)  # timeline -> key
    objects: dict[str, ObjectInfo] = field(default_factory=dict)  # every key listed, with size and time
    duplicates: list[StoredSegment] = field(default_factory=list)  # a second copy of a complete segment

    @property
    def timelines(self) -> list[int]:
        return sorted({tli for tli, _ in self.segments} | {tli for tli, _ in self.partials} | set(self.histories))

    @property
    def newest_timeline(self) -> int | None:
        return max(self.timelines, default=None)

    def find(self, name: str) -> StoredSegment | None:
        """The stored segment with this 24-hex name: the complete one, else the partial."""
        tli, segno = parse_segment_name(name, self.segment_size)
        return self.segments.get((tli, segno)) or self.partials.get((tli, segno))

    def newest_segment(self) -> StoredSegment | None:
        """The complete segment with the highest position (then timeline)."""
        if not self.segments:
            return None
        return self.segments[max(self.segments, key=lambda k: (k[1], k[0]))]

    def info(self, stored: StoredSegment) -> ObjectInfo:
        return self.objects[stored.key]

    def segment_end_lsn(self, stored: StoredSegment) -> int:
        """The LSN just after ``stored`` (complete segments only)."""
        return segment_start(parse_segment_name(stored.segment, self.segment_size)[1] + 1, self.segment_size)


def read_archive_record(storage: Storage, server: str) -> ArchiveRecord | None:
    """The archive's record, or None when none is stored (or it is unreadable)."""
    try:
        return ArchiveRecord.model_validate_json(storage.get_bytes(layout.archive_record_key(server)))
    except (ObjectNotFound, ValidationError, ValueError):
        return None


def list_archive(storage: Storage, server: str) -> ArchiveListing:
    """Every segment and history object of ``server``, from one listing. A complete
    segment wins over its partial; of two complete copies the newest wins (the
    other is in ``duplicates``). StorageError if the listing fails."""
    record = read_archive_record(storage, server)
    listing = ArchiveListing(server, record, record.wal_segment_size if record else DEFAULT_SEGMENT_SIZE)
    for info in storage.list(layout.server_prefix(server)):
        listing.objects[info.key] = info
        if (tli := layout.parse_history_key(info.key)) is not None:
            listing.histories[tli] = info.key
            continue
        stored = layout.parse_segment_key(info.key)
        if stored is None:
            continue
        try:
            where = parse_segment_name(stored.segment, listing.segment_size)
        except ValueError:
            continue
        if stored.partial:
            listing.partials[where] = stored
            continue
        old = listing.segments.get(where)
        if old is not None:
            newer = info.modified >= listing.objects[old.key].modified
            listing.duplicates.append(old if newer else stored)
            if not newer:
                continue
        listing.segments[where] = stored
    for where in list(listing.partials):
        if where in listing.segments:
            del listing.partials[where]
    return listing


def continuous_ranges(listing: ArchiveListing) -> list[SegmentRange]:
    """Runs of consecutive complete segments, by timeline then position."""
    size = listing.segment_size
    ranges: list[SegmentRange] = []
    for tli, segno in sorted(listing.segments):
        last = ranges[-1] if ranges else None
        if last is not None and last.timeline == tli and last.last == segno - 1:
            ranges[-1] = SegmentRange(tli, last.first, segno, last.first_name, segment_name(tli, segno, size),
                                      last.start_lsn, segment_start(segno + 1, size))
        else:
            name = segment_name(tli, segno, size)
            ranges.append(SegmentRange(tli, segno, segno, name, name, segment_start(segno, size),
                                       segment_start(segno + 1, size)))
    return ranges


def find_gaps(listing: ArchiveListing, start_lsn: int, end_lsn: int, timeline: int,
              history: list[HistoryEntry] | None = None, *, partial_ok: bool = False) -> list[Gap]:
    """The segments needed to replay from ``start_lsn`` to ``end_lsn`` on ``timeline``
    (following ``history``, that timeline's history) that are not stored, as runs.
    With ``partial_ok`` a partial segment counts as present (the newest, still being
    written)."""
    size = listing.segment_size
    gaps: list[Gap] = []
    for tli, segno in segments_between(start_lsn, end_lsn, timeline, history or [], size):
        if (tli, segno) in listing.segments or (partial_ok and (tli, segno) in listing.partials):
            continue
        last = gaps[-1] if gaps else None
        if last is not None and last.timeline == tli and last.last == segno - 1:
            gaps[-1] = Gap(tli, last.first, segno, last.first_name, segment_name(tli, segno, size))
        else:
            name = segment_name(tli, segno, size)
            gaps.append(Gap(tli, segno, segno, name, name))
    return gaps


def archive_gaps(storage: Storage, listing: ArchiveListing, since_lsn: int | None = None,
                 keyring: Keyring | None = None) -> list[Gap]:
    """Holes in the archive from ``since_lsn`` (default: its oldest segment) to its
    newest complete segment, along the newest timeline's history."""
    newest = listing.newest_segment()
    if newest is None:
        return []
    tli = listing.newest_timeline or newest.timeline
    history = timeline_history(storage, listing, tli, keyring)
    if since_lsn is None:
        first = min(segno for (_, segno) in listing.segments)
        since_lsn = segment_start(first, listing.segment_size)
    end = listing.segment_end_lsn(newest) - 1
    return find_gaps(listing, since_lsn, end, tli, history, partial_ok=False)


def timeline_history(storage: Storage, listing: ArchiveListing, timeline: int,
                     keyring: Keyring | None = None) -> list[HistoryEntry]:
    """The history of ``timeline`` ([] for timeline 1 or when none is stored)."""
    if timeline <= 1 or timeline not in listing.histories:
        return []
    return parse_history(read_history(storage, listing, timeline, keyring), timeline)


def read_history(storage: Storage, listing: ArchiveListing, timeline: int, keyring: Keyring | None = None) -> str:
    """The text of ``<TLI>.history``; ObjectNotFound when it is not stored."""
    key = listing.histories.get(timeline)
    if key is None:
        raise ObjectNotFound(f"timeline {timeline:08X} history of {listing.server} is not in {storage.url}")
    label = f"WAL history {listing.server}/{timeline:08X}"
    return _decode(storage, key, key.endswith(".age"), keyring, label).decode()


def read_segment(storage: Storage, stored: StoredSegment, keyring: Keyring | None = None) -> bytes:
    """The raw bytes of a stored segment, decrypted, decompressed and checked against
    the SHA-256 in its key (a partial segment: against zstd's frame checksum)."""
    label = f"WAL segment {stored.segment}{'.partial' if stored.partial else ''} ({stored.key})"
    data = _decode(storage, stored.key, stored.encrypted, keyring, label)
    if stored.sha256 is not None and hashlib.sha256(data).hexdigest() != stored.sha256:
        raise SegmentChecksumMismatch(f"{label}: SHA-256 of the stored segment does not match its name "
                                      "(the object was altered or damaged in storage)")
    return data


def _decode(storage: Storage, key: str, encrypted: bool, keyring: Keyring | None, label: str) -> bytes:
    raw = storage.get_bytes(key)
    if encrypted:
        identities = identities_of(keyring, label)
        from maintainer.crypto.stream import Decryptor  # cryptography: loaded only for encrypted archives

        try:
            dec = Decryptor(identities)
            raw = dec.update(raw) + dec.finish()
        except NoMatchingIdentity:
            raise
        except DecryptionError as exc:
            raise SegmentChecksumMismatch(f"{label} cannot be decrypted (altered or damaged): {exc.message}") from None
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as reader:
            data = reader.read(MAX_SEGMENT + 1)
    except zstandard.ZstdError as exc:
        raise SegmentChecksumMismatch(f"{label} cannot be decompressed (altered or damaged): {exc}") from None
    return data


def identities_of(keyring: Keyring | None, label: str):
    """Every identity the keyring has: a WAL object records no recipients (no
    manifest), so each identity is tried. MissingIdentity when there are none."""
    if keyring is None or keyring.spec is None or not keyring.spec.identity_paths():
        storage = keyring.storage if keyring is not None else "?"
        raise MissingIdentity(f"{label} in storage '{storage}' is encrypted (age) and no identity is configured",
                              hint=f"set storage.{storage}.encryption.identity_file")
    try:
        return keyring.spec.identity_keys()
    except MaintainerError as exc:  # ConfigError/KeyFormatError from the key file; never the secret
        raise MissingIdentity(f"{label}: the identity cannot be read: {exc.message}", hint=exc.hint) from None


def describe_range(r: SegmentRange) -> str:
    return f"timeline {r.timeline}: {r.first_name} .. {r.last_name} ({format_lsn(r.start_lsn)} - {format_lsn(r.end_lsn)})"


__all__ = ["ArchiveListing", "ArchiveRecord", "Gap", "SegmentChecksumMismatch", "SegmentRange", "archive_gaps",
           "continuous_ranges", "describe_range", "find_gaps", "list_archive", "read_archive_record",
           "read_history", "read_segment", "segment_of", "timeline_history"]
