"""What the WAL archive of one server covers, for people: `maintainer backups` and
`maintainer wal status` print it, health reads the same figures.

The continuous range is the run of complete segments that ends with the newest
one (following timelines): a restore can reach any point inside it from a base
backup that starts inside it. Gaps are counted from the newest base backup's
start (a gap before it no longer matters), or from the oldest segment when
there is no base backup. Raises StorageError from the listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from maintainer.crypto.keyring import Keyring
from maintainer.storage.base import Storage
from maintainer.wal import archive
from maintainer.wal.basebackups import BaseBackupEntry, list_base_backups
from maintainer.wal.layout import parse_segment_key
from maintainer.wal.lsn import format_lsn


@dataclass
class ArchiveSummary:
    server: str
    system_identifier: str | None
    segments: int
    first_segment: str | None  # the oldest complete segment
    last_segment: str | None  # the newest complete segment
    newest_object_time: datetime | None  # the newest segment or partial object stored
    ranges: list[archive.SegmentRange] = field(default_factory=list)
    gaps: list[archive.Gap] = field(default_factory=list)
    base_backups: list[BaseBackupEntry] = field(default_factory=list)
    partial: str | None = None

    @property
    def restorable_from(self) -> str | None:
        """The start LSN of the oldest base backup (restores reach back no further)."""
        return self.base_backups[-1].manifest.start_lsn if self.base_backups else None

    def to_dict(self) -> dict:
        return {"server": self.server, "system_identifier": self.system_identifier, "segments": self.segments,
                "from": self.first_segment, "to": self.last_segment, "partial": self.partial,
                "newest_object_time": self.newest_object_time.isoformat() if self.newest_object_time else None,
                "ranges": [{"timeline": r.timeline, "from": r.first_name, "to": r.last_name,
                            "start_lsn": format_lsn(r.start_lsn), "end_lsn": format_lsn(r.end_lsn)} for r in self.ranges],
                "gaps": [{"timeline": g.timeline, "from": g.first_name, "to": g.last_name, "segments": g.count}
                         for g in self.gaps],
                "base_backups": [e.id for e in self.base_backups]}


def summarize(storage: Storage, server: str, keyring: Keyring | None = None) -> ArchiveSummary:
    listing = archive.list_archive(storage, server)
    bases = list_base_backups(storage, server)
    ordered = sorted(listing.segments.values(), key=lambda s: (s.segment[8:], s.segment[:8]))
    times = [info.modified for key, info in listing.objects.items() if parse_segment_key(key)]
    since = bases[0].manifest.start if bases else None
    partials = sorted(listing.partials.values(), key=lambda s: s.segment[8:])
    return ArchiveSummary(
        server=server, system_identifier=listing.record.system_identifier if listing.record else None,
        segments=len(listing.segments), first_segment=ordered[0].segment if ordered else None,
        last_segment=ordered[-1].segment if ordered else None, newest_object_time=max(times, default=None),
        ranges=archive.continuous_ranges(listing), gaps=archive.archive_gaps(storage, listing, since, keyring),
        base_backups=bases, partial=partials[-1].segment if partials else None)
