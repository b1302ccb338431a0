"""The retention planner keeps what the rules promise, over any generated history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintainer.backup.retention import RetentionItem, plan_retention
from maintainer.config.jobs import Retention

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def item(hours: float, **kw) -> RetentionItem:
    t = T0 + timedelta(hours=hours)
    return RetentionItem(id=t.strftime("%Y%m%dT%H%M%SZ"), time=t, **kw)


policies = st.builds(
    Retention,
    keep_last=st.integers(0, 5), keep_hourly=st.integers(0, 5), keep_daily=st.integers(0, 5),
    keep_weekly=st.integers(0, 4), keep_monthly=st.integers(0, 3),
)


@st.composite
def histories(draw):
    # Distinct times, minutes apart to months apart; a few protected and suspicious.
    offsets = draw(st.lists(st.integers(0, 24 * 400 * 4), min_size=0, max_size=40, unique=True))
    items = []
    for off in offsets:
        items.append(item(off / 4, protected=draw(st.booleans()) and draw(st.booleans()),
                          suspicious=draw(st.booleans()) and draw(st.booleans())))
    return items


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_every_item_is_either_kept_or_deleted_and_never_both(items, policy):
    plan = plan_retention(items, policy)
    ids = {i.id for i in items}
    assert set(plan.keep) | set(plan.delete) == ids
    assert not set(plan.keep) & set(plan.delete)
    assert all(plan.keep[i] for i in plan.keep), "every kept item says why"


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_the_newest_item_and_every_protected_item_are_never_deleted(items, policy):
    plan = plan_retention(items, policy)
    if items:
        newest = max(items, key=lambda i: i.time)
        assert newest.id in plan.keep
    for i in items:
        if i.protected:
            assert i.id in plan.keep


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_a_suspicious_item_never_displaces_a_good_one(items, policy):
    """The good items deleted are exactly those deleted if the suspicious ones did not exist
    (the newest-item rule aside: a suspicious newest item does not protect an older good one)."""
    good = [i for i in items if not i.suspicious]
    plan_all = plan_retention(items, policy)
    plan_good = plan_retention(good, policy)
    deleted_good = [d for d in plan_all.delete if d in {g.id for g in good}]
    assert deleted_good == plan_good.delete


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_applying_a_plan_twice_deletes_nothing_more(items, policy):
    plan = plan_retention(items, policy)
    kept = [i for i in items if i.id in plan.keep]
    again = plan_retention(kept, policy)
    assert again.delete == []


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 10))
def test_keep_last_keeps_at_least_the_n_newest_good_items(items, n):
    plan = plan_retention(items, Retention(keep_last=n, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    good = sorted((i for i in items if not i.suspicious), key=lambda i: i.time, reverse=True)
    for i in good[:n]:
        assert i.id in plan.keep
    for i in good[n:]:
        if not i.protected:
            assert i.id in plan.delete


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 6))
def test_keep_daily_keeps_the_newest_item_of_each_of_the_last_n_days_that_have_one(items, n):
    plan = plan_retention(items, Retention(keep_last=0, keep_hourly=0, keep_daily=n, keep_weekly=0, keep_monthly=0))
    good = [i for i in items if not i.suspicious]
    days = sorted({i.time.date() for i in good}, reverse=True)[:n]
    for day in days:
        newest_of_day = max((i for i in good if i.time.date() == day), key=lambda i: i.time)
        assert "daily" in " ".join(plan.keep[newest_of_day.id])
    kept_daily = [i for i, reasons in plan.keep.items() if any(r.startswith("daily") for r in reasons)]
    assert len(kept_daily) == len(days)


def test_an_empty_history_plans_nothing():
    plan = plan_retention([], Retention())
    assert plan.keep == {} and plan.delete == []


def test_a_worked_example_over_ten_days():
    # Three backups a day for ten days; keep 2 last, 3 daily, 1 weekly.
    items = [item(d * 24 + h) for d in range(10) for h in (1, 9, 17)]
    plan = plan_retention(items, Retention(keep_last=2, keep_hourly=0, keep_daily=3, keep_weekly=1, keep_monthly=0))
    newest = item(9 * 24 + 17).id
    assert plan.keep[newest] == ["newest", "last 1", "daily 1", "weekly 1"]
    assert plan.keep[item(9 * 24 + 9).id] == ["last 2"]
    assert plan.keep[item(8 * 24 + 17).id] == ["daily 2"]
    assert plan.keep[item(7 * 24 + 17).id] == ["daily 3"]
    assert len(plan.keep) == 4
    assert len(plan.delete) == 26


def test_a_suspicious_newest_backup_is_kept_but_the_good_ones_keep_their_slots():
    items = [item(0), item(24), item(48, suspicious=True)]
    plan = plan_retention(items, Retention(keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert plan.keep[item(48).id][0] == "newest"
    assert plan.keep[item(24).id] == ["newest good", "last 1"]
    assert plan.delete == [item(0).id]


def test_an_old_suspicious_backup_ages_out_with_its_window():
    items = [item(0, suspicious=True), item(24), item(48)]
    plan = plan_retention(items, Retention(keep_last=2, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert plan.delete == [item(0).id]


def test_the_newest_verified_backup_survives_any_policy():
    items = [item(0, protected=True)] + [item(h) for h in range(1, 30)]
    plan = plan_retention(items, Retention(keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert plan.keep[item(0).id] == ["protected"]
    assert len(plan.keep) == 2


def test_a_suspicious_newest_backup_does_not_cost_the_newest_good_one_even_with_a_keep_nothing_policy():
    items = [item(0), item(24), item(48, suspicious=True)]
    plan = plan_retention(items, Retention(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert plan.keep == {item(48).id: ["newest"], item(24).id: ["newest good"]}
    assert plan.delete == [item(0).id]
