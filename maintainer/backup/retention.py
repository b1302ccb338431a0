"""Which backups to keep: a pure grandfather-father-son planner, generic over items.

``plan_retention`` decides; the caller deletes. It has no I/O, so the backup
job, config snapshots and ``--dry-run`` all use the same decision, and property
tests can check it over any generated history.

The rules follow restic's ``forget`` and borg's ``prune``: ``keep_last`` keeps
the N newest items; ``keep_hourly``/``daily``/``weekly``/``monthly`` keep the
newest item of each of the last N periods that have one (periods in UTC, ISO
weeks). An item is kept when any rule keeps it. On top of that:

- the newest item is always kept, and so is the newest non-suspicious one;
- a protected item (e.g. the newest backup verified by a restore drill) is
  always kept;
- a suspicious item (its size or row count fell sharply) never fills a rule's
  slot: the rules are applied to the non-suspicious items only, so a
  suspicious backup never replaces an earlier good one. It is itself kept
  while it is not older than the oldest good item kept, so a person can still
  look at it, and it ages out with the window around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from maintainer.config.jobs import Retention


@dataclass(frozen=True)
class RetentionItem:
    id: str
    time: datetime
    protected: bool = False
    suspicious: bool = False


@dataclass
class RetentionPlan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons, newest first
    delete: list[str] = field(default_factory=list)  # newest first


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


_PERIODS: list[tuple[str, str, Callable[[datetime], tuple]]] = [
    ("keep_hourly", "hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", "daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", "weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("keep_monthly", "monthly", lambda t: (t.year, t.month)),
]


def plan_retention(items: Sequence[RetentionItem], policy: "Retention") -> RetentionPlan:
    """Decide which items to keep (with reasons) and which to delete.

    The periods are counted over the items that exist, not over calendar time,
    as restic and borg do, so a pause in backups never empties the history.
    """
    ordered = sorted(items, key=lambda i: (_utc(i.time), i.id), reverse=True)
    keep: dict[str, list[str]] = {}

    def add(item_id: str, reason: str) -> None:
        keep.setdefault(item_id, []).append(reason)

    if ordered:
        add(ordered[0].id, "newest")
    for item in ordered:
        if item.protected:
            add(item.id, "protected")

    good = [i for i in ordered if not i.suspicious]
    if good and good[0] is not ordered[0]:
        add(good[0].id, "newest good")
    for n, item in enumerate(good[: policy.keep_last]):
        add(item.id, f"last {n + 1}")
    for attr, label, bucket_of in _PERIODS:
        limit = getattr(policy, attr)
        if limit <= 0:
            continue
        seen: list[tuple] = []
        for item in good:  # newest first: the first item of a bucket is its newest
            bucket = bucket_of(_utc(item.time))
            if bucket in seen:
                continue
            seen.append(bucket)
            add(item.id, f"{label} {len(seen)}")
            if len(seen) >= limit:
                break

    good_kept = [i for i in good if i.id in keep]
    oldest_good = _utc(good_kept[-1].time) if good_kept else None
    for item in ordered:
        if item.suspicious and item.id not in keep and (oldest_good is None or _utc(item.time) >= oldest_good):
            add(item.id, "suspicious, inside the kept window")

    delete = [i.id for i in ordered if i.id not in keep]
    keep_sorted = {i.id: keep[i.id] for i in ordered if i.id in keep}
    return RetentionPlan(keep=keep_sorted, delete=delete)


__all__ = ["RetentionItem", "RetentionPlan", "plan_retention"]
