"""/metrics as Prometheus text, from a real run history and a given catalog state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maintainer.config.loader import parse_config
from maintainer.health import CatalogCache, DatabaseState
from maintainer.history import History
from maintainer.jobs.base import JobResult
from maintainer.metrics import MaintainerCollector, build_registry, render

pytestmark = pytest.mark.unit

CONFIG = parse_config("""
storage:
  local: {url: "file:///backups"}
databases:
  app: {}
jobs:
  backup: {type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}
  prune: {type: docker_prune, schedule: "0 5 * * *"}
  update: {type: image_update, schedule: "0 2 * * 1", images: [postgres:15]}
""")


def run(history, job, type_, minutes, status="ok", **figures):
    started = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    r = JobResult(job, type_, f"{job}-{minutes}", started, started + timedelta(seconds=10), figures=figures)
    if status == "failed":
        r.fail("boom")
    history.record_result(r)


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_carry_job_results_backup_state_and_prune_and_update_totals(tmp_path):
    history = History.open(tmp_path)
    run(history, "backup", "pg_backup", 90, bytes_stored=1000)
    run(history, "backup", "pg_backup", 30, "failed")
    run(history, "prune", "docker_prune", 50, reclaimed_bytes=300)
    run(history, "prune", "docker_prune", 20, reclaimed_bytes=200)
    run(history, "update", "image_update", 10, updated=2, current=3)
    taken = datetime.now(timezone.utc) - timedelta(hours=2)
    state = DatabaseState("app", ["backup"], [], newest_backup_id="x", newest_backup=taken, newest_size=4096,
                          newest_rows=77, last_drill_restore_seconds=8.5)
    cache = CatalogCache(lambda: CONFIG, history, gather=lambda config, history: {"app": state})
    collector = MaintainerCollector(lambda: CONFIG, history, cache, lambda: True,
                                    lambda: {"backup": datetime(2026, 11, 27, 3, 15, tzinfo=timezone.utc)})
    m = samples(render(build_registry(collector)).decode())

    backup = (("job", "backup"), ("type", "pg_backup"))
    assert m[("maintainer_job_last_result", backup)] == 0
    assert m[("maintainer_job_consecutive_failures", backup)] == 1
    assert m[("maintainer_job_last_success_timestamp_seconds", backup)] < \
        m[("maintainer_job_last_failure_timestamp_seconds", backup)]
    assert m[("maintainer_job_runs_total", (("job", "backup"), ("status", "failed")))] == 1
    assert m[("maintainer_job_duration_seconds_count", (("job", "backup"),))] == 2
    assert m[("maintainer_job_duration_seconds_sum", (("job", "backup"),))] == pytest.approx(20)
    assert m[("maintainer_prune_reclaimed_bytes_total", (("job", "prune"),))] == 500
    assert m[("maintainer_images_updated_total", (("job", "update"),))] == 2
    assert m[("maintainer_job_last_figure", (("figure", "current"), ("job", "update")))] == 3
    assert m[("maintainer_backup_newest_size_bytes", (("database", "app"),))] == 4096
    assert m[("maintainer_backup_newest_rows", (("database", "app"),))] == 77
    assert m[("maintainer_backup_newest_age_seconds", (("database", "app"),))] == pytest.approx(7200, abs=5)
    assert m[("maintainer_drill_last_restore_seconds", (("database", "app"),))] == 8.5
    assert m[("maintainer_job_next_run_timestamp_seconds", (("job", "backup"),))] == 1795749300
    assert m[("maintainer_healthy", ())] == 0  # no drill yet
    assert m[("maintainer_scheduler_up", ())] == 1
    assert ("process_resident_memory_bytes", ()) in m


def test_a_listen_address_in_use_is_a_config_error_naming_the_setting():
    import socket

    from maintainer.errors import ConfigError
    from maintainer.httpserver import StatusServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            StatusServer(f"127.0.0.1:{port}", lambda: None, lambda: b"")
    assert f"cannot listen on 127.0.0.1:{port} (daemon.listen)" in caught.value.message
    assert caught.value.exit_code == 2
