"""The daemon's timing rules, driven by a controllable clock instead of sleeps.

APScheduler reads the time through ``datetime.now`` in its scheduler and
executor modules; the FakeClock replaces that one name, and a ManualScheduler
processes due jobs only when the test says so. Jobs run in the real worker
pool, blocked on events the test releases.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import apscheduler.executors.base
import apscheduler.schedulers.base
import pytest
from apscheduler.schedulers.base import BaseScheduler

from maintainer.config.loader import parse_config
from maintainer.daemon.scheduler import JobScheduler
from maintainer.schedule import cron_trigger, cron_weekdays, next_fire

pytestmark = pytest.mark.unit

UTC = timezone.utc


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def set(self, now: datetime) -> None:
        self.now = now


class ManualScheduler(BaseScheduler):
    """Processes due jobs only when ``tick()`` is called."""

    def wakeup(self):
        pass

    def shutdown(self, wait=True):
        super().shutdown(wait)

    def tick(self):
        self._process_jobs()


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock(datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC))

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return clock.now.astimezone(tz) if tz else clock.now.replace(tzinfo=None)

    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", FakeDatetime)
    monkeypatch.setattr(apscheduler.executors.base, "datetime", FakeDatetime)
    return clock


class Jobs:
    """The run function: records starts, and blocks each run until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.running: set[str] = set()
        self.max_running = 0
        self.release: dict[str, threading.Event] = {}
        self.block = False

    def __call__(self, name: str) -> None:
        with self.lock:
            self.started.append(name)
            self.running.add(name)
            self.max_running = max(self.max_running, len(self.running))
            gate = self.release.setdefault(name, threading.Event())
        if self.block:
            assert gate.wait(10), f"test never released {name}"
        with self.lock:
            self.running.discard(name)
            self.release.pop(name, None)

    def free(self, name: str) -> None:
        with self.lock:
            gate = self.release.setdefault(name, threading.Event())
        gate.set()


