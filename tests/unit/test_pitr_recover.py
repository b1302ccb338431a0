"""Pure parts of the recovery: PostgreSQL's log times, and whether a recovery reached its target."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from maintainer.restore.pitr_plan import END, TIME, BaseInfo, PitrPlan, PitrTarget
from maintainer.restore.pitr_recover import FETCH_SCRIPT, Recovery, _pg_time, target_reached

T = datetime(2026, 11, 26, 14, 3, 11, tzinfo=timezone.utc)


def plan_to(target: PitrTarget) -> PitrPlan:
    base = BaseInfo("b", 0, 0, T - timedelta(hours=1), T - timedelta(hours=1), 1, 15)
    return PitrPlan(server="db", base=base, target=target, timeline=1, segment_size=16 << 20, steps=[], required=0,
                    latest_reachable=T + timedelta(minutes=5))


def test_postgres_log_times_are_read_with_their_zone():
    assert _pg_time("2026-11-26 14:03:10.123456+00") == T - timedelta(microseconds=876544)
    assert _pg_time("2026-11-26 15:03:11+01") == T
    assert _pg_time("not a time") is None


def test_a_time_target_is_reached_when_the_last_replayed_commit_is_before_it_and_the_next_after():
    plan = plan_to(PitrTarget(TIME, time=T))
    ok, text = target_reached(plan, Recovery(reached_time=T - timedelta(seconds=1), stopped_before=T + timedelta(seconds=1)))
    assert ok and "stopped before one at 2026-11-26 14:03:12.000 UTC" in text
    assert not target_reached(plan, Recovery(reached_time=T + timedelta(seconds=1)))[0]
    assert not target_reached(plan, Recovery(reached_time=T - timedelta(seconds=9), stopped_before=T))[0]
    ok, text = target_reached(plan, Recovery(reached_time=T - timedelta(seconds=3), ran_to_end=True))
    assert ok and "the archive's last commit before the target" in text


def test_the_end_is_always_reached_once_promoted():
    ok, text = target_reached(plan_to(PitrTarget(END)), Recovery(reached_time=T))
    assert ok and text.startswith("the end of the archive")


def test_the_restore_command_fails_fast_for_what_the_plan_does_not_hold_and_waits_for_the_rest():
    lines = FETCH_SCRIPT.splitlines()
    assert any("grep -qx" in line and "|| exit 1" in line for line in lines)  # unplanned: fail at once
    assert any(".ready" in line and "while" in line for line in lines)  # planned: wait until whole
    assert any("stop ] && exit 1" in line for line in lines)  # maintainer gave up: fail
