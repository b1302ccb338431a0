"""Which base backups and which WAL to keep: pure planners, no I/O.

Base backups follow the same grandfather-father-son rules as dumps
(``maintainer.backup.retention.plan_retention``). WAL follows the base backups:
a restore starts from a base backup and replays WAL from that backup's start
segment on, so every segment from the oldest kept base backup's start segment
onwards is kept (any timeline), and every segment before it is removed. With
no base backup kept, no WAL is removed: the archive is then all there is.
History files are tiny and always kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from maintainer.backup.retention import RetentionItem, RetentionPlan, plan_retention
from maintainer.wal.layout import StoredSegment
from maintainer.wal.lsn import parse_segment_name, segment_of


@dataclass(frozen=True)
class KeptBackup:
    id: str
    start_lsn: int


@dataclass
class WalPlan:
    cutoff: int | None  # the first segment number kept; None: keep everything
    kept_by: str | None  # the base backup that sets the cutoff
    delete: list[StoredSegment] = field(default_factory=list)
    keep: int = 0  # how many segment objects stay

    def describe(self) -> str:
        if self.cutoff is None:
            return "keep all WAL (no base backup kept)"
        return f"remove {len(self.delete)} WAL object(s) older than base backup {self.kept_by}, keep {self.keep}"


def plan_wal_retention(stored: Iterable[StoredSegment], kept: Sequence[KeptBackup], segment_size: int) -> WalPlan:
    """The segment objects (complete and partial) before the oldest kept backup's start segment."""
    if not kept:
        objects = list(stored)
        return WalPlan(None, None, [], len(objects))
    oldest = min(kept, key=lambda b: (b.start_lsn, b.id))
    cutoff = segment_of(oldest.start_lsn, segment_size)
    plan = WalPlan(cutoff, oldest.id)
    for segment in stored:
        if parse_segment_name(segment.segment, segment_size)[1] < cutoff:
            plan.delete.append(segment)
        else:
            plan.keep += 1
    plan.delete.sort(key=lambda s: s.key)
    return plan


def plan_base_retention(items: Sequence[RetentionItem], policy) -> RetentionPlan:
    """Base backups by the GFS rules (the newest is always kept)."""
    return plan_retention(items, policy)


__all__ = ["KeptBackup", "WalPlan", "plan_base_retention", "plan_wal_retention"]
