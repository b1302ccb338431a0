"""A job's ``timeout:`` holds for every caller: `maintainer run` under host cron or a
Kubernetes CronJob stops a stalled pg_dump just as the daemon does, cleanly."""

from __future__ import annotations

import time

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.history import History
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.scenarios import load_contrivance, run_cli, write_config
from support.scenarios import hold_lock

pytestmark = pytest.mark.integration


@pytest.fixture
def source(postgres_factory):
    server = postgres_factory(command=["-c", "max_prepared_transactions=2"])
    load_contrivance(server)
    return server


def config_data(tmp_path, server, timeout: str) -> dict:
    return {
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"contrivance": {"host": server.host, "port": server.port, "user": server.user,
                                      "password": server.password, "sslmode": "disable"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {"backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"],
                            "storage": "main", "timeout": timeout}},
    }


def dump_sessions(server) -> int:
    with server.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                            "OR (application_name = 'maintainer' AND datname = 'contrivance')").fetchone()[0]


def files_under(path) -> list:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_maintainer_run_stops_a_stalled_backup_at_the_jobs_timeout_and_leaves_nothing(source, tmp_path):
    config_file = write_config(tmp_path, config_data(tmp_path, source, "3s"))

    with hold_lock(source, "contrivance", "app.builds"):  # pg_dump waits for this lock forever
        started = time.monotonic()
        out = run_cli(config_file, "run", "backup", timeout=120)
        took = time.monotonic() - started
        assert dump_sessions(source) == 0  # pg_dump and the snapshot connection are gone

    assert out.returncode == 1, out.stderr
    assert "timed out after 3 s" in out.stderr and "Traceback" not in out.stderr
    assert took < 60, f"the run took {took:.0f} s after a 3 s timeout"
    assert files_under(tmp_path / "store") == []
    [run] = History.open(tmp_path / "state").runs("backup")
    assert run.status == "failed" and "timed out after 3 s" in run.error_summary


def test_the_timeout_does_not_cut_short_a_run_that_finishes_in_time(source, tmp_path):
    config = Config.model_validate(config_data(tmp_path, source, "10m"))

    result = run_job(config, "backup")

    assert result.ok, result.errors
    storage = open_storage(config.storage["main"], name="main")
    assert len(catalog.list_backups(storage, "contrivance")) == 1
