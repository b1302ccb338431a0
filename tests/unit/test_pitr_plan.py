"""The point-in-time restore planner: which base backup, which WAL, and every refusal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from maintainer.restore.pitr_plan import END, LSN, TIME, BaseInfo, PitrRefused, PitrTarget, StoredWal, plan_pitr
from maintainer.wal.lsn import segment_name
from maintainer.wal.timeline import HistoryEntry

SIZE = 16 * 1024 * 1024
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=2)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def base(bid: str, first_segno: int, minutes: float, timeline: int = 1) -> BaseInfo:
    """A base backup that starts at the beginning of segment ``first_segno`` and is
    consistent within it, one minute after ``minutes``."""
    return BaseInfo(id=bid, start_lsn=first_segno * SIZE + 40, stop_lsn=first_segno * SIZE + 4096,
                    start_time=at(minutes), stop_time=at(minutes + 1), timeline=timeline, pg_major=15)


def archive(timeline: int, segnos, minutes_of=lambda s: s * 10.0, partial: int | None = None):
    """Segments of ``timeline``, segment N stored at minute 10*N; and optionally a partial one."""
    segments = {(timeline, s): StoredWal(f"wal/db/{timeline:08X}/{segment_name(timeline, s)}-x.zst", at(minutes_of(s)))
                for s in segnos}
    partials = {}
    if partial is not None:
        partials[(timeline, partial)] = StoredWal(f"wal/db/{timeline:08X}/{segment_name(timeline, partial)}.partial.zst",
                                                  at(minutes_of(partial)), partial=True)
    return segments, partials


def plan(bases, segments, partials, target, timeline=1, history=()):
    return plan_pitr("db", bases, segments, partials, timeline, list(history), target, NOW, segment_size=SIZE)


def test_the_newest_base_backup_consistent_before_the_target_is_chosen():
    segments, partials = archive(1, range(1, 10))
    p = plan([base("a", 1, 5), base("b", 4, 35), base("c", 8, 75)], segments, partials, PitrTarget(TIME, at(62)))
    assert p.base.id == "b"
    assert p.steps[0].name == segment_name(1, 4)
    assert p.steps[-1].name == segment_name(1, 9)  # the whole continuous run, to find the commit after the target
    assert p.steps[p.required - 1].name == segment_name(1, 7)  # the first segment stored at or after 12:62


def test_a_target_inside_a_base_backup_uses_the_one_before():
    segments, partials = archive(1, range(1, 10))
    p = plan([base("a", 1, 5), base("b", 4, 35)], segments, partials, PitrTarget(TIME, at(35.5)))
    assert p.base.id == "a"


def test_a_target_in_the_future_is_refused():
    segments, partials = archive(1, range(1, 10))
    with pytest.raises(PitrRefused, match="is in the future"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, NOW + timedelta(seconds=5)))


def test_a_target_before_the_oldest_base_backup_is_refused_naming_it():
    segments, partials = archive(1, range(1, 10))
    with pytest.raises(PitrRefused, match=r"before the oldest base backup of db \(consistent from 2026-11-26 12:06:00 "
                                          r"UTC, backup a\)"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, at(3)))


def test_a_target_after_a_gap_is_refused_naming_the_gap_and_the_latest_reachable_time():
    segments, partials = archive(1, [1, 2, 3, 6, 7, 8])
    with pytest.raises(PitrRefused) as refused:
        plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, at(55)))
    message = refused.value.message
    assert f"missing {segment_name(1, 4)} .. {segment_name(1, 5)} (2 segments)" in message
    assert "latest reachable time 2026-11-26 12:30:00 UTC" in message


def test_a_target_before_a_gap_is_planned_with_a_note():
    segments, partials = archive(1, [1, 2, 3, 6, 7])
    p = plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, at(25)))
    assert p.steps[-1].name == segment_name(1, 3)
    assert any("gap after the target" in n for n in p.notes)


def test_a_target_past_the_newest_archived_wal_is_refused():
    segments, partials = archive(1, range(1, 5))
    with pytest.raises(PitrRefused, match="past the WAL archived for db: the archive ends there; latest reachable "
                                          "time 2026-11-26 12:40:00 UTC"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, at(45)))


def test_the_partial_segment_ends_the_chain_and_reaches_the_newest_time():
    segments, partials = archive(1, range(1, 5), partial=5)
    p = plan([base("a", 1, 5)], segments, partials, PitrTarget(TIME, at(45)))
    assert p.steps[-1].partial and p.steps[-1].name == segment_name(1, 5)
    assert p.required == len(p.steps)
    assert p.latest_reachable == at(50)


def test_to_the_end_replays_everything_and_to_an_lsn_up_to_its_segment():
    segments, partials = archive(1, range(1, 10))
    end = plan([base("a", 1, 5)], segments, partials, PitrTarget(END))
    assert end.required == len(end.steps) == 9
    by_lsn = plan([base("a", 1, 5)], segments, partials, PitrTarget(LSN, lsn=5 * SIZE + 100))
    assert by_lsn.steps[by_lsn.required - 1].name == segment_name(1, 5)
    with pytest.raises(PitrRefused, match="before the oldest base backup"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(LSN, lsn=SIZE + 10))


def test_a_missing_first_segment_is_refused():
    segments, partials = archive(1, range(3, 10))
    with pytest.raises(PitrRefused, match=f"does not hold the first segment of base backup a \\(missing "
                                          f"{segment_name(1, 1)} .. {segment_name(1, 2)}"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(END))


def test_no_base_backup_is_refused():
    segments, partials = archive(1, range(1, 3))
    with pytest.raises(PitrRefused, match="no base backup of db is stored"):
        plan([], segments, partials, PitrTarget(END))


def test_recovery_follows_the_timeline_switch_and_reads_the_switch_segment_from_the_child():
    # Timeline 1 ran to segment 6; a restore promoted at LSN inside segment 4 started timeline 2.
    segments, _ = archive(1, range(1, 7))
    tl2, partials = archive(2, range(4, 8), minutes_of=lambda s: 60 + s * 10)
    segments.update(tl2)
    history = [HistoryEntry(1, 4 * SIZE + 500, "before 2026-11-26 12:35")]
    p = plan([base("a", 1, 5)], segments, partials, PitrTarget(END), timeline=2, history=history)
    assert [(s.timeline, s.segno) for s in p.steps] == [(1, 1), (1, 2), (1, 3), (2, 4), (2, 5), (2, 6), (2, 7)]
    # A base backup taken on timeline 1 after the switch point is not on timeline 2's path.
    late = base("late", 5, 50)
    assert plan([base("a", 1, 5), late], segments, partials, PitrTarget(END), timeline=2, history=history).base.id == "a"
    # One taken on timeline 2 is used for a target after it.
    on_two = base("two", 6, 110, timeline=2)
    p2 = plan([base("a", 1, 5), on_two], segments, partials, PitrTarget(TIME, at(119)), timeline=2, history=history)
    assert p2.base.id == "two" and p2.steps[0].name == segment_name(2, 6)


def test_the_end_behind_a_gap_is_refused_naming_the_gap():
    segments, partials = archive(1, [1, 2, 3, 5, 6])
    with pytest.raises(PitrRefused, match=f"the end of the archive is past the WAL archived for db: a gap follows "
                                          f"\\(missing {segment_name(1, 4)}\\); latest reachable time "
                                          "2026-11-26 12:30:00 UTC"):
        plan([base("a", 1, 5)], segments, partials, PitrTarget(END))
