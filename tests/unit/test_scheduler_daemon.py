"""The daemon's run wrapper and shutdown, with small test job types registered
in the job registry (unit tests only)."""

from __future__ import annotations

import threading

import pytest

from maintainer.config.loader import parse_config
from maintainer.daemon.service import Daemon
from maintainer.jobs import JOB_TYPES
from maintainer.jobs.base import Job, RunContext

pytestmark = pytest.mark.unit

STARTED = threading.Event()
CLEANED = threading.Event()


class CrashingJob(Job):
    type_name = "docker_prune"

    def run(self, ctx: RunContext):
        raise ZeroDivisionError("a bug in a job")


class SlowJob(Job):
    """Runs until cancelled, then cleans up what it "started"."""

    type_name = "image_update"

    def run(self, ctx: RunContext):
        result = self.new_result(ctx)
        STARTED.set()
        if ctx.cancel.wait(20):
            CLEANED.set()
            ctx.check_cancelled()
        return result


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    monkeypatch.setitem(JOB_TYPES, "docker_prune", CrashingJob)
    monkeypatch.setitem(JOB_TYPES, "image_update", SlowJob)
    STARTED.clear()
    CLEANED.clear()
    from support.s3 import free_port

    config = parse_config(f"""
daemon: {{state_dir: "{tmp_path}/state", listen: "127.0.0.1:{free_port()}", shutdown_grace: 0.2s}}
jobs:
  prune: {{type: docker_prune, schedule: "0 5 * * *"}}
  update: {{type: image_update, schedule: "0 2 * * 1", images: [x]}}
""")
    d = Daemon(tmp_path / "schedules.yaml", config)
    yield d
    d.scheduler.shutdown()
    d.server.httpd.server_close()


def test_a_crash_inside_a_job_is_recorded_and_the_scheduler_goes_on(daemon):
    daemon.scheduler.start()
    daemon._run_scheduled("prune")
    daemon._run_scheduled("prune")
    runs = daemon.history.runs("prune")
    assert [r.status for r in runs] == ["failed", "failed"]
    assert runs[0].errors == ["internal error in job prune: ZeroDivisionError: a bug in a job"]
    assert daemon.scheduler.alive and set(daemon.scheduler.next_runs()) == {"prune", "update"}


def test_shutdown_gives_running_jobs_the_grace_time_then_cancels_them_and_exits_0(daemon):
    daemon.scheduler.start()
    worker = threading.Thread(target=daemon._run_scheduled, args=("update",))
    worker.start()
    assert STARTED.wait(10)
    daemon._stop.set()
    assert daemon._shutdown() == 0
    worker.join(10)
    assert CLEANED.is_set()
    run = daemon.history.last_run("update")
    assert run.status == "failed" and run.errors == ["interrupted: job update was stopped"]
    assert not daemon.scheduler.alive


def test_nothing_starts_once_shutdown_began(daemon):
    daemon._stop.set()
    daemon._run_scheduled("prune")
    assert daemon.history.runs("prune") == []
