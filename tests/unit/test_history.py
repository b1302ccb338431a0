"""The run history: what status, health and metrics read."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from maintainer import redact
from maintainer.history import History, HistoryError
from maintainer.jobs.base import Event, JobResult

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 3, 15, tzinfo=timezone.utc)


def result(job="backup", status="ok", minutes=0, run=None, **kw) -> JobResult:
    started = T0 + timedelta(minutes=minutes)
    r = JobResult(job=job, type="pg_backup", run_id=run or f"{job}-{minutes}", started=started,
                  finished=started + timedelta(seconds=30), **kw)
    if status == "failed":
        r.fail("pg_dump: connection refused")
    return r


def test_a_run_is_recorded_as_running_then_with_its_result_and_figures(tmp_path):
    history = History.open(tmp_path / "state")
    history.record_start("backup", "pg_backup", "r1", T0)
    assert history.last_run("backup").status == "running"
    r = result(run="r1", figures={"bytes": 1234, "rows": 99, "note": "x"}, summary=["stored 1 KiB"],
               events=[Event("suspicious_backup", "rows fell by 80%")])
    history.record_result(r)
    run = history.last_run("backup")
    assert (run.status, run.figures, run.summary, run.duration) == ("ok", {"bytes": 1234, "rows": 99},
                                                                     ["stored 1 KiB"], 30.0)
    assert run.events == [{"kind": "suspicious_backup", "message": "rows fell by 80%"}]
    assert history.counts() == {("backup", "ok"): 1}


def test_consecutive_failures_count_back_from_the_newest_finished_run(tmp_path):
    history = History.open(tmp_path)
    for minutes, status in [(0, "failed"), (1, "ok"), (2, "failed"), (3, "failed")]:
        history.record_result(result(status=status, minutes=minutes))
    history.record_start("backup", "pg_backup", "now-running", T0 + timedelta(minutes=4))
    assert history.consecutive_failures("backup") == 2
    assert history.last_with_status("backup", "ok").run_id == "backup-1"
    assert history.last_finished("backup")[0].error_summary == "pg_dump: connection refused"


def test_a_run_left_running_by_a_dead_process_is_closed_as_failed(tmp_path):
    history = History.open(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    history.record_start("backup", "pg_backup", "orphan", T0)
    history._write("UPDATE runs SET pid = ? WHERE run_id = ?", (int(dead.stdout), "orphan"))
    assert history.close_abandoned() == ["orphan"]
    run = history.last_run("backup")
    assert run.status == "failed" and run.errors == ["the run did not finish: its process ended"]


def test_secrets_never_reach_the_history_file(tmp_path):
    redact.register("s3cr3t-password")
    history = History.open(tmp_path)
    r = result()
    r.fail("login failed for password s3cr3t-password")
    history.record_result(r)
    assert b"s3cr3t-password" not in (tmp_path / "history.sqlite3").read_bytes()
    assert "***" in history.last_run("backup").errors[-1]


def test_an_unusable_state_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HistoryError, match=r"cannot use the run history at .*file/state/history.sqlite3"):
        History.open(blocker / "state")


def test_reading_a_history_that_does_not_exist_yet_is_empty(tmp_path):
    history = History(tmp_path / "nothing")
    assert history.last_run("backup") is None and history.consecutive_failures("backup") == 0
    assert not (tmp_path / "nothing").exists()


def test_run_job_records_real_runs_and_never_dry_runs(tmp_path, monkeypatch):
    from maintainer.config.loader import parse_config
    from maintainer.jobs import JOB_TYPES
    from maintainer.jobs.base import Job
    from maintainer.runner import run_job

    class CountingJob(Job):
        type_name = "docker_prune"

        def run(self, ctx):
            result = self.new_result(ctx)
            result.figures["reclaimed_bytes"] = 0 if ctx.dry_run else 512
            return result

    monkeypatch.setitem(JOB_TYPES, "docker_prune", CountingJob)
    config = parse_config(f'daemon: {{state_dir: "{tmp_path}"}}\n'
                          'jobs:\n  prune: {type: docker_prune, schedule: "0 5 * * *"}\n')
    run_job(config, "prune", dry_run=True)
    history = History(tmp_path)
    assert history.runs("prune") == []
    result = run_job(config, "prune")
    [run] = history.runs("prune")
    assert (run.run_id, run.status, run.figures) == (result.run_id, "ok", {"reclaimed_bytes": 512})
