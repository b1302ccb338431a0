"""Cron arithmetic shared by `validate`, `status` and the daemon: APScheduler 3 triggers with standard cron weekdays.

APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (its
docs call this a historical mistake). schedules.yaml is crontab, so the
weekday field is translated to day names before APScheduler sees it:
"30 5 * * 0" runs on Sundays, as a cron user expects.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit():
        n = int(token)
        if n > 7:
            raise ValueError(f"weekday {n} is out of range (0-7, 0 and 7 are Sunday)")
        return n % 7
    if token[:3] in _NAMES:
        return _NAMES.index(token[:3])
    raise ValueError(f"'{token}' is not a weekday")


def cron_weekdays(field: str) -> str:
    """A crontab weekday field -> an APScheduler day_of_week field of day names."""
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step} in '{field}' must be at least 1")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _day(a), _day(b)
            if b.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"weekday range '{base}' runs backwards")
        else:
            first = last = _day(base)
            if step_text:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step))
    if days == set(range(7)):
        return "*"
    return ",".join(_NAMES[d] for d in sorted(days))


def cron_trigger(expr: str, tz: str, jitter: timedelta | float | None = None) -> CronTrigger:
    """The trigger for a validated 5-field cron expression in time zone ``tz``.

    ``jitter`` (seconds or a timedelta) delays each fire time by a random
    0..jitter, so several hosts do not hit the same storage at once.
    """
    minute, hour, day, month, weekday = expr.split()
    if isinstance(jitter, timedelta):
        jitter = jitter.total_seconds()
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=cron_weekdays(weekday),
                       timezone=ZoneInfo(tz), jitter=int(jitter) if jitter else None)


def next_fire(expr: str, tz: str, now: datetime | None = None) -> datetime | None:
    """The next time the expression fires after ``now`` (no jitter)."""
    now = now or datetime.now(timezone.utc)
    return cron_trigger(expr, tz).get_next_fire_time(None, now.astimezone(ZoneInfo(tz)))

