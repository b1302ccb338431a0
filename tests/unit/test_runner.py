"""The runner keeps the same promises for every caller: the job's timeout, a crash
turned into a failed run, the history row. Small job types stand in for real ones."""

from __future__ import annotations

import threading
import time

import pytest

from maintainer.config.loader import parse_config
from maintainer.history import History
from maintainer.jobs import JOB_TYPES
from maintainer.jobs.base import Job, RunContext
from maintainer.runner import run_job

pytestmark = pytest.mark.unit

CLEANED = threading.Event()


class StallingJob(Job):
    """Waits (like a pg_dump queued behind a lock) until cancelled, then cleans up."""

    type_name = "image_update"

    def run(self, ctx: RunContext):
        if ctx.cancel.wait(30):
            CLEANED.set()
            ctx.check_cancelled()
        return self.new_result(ctx)


class CrashingJob(Job):
    type_name = "docker_prune"

    def run(self, ctx: RunContext):
        raise KeyError("a bug")


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setitem(JOB_TYPES, "image_update", StallingJob)
    monkeypatch.setitem(JOB_TYPES, "docker_prune", CrashingJob)
    CLEANED.clear()
    return parse_config(f"""
daemon: {{state_dir: "{tmp_path}/state"}}
jobs:
  update: {{type: image_update, schedule: "0 2 * * 1", images: [x], timeout: 0.3s}}
  prune: {{type: docker_prune, schedule: "0 5 * * *"}}
""")


def test_a_job_is_stopped_at_its_timeout_cleanly_and_the_failure_says_so(config, tmp_path):
    started = time.monotonic()

    result = run_job(config, "update")

    assert time.monotonic() - started < 10 and CLEANED.is_set()
    assert not result.ok and result.errors == [
        "timed out after 0.3 s (the job's timeout: stopped, and what it started was removed)"]
    [run] = History.open(tmp_path / "state").runs("update")
    assert run.status == "failed" and "timed out after 0.3 s" in run.error_summary


def test_a_spec_given_by_the_caller_runs_with_its_own_timeout(config):
    spec = config.jobs["update"].model_copy(update={"timeout": None})
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()

    result = run_job(config, "update-once", spec=spec, cancel=cancel)

    assert result.errors == ["interrupted: job update-once was stopped"]


def test_a_crash_is_a_recorded_failed_run_not_an_exception(config, tmp_path):
    result = run_job(config, "prune")

    assert result.errors == ["internal error in job prune: KeyError: 'a bug'"]
    assert History.open(tmp_path / "state").runs("prune")[0].status == "failed"
