"""Timeline history: which timelines a server's WAL went through, and where each ended.

A history file ``<TLI>.history`` lists the ancestors of timeline TLI, one line
each: ``<parent TLI> <TAB> <switch point LSN> <TAB> <reason>`` (the parent's WAL
is valid up to the switch point, where the child begins). Timeline 1 has no
history file. Pure functions; HistoryError for a history that cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass

from maintainer.errors import StorageError
from maintainer.wal.lsn import parse_lsn, segment_of


class HistoryError(StorageError):
    """A timeline history file is not valid."""


@dataclass(frozen=True)
class HistoryEntry:
    timeline: int  # an ancestor
    switchpoint: int  # LSN where it ended and its child began
    reason: str = ""


@dataclass(frozen=True)
class TimelineSpan:
    """The part of a timeline on the way to a target: WAL in [begin, end) (end None: open)."""

    timeline: int
    begin: int
    end: int | None


def parse_history(text: str, timeline: int | None = None) -> list[HistoryEntry]:
    """The entries of a history file, oldest first; HistoryError naming the line."""
    entries: list[HistoryEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t", 2) if "\t" in line else line.split(None, 2)
        try:
            entry = HistoryEntry(int(parts[0]), parse_lsn(parts[1]), parts[2].strip() if len(parts) > 2 else "")
        except (ValueError, IndexError):
            where = f"timeline {timeline:08X} history" if timeline else "timeline history"
            raise HistoryError(f"{where}, line {number}: not '<timeline> <LSN> <reason>': {line[:80]!r}") from None
        if entries and (entry.timeline <= entries[-1].timeline or entry.switchpoint < entries[-1].switchpoint):
            raise HistoryError(f"timeline history, line {number}: timelines and switch points must increase")
        entries.append(entry)
    return entries


def timeline_path(target: int, history: list[HistoryEntry]) -> list[TimelineSpan]:
    """The spans that lead to ``target``: each ancestor up to its switch point, then
    ``target`` from the last switch point on (``history`` is target's own history)."""
    spans: list[TimelineSpan] = []
    begin = 0
    for entry in history:
        if entry.timeline >= target:
            break
        spans.append(TimelineSpan(entry.timeline, begin, entry.switchpoint))
        begin = entry.switchpoint
    spans.append(TimelineSpan(target, begin, None))
    return spans


def segments_between(start: int, end: int, target: int, history: list[HistoryEntry],
                     size: int) -> list[tuple[int, int]]:
    """(timeline, segment number) of every segment needed to replay WAL from LSN
    ``start`` to LSN ``end`` (inclusive) ending on timeline ``target``, as recovery
    reads them: the segment that holds a switch point comes from the child timeline
    (the server copies it there on promotion)."""
    if end < start:
        return []
    needed: list[tuple[int, int]] = []
    for span in timeline_path(target, history):
        first = segment_of(max(start, span.begin), size)
        last = segment_of(end, size) if span.end is None or span.end > end else segment_of(span.end, size) - 1
        if span.end is not None and span.end <= start:
            continue
        needed.extend((span.timeline, segno) for segno in range(first, last + 1))
        if span.end is None or span.end > end:
            break
    return needed
