"""Planning a point-in-time restore: which base backup, which WAL, to which point. Pure.

``plan_pitr`` decides everything ``restore --to-time/--to-lsn/--to-end --dry-run``
prints and the recovery then does, from what is stored (base backups, the WAL
archive's listing, the newest timeline's history) and the clock:

- the newest base backup that is consistent before the target (its stop time or
  stop LSN is not after it; recovery cannot stop inside a base backup);
- the WAL to replay, along the timeline path that ends on the archive's newest
  timeline: every segment from the base backup's start on, up to the end of the
  archive's continuous run (the trailing partial segment included). Recovery
  stops at the target; the segments after it only serve to find the first commit
  past the target;
- a refusal (PitrRefused: one line naming the reason) for a target in the future,
  before the oldest base backup, inside or after a gap (the gap and the latest
  reachable time named), or past the end of the archive.

A segment's time is its stored object's modification time: the archiver stores a
segment when it is complete (a partial one at each flush), so every commit in it
happened before that time. The first segment whose time is at or after the target
time holds the target; WAL up to it must be continuous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from maintainer.errors import JobError
from maintainer.wal.lsn import format_lsn, segment_name, segment_of
from maintainer.wal.timeline import HistoryEntry, segments_between

TIME, LSN, END = "time", "lsn", "end"


class PitrRefused(JobError):
    """The archive cannot bring the database to the requested point; nothing was created."""


@dataclass(frozen=True)
class PitrTarget:
    kind: str  # TIME, LSN or END
    time: datetime | None = None
    lsn: int | None = None

    def describe(self) -> str:
        if self.kind == TIME:
            assert self.time is not None
            return f"time {_ts(self.time)}"
        if self.kind == LSN:
            assert self.lsn is not None
            return f"LSN {format_lsn(self.lsn)}"
        return "the end of the archive"


@dataclass(frozen=True)
class BaseInfo:
    """What the planner needs of a base backup (from its manifest)."""

    id: str
    start_lsn: int
    stop_lsn: int
    start_time: datetime
    stop_time: datetime
    timeline: int
    pg_major: int


@dataclass(frozen=True)
class StoredWal:
    """A stored segment as the planner sees it: where, and when it was stored."""

    key: str
    modified: datetime
    partial: bool = False
    encrypted: bool = False


@dataclass(frozen=True)
class WalStep:
    """One segment recovery will read, in replay order."""

    timeline: int
    segno: int
    name: str  # the 24-hex file name recovery asks for
    key: str
    modified: datetime
    partial: bool


@dataclass
class PitrPlan:
    server: str
    base: BaseInfo
    target: PitrTarget
    timeline: int  # recovery_target_timeline
    segment_size: int
    steps: list[WalStep]
    required: int  # the first ``required`` steps must be replayed to reach the target
    latest_reachable: datetime  # the time of the newest WAL of the continuous run
    histories: dict[int, str] = field(default_factory=dict)  # timeline -> key; every one stored
    notes: list[str] = field(default_factory=list)

    @property
    def wal_bytes(self) -> int:
        return len(self.steps) * self.segment_size

    @property
    def required_bytes(self) -> int:
        return self.required * self.segment_size

    def wal_range(self) -> str:
        if not self.steps:
            return "none"
        first, last = self.steps[0], self.steps[-1]
        tlis = sorted({s.timeline for s in self.steps})
        where = f"timeline {tlis[0]}" if len(tlis) == 1 else "timelines " + ", ".join(map(str, tlis))
        return (f"{first.name} .. {last.name}{' (partial)' if last.partial else ''}: {len(self.steps)} segments "
                f"on {where}, {self.required} needed to reach the target")

    def to_dict(self) -> dict:
        return {"server": self.server, "base_backup": self.base.id, "base_start_lsn": format_lsn(self.base.start_lsn),
                "base_stop_lsn": format_lsn(self.base.stop_lsn), "base_stop_time": _ts(self.base.stop_time),
                "target": self.target.describe(), "timeline": self.timeline, "first_segment": self.steps[0].name,
                "last_segment": self.steps[-1].name, "segments": len(self.steps), "segments_needed": self.required,
                "latest_reachable": _ts(self.latest_reachable), "notes": self.notes}


def plan_pitr(server: str, bases: list[BaseInfo], segments: dict[tuple[int, int], StoredWal],
              partials: dict[tuple[int, int], StoredWal], timeline: int, history: list[HistoryEntry],
              target: PitrTarget, now: datetime, *, segment_size: int,
              histories: dict[int, str] | None = None) -> PitrPlan:
    """The plan, or PitrRefused naming why there is none (see the module docstring).

    ``segments``/``partials`` map (timeline, segment number) to stored objects;
    ``timeline`` is the archive's newest timeline and ``history`` its history.
    """
    if not bases:
        raise PitrRefused(f"no base backup of {server} is stored; take one first (a pg_basebackup job)")
    if target.kind == TIME and target.time is not None and target.time > now:
        raise PitrRefused(f"target {_ts(target.time)} is in the future (now {_ts(now)})")
    on_path = [b for b in bases if _on_path(b, timeline, history)]
    if not on_path:
        raise PitrRefused(f"no base backup of {server} lies on timeline {timeline}'s history")
    oldest = min(on_path, key=lambda b: b.stop_lsn)
    usable = [b for b in on_path if _consistent_before(b, target)]
    if not usable:
        if target.kind == TIME:
            raise PitrRefused(f"target {_ts(target.time)} is before the oldest base backup of {server} "
                              f"(consistent from {_ts(oldest.stop_time)}, backup {oldest.id})")
        raise PitrRefused(f"target {target.describe()} is before the oldest base backup of {server} "
                          f"(consistent from LSN {format_lsn(oldest.stop_lsn)}, backup {oldest.id})")
    base = max(usable, key=lambda b: (b.stop_lsn, b.stop_time))
    steps, gap = _chain(base, segments, partials, timeline, history, segment_size)
    if not steps:
        raise PitrRefused(f"the WAL archive of {server} does not hold the first segment of base backup {base.id} "
                          f"({gap})")
    latest = max(s.modified for s in steps)
    end_lsn = (steps[-1].segno + 1) * segment_size
    if segment_of(base.stop_lsn, segment_size) > steps[-1].segno:
        raise PitrRefused(f"the WAL archive of {server} ends before base backup {base.id} is consistent"
                          + (f" ({gap})" if gap else "") + "; latest reachable time: none from this backup")
    required = _required(steps, target, base, segment_size)
    if target.kind == END and gap:  # WAL exists past a hole: the archive's end cannot be reached
        required = None
    if required is None:
        why = f"a gap follows ({gap})" if gap else "the archive ends there"
        raise PitrRefused(f"target {target.describe()} is past the WAL archived for {server}: {why}; latest "
                          f"reachable time {_ts(latest)} (LSN {format_lsn(end_lsn)})")
    plan = PitrPlan(server=server, base=base, target=target, timeline=timeline, segment_size=segment_size,
                    steps=steps, required=required, latest_reachable=latest, histories=dict(histories or {}))
    if gap:
        plan.notes.append(f"the archive has a gap after the target: {gap}")
    if steps[-1].partial:
        plan.notes.append(f"the newest segment {steps[-1].name} is partial (stored {_ts(steps[-1].modified)})")
    return plan


def _on_path(base: BaseInfo, timeline: int, history: list[HistoryEntry]) -> bool:
    """True when the base backup's WAL leads to ``timeline``: it was taken on a
    timeline of that history before that timeline's switch point, or on it."""
    if base.timeline == timeline:
        return True
    for entry in history:
        if entry.timeline == base.timeline:
            return base.stop_lsn <= entry.switchpoint
    return False


