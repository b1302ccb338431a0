"""Cron arithmetic shared by `validate`, `status` and the daemon."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    return CronTrigger.from_crontab(expr, timezone=ZoneInfo(tz))


def next_run(expr: str, tz: str, now: datetime | None = None) -> datetime | None:
    """The next time a 5-field cron expression fires after ``now``, in ``tz``."""
    now = now or datetime.now(timezone.utc)
    return cron_trigger(expr, tz).get_next_fire_time(None, now.astimezone(ZoneInfo(tz)))
