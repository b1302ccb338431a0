"""WAL retention is a pure plan: every segment before the oldest kept base backup's start
segment goes, every other one stays (any timeline), and nothing goes without a kept
base backup. Checked over generated archives (hypothesis) and on examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintainer.wal.layout import StoredSegment, partial_key, segment_key
from maintainer.wal.lsn import segment_name, segment_of, segment_start
from maintainer.wal.retention import KeptBackup, plan_wal_retention

pytestmark = pytest.mark.unit

SIZE = 16 * 1024 * 1024


def stored(tli: int, segno: int, partial: bool = False) -> StoredSegment:
    name = segment_name(tli, segno, SIZE)
    key = partial_key("db", name) if partial else segment_key("db", name, "0" * 64)
    return StoredSegment(key, name, None if partial else "0" * 64, partial, False)


segments = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 600), st.booleans()), max_size=60, unique=True)
backups = st.lists(st.integers(0, 600 * SIZE), max_size=5)


@settings(max_examples=300, deadline=None)
@given(segments, backups)
def test_the_plan_removes_exactly_the_wal_no_kept_base_backup_needs(found, starts):
    objects = [stored(tli, segno, partial) for tli, segno, partial in found]
    kept = [KeptBackup(f"b{i}", lsn) for i, lsn in enumerate(starts)]
    plan = plan_wal_retention(objects, kept, SIZE)
    deleted = {s.key for s in plan.delete}
    assert len(deleted) == len(plan.delete)
    assert plan.keep + len(plan.delete) == len(objects)
    if not kept:
        assert plan.delete == [] and plan.cutoff is None
        return
    first_needed = min(segment_of(lsn, SIZE) for lsn in starts)
    assert plan.cutoff == first_needed
    for segment, (tli, segno, _) in zip(objects, found):
        needed = segno >= first_needed  # replay from any kept backup's start onwards reads it
        assert (segment.key in deleted) == (not needed), (segment.segment, first_needed)


def test_the_oldest_kept_backup_sets_the_cutoff_and_its_own_start_segment_stays():
    objects = [stored(1, n) for n in range(1, 11)] + [stored(1, 11, partial=True)]
    plan = plan_wal_retention(objects, [KeptBackup("new", segment_start(8, SIZE) + 40),
                                        KeptBackup("old", segment_start(5, SIZE) + 40)], SIZE)
    assert plan.kept_by == "old" and plan.cutoff == 5
    assert [s.segment for s in plan.delete] == [segment_name(1, n, SIZE) for n in range(1, 5)]
    assert plan.keep == 7
    assert "remove 4 WAL object(s) older than base backup old" in plan.describe()


def test_without_a_kept_base_backup_all_wal_is_kept():
    plan = plan_wal_retention([stored(1, 1), stored(2, 2)], [], SIZE)
    assert plan.delete == [] and plan.keep == 2 and "keep all" in plan.describe()