def _consistent_before(base: BaseInfo, target: PitrTarget) -> bool:
    if target.kind == TIME:
        assert target.time is not None
        return base.stop_time <= target.time
    if target.kind == LSN:
        assert target.lsn is not None
        return base.stop_lsn <= target.lsn
    return True


def _chain(base: BaseInfo, segments, partials, timeline: int, history: list[HistoryEntry],
           size: int) -> tuple[list[WalStep], str]:
    """The stored segments from the base backup's start along the path to
    ``timeline``, up to the first missing one (a partial segment ends the chain);
    and the gap that ended it ('' when the archive simply ends)."""
    steps: list[WalStep] = []
    top = max([s for _, s in segments] + [s for _, s in partials], default=-1)
    if top < 0:
        return steps, "the archive is empty"
    for tli, segno in segments_between(base.start_lsn, (top + 1) * size - 1, timeline, history, size):
        stored = segments.get((tli, segno))
        if stored is None and (tli, segno) in partials:
            p = partials[(tli, segno)]
            steps.append(WalStep(tli, segno, segment_name(tli, segno, size), p.key, p.modified, True))
            return steps, ""
        if stored is None:
            return steps, _describe_gap(tli, segno, segments, size)
        steps.append(WalStep(tli, segno, segment_name(tli, segno, size), stored.key, stored.modified, False))
    return steps, ""


def _describe_gap(tli: int, segno: int, segments, size: int) -> str:
    later = sorted(s for (t, s) in segments if t == tli and s > segno)
    last = later[0] - 1 if later else segno
    first_name, last_name = segment_name(tli, segno, size), segment_name(tli, last, size)
    return f"missing {first_name}" + (f" .. {last_name} ({last - segno + 1} segments)" if last > segno else "")


def _required(steps: list[WalStep], target: PitrTarget, base: BaseInfo, size: int) -> int | None:
    """How many steps recovery must replay to reach ``target``; None when the chain
    ends before it."""
    consistent = segment_of(base.stop_lsn, size)
    floor = next(i for i, s in enumerate(steps) if s.segno >= consistent) + 1
    if target.kind == END:
        return len(steps)
    if target.kind == LSN:
        assert target.lsn is not None
        wanted = segment_of(target.lsn, size)
        for i, step in enumerate(steps):
            if step.segno >= wanted:
                return max(i + 1, floor)
        return None
    assert target.time is not None
    for i, step in enumerate(steps):
        if step.modified >= target.time:
            return max(i + 1, floor)
    return None


def _ts(value: datetime | None) -> str:
    if value is None:
        return "?"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