def wait_until(predicate, timeout: float = 5.0) -> None:
    """Wait for worker threads (not for the clock): bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def config(jobs: dict[str, str], *, tz: str = "UTC", workers: int = 2, grace: str = "30m", jitter: str = "0s"):
    lines = [f"timezone: {tz}", "daemon:", f"  max_concurrent_jobs: {workers}", f"  misfire_grace: {grace}",
             f"  jitter: {jitter}", "jobs:"]
    for name, cron in jobs.items():
        lines += [f"  {name}:", "    type: docker_prune", f"    schedule: '{cron}'"]
    return parse_config("\n".join(lines) + "\n")


@pytest.fixture
def started():
    schedulers = []

    def start(cfg, jobs):
        sched = JobScheduler(cfg, jobs, scheduler=ManualScheduler())
        sched.start()
        schedulers.append((sched, jobs))
        return sched

    yield start
    for sched, jobs in schedulers:
        for name in list(jobs.release):
            jobs.free(name)
        sched.scheduler.shutdown(wait=True)


def events(sched, kind):
    return [(job, when) for k, job, when in sched.events if k == kind]


def test_a_job_fires_at_its_cron_time_in_the_configured_time_zone(clock, started):
    jobs = Jobs()
    sched = started(config({"backup": "15 3 * * *"}, tz="Europe/Berlin"), jobs)
    expected = datetime(2026, 11, 26, 3, 15, tzinfo=ZoneInfo("Europe/Berlin"))
    assert sched.next_runs()["backup"] == expected
    clock.set(datetime(2026, 11, 26, 2, 14, 59, tzinfo=UTC))  # 03:14:59 in Berlin
    sched.scheduler.tick()
    assert jobs.started == []
    clock.set(datetime(2026, 11, 26, 2, 15, 1, tzinfo=UTC))
    sched.scheduler.tick()
    wait_until(lambda: jobs.started == ["backup"] and not jobs.running)
    assert sched.next_runs()["backup"] == expected + timedelta(days=1)


def test_weekday_zero_is_sunday_as_in_crontab():
    fire = next_fire("30 5 * * 0", "UTC", datetime(2026, 11, 26, tzinfo=UTC))  # a Thursday
    assert fire == datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
    assert fire.strftime("%A") == "Sunday"
    assert cron_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert cron_weekdays("7") == "sun"
    assert cron_weekdays("0-6") == "*"


def test_jitter_delays_each_fire_time_by_at_most_the_jitter():
    now = datetime(2026, 11, 26, tzinfo=UTC)
    trigger = cron_trigger("0 4 * * *", "UTC", timedelta(minutes=10))
    base = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    fires = {trigger.get_next_fire_time(None, now) for _ in range(40)}
    assert all(base <= f <= base + timedelta(minutes=10) for f in fires)
    assert len(fires) > 1  # really random: 40 equal draws out of 600 s are not plausible


def test_missed_fire_times_within_the_grace_time_coalesce_into_one_run(clock, started):
    jobs = Jobs()
    sched = started(config({"prune": "0 * * * *"}, grace="30m"), jobs)
    clock.set(datetime(2026, 11, 26, 3, 10, tzinfo=UTC))  # 01:00, 02:00 and 03:00 were missed
    sched.scheduler.tick()
    wait_until(lambda: len(jobs.started) == 1 and not jobs.running)
    sched.scheduler.tick()
    assert jobs.started == ["prune"]
    assert events(sched, "submitted") == [("prune", datetime(2026, 11, 26, 3, 0, tzinfo=UTC))]
    assert sched.next_runs()["prune"] == datetime(2026, 11, 26, 4, 0, tzinfo=UTC)


def test_a_fire_time_missed_by_more_than_the_grace_time_is_skipped_and_logged(clock, started):
    jobs = Jobs()
    sched = started(config({"prune": "0 * * * *"}, grace="30m"), jobs)
    clock.set(datetime(2026, 11, 26, 1, 45, tzinfo=UTC))  # 01:00 is 45 minutes late
    sched.scheduler.tick()
    wait_until(lambda: events(sched, "missed"))
    assert jobs.started == []
    assert events(sched, "missed") == [("prune", datetime(2026, 11, 26, 1, 0, tzinfo=UTC))]
    assert sched.next_runs()["prune"] == datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def test_a_job_never_runs_twice_at_once(clock, started):
    jobs = Jobs()
    jobs.block = True
    sched = started(config({"backup": "0 * * * *"}), jobs)
    clock.set(datetime(2026, 11, 26, 1, 0, 1, tzinfo=UTC))
    sched.scheduler.tick()
    wait_until(lambda: jobs.running == {"backup"})
    clock.set(datetime(2026, 11, 26, 2, 0, 1, tzinfo=UTC))  # still running at the next fire time
    sched.scheduler.tick()
    assert events(sched, "skipped") == [("backup", datetime(2026, 11, 26, 2, 0, tzinfo=UTC))]
    assert jobs.started == ["backup"]
    jobs.free("backup")
    wait_until(lambda: not jobs.running)
    clock.set(datetime(2026, 11, 26, 3, 0, 1, tzinfo=UTC))
    sched.scheduler.tick()
    wait_until(lambda: len(jobs.started) == 2)
    jobs.free("backup")
    assert jobs.max_running == 1


def test_no_more_than_max_concurrent_jobs_run_at_once(clock, started):
    jobs = Jobs()
    jobs.block = True
    sched = started(config({"a": "0 * * * *", "b": "0 * * * *", "c": "0 * * * *"}, workers=2), jobs)
    clock.set(datetime(2026, 11, 26, 1, 0, 1, tzinfo=UTC))
    sched.scheduler.tick()
    wait_until(lambda: len(jobs.running) == 2)
    waiting = ({"a", "b", "c"} - jobs.running).pop()
    assert waiting not in jobs.started  # queued for a free worker, not dropped
    first = sorted(jobs.running)[0]
    jobs.free(first)
    wait_until(lambda: waiting in jobs.running)
    for name in ("a", "b", "c"):
        jobs.free(name)
    wait_until(lambda: not jobs.running)
    assert sorted(jobs.started) == ["a", "b", "c"]
    assert jobs.max_running == 2


def test_disabled_jobs_are_not_scheduled_and_reload_replaces_the_jobs(clock, started):
    cfg = parse_config("jobs:\n  a: {type: docker_prune, schedule: '0 * * * *'}\n"
                       "  b: {type: docker_prune, schedule: '0 * * * *', enabled: false}\n")
    sched = started(cfg, Jobs())
    assert set(sched.next_runs()) == {"a"}
    sched.reload(config({"c": "30 2 * * *"}))
    assert sched.next_runs() == {"c": datetime(2026, 11, 26, 2, 30, tzinfo=UTC)}
