"""The PITR drill (restore_drill with mode: pitr) on an archive written by the real jobs:
it passes on a healthy archive with RTO and RPO recorded (and shown by /metrics and the
status page), fails naming the cause when a segment is damaged or missing, and leaves no
container or volume behind."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maintainer.config import parse_config
from maintainer.health import CatalogCache
from maintainer.history import History
from maintainer.metrics import MaintainerCollector, build_registry, render
from maintainer.runner import run_job
from maintainer.statuspage.page import StatusPage
from maintainer.units import human_duration
from maintainer.storage import open_storage
from maintainer.wal import archive, basebackups

from support.pitr import SERVER, archived_scenario, pitr_leftovers
from support.postgres import remove_postgres

pytestmark = pytest.mark.integration

CHECKS = """-- check: marker_table_present
-- expect: true
SELECT to_regclass('public.marker') IS NOT NULL;
"""


@pytest.fixture(scope="module")
def scenario(docker_client, pg_image, tmp_path_factory):
    s = archived_scenario(docker_client, pg_image, tmp_path_factory.mktemp("pitr-drill"))
    yield s
    remove_postgres(s.server)


def drill_config(scenario, tmp_path, store=None):
    """The scenario's config with the drill's check file, on ``store`` (a copy) if given."""
    checks = tmp_path / "checks.sql"
    checks.write_text(CHECKS)
    data = json.loads(json.dumps(scenario.data))
    data["jobs"]["drill"]["extra_checks"] = [str(checks)]
    if store is not None:
        data["storage"]["main"]["url"] = f"file://{store}"
    return parse_config(json.dumps(data), str(tmp_path / "test-config.yaml"))


def replayed_segment(scenario):
    """A complete segment after the base backup's first one: recovery must read it."""
    [base] = basebackups.list_base_backups(scenario.storage, SERVER)
    listing = archive.list_archive(scenario.storage, SERVER)
    first = int(base.manifest.start_segment[16:], 16)
    return listing.segments[sorted(k for k in listing.segments if k[1] > first)[0]]


def test_the_pitr_drill_passes_on_a_healthy_archive_and_records_rto_and_rpo(scenario, docker_client, tmp_path):
    config = drill_config(scenario, tmp_path)

    result = run_job(config, "drill")

    assert result.ok, result.errors
    [record] = result.details["drills"]
    names = {c["name"]: c["passed"] for c in record["checks"]}
    assert names == {"wal_coverage": True, "checksum": True, "pg_verifybackup": True, "wal_replay:end": True,
                     "sql:marker_table_present": True, "wal_replay:point": True}
    assert record["mode"] == "pitr" and record["rto_seconds"] > 0 and record["rpo_seconds"] >= 0
    assert result.figures[f"{SERVER}_rto_seconds"] == record["rto_seconds"]
    [base] = basebackups.list_base_backups(scenario.storage, SERVER)
    stored = scenario.storage.get_bytes(f"base/{SERVER}/{base.id}/verifications/{result.run_id}.json")
    assert json.loads(stored)["result"] == "passed"
    assert pitr_leftovers(docker_client) == []

    # /metrics and the status page, read as the daemon reads them: the run history and the stored record.
    history = History.open(tmp_path / "state")
    history.record_result(result)
    cache = CatalogCache(lambda: config, history)
    metrics = gauges(render(build_registry(MaintainerCollector(lambda: config, history, cache, lambda: True))))
    assert metrics["maintainer_pitr_drill_rto_seconds"] == record["rto_seconds"]
    assert metrics["maintainer_pitr_drill_rpo_seconds"] == record["rpo_seconds"]
    assert metrics["maintainer_pitr_replay_mb_per_second"] == record["replay_mb_s"] == \
        result.figures[f"{SERVER}_replay_mb_s"]
    assert metrics["maintainer_pitr_drill_last_success_timestamp_seconds"] == pytest.approx(
        datetime.fromisoformat(record["finished"]).timestamp())
    html = StatusPage(lambda: config, history, cache, lambda: True).render().decode()
    assert (f"on base backup {base.id}: RTO {human_duration(record['rto_seconds'])}, "
            f"RPO {human_duration(record['rpo_seconds'])}, checks 6/6 passed") in html
    assert 'class="bar pitr"' in html


def gauges(text: bytes) -> dict[str, float]:
    """The value of each sample for database SERVER, by metric name."""
    return {s.name: s.value for family in text_string_to_metric_families(text.decode()) for s in family.samples
            if s.labels.get("database") == SERVER}


def test_a_damaged_segment_fails_the_drill_naming_it_and_leaves_nothing(scenario, docker_client, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(scenario.store, store)
    segment = replayed_segment(scenario)
    path = store / segment.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    result = run_job(drill_config(scenario, tmp_path, store), "drill")

    assert not result.ok
    message = " ".join(result.errors)
    assert "wal_replay:end" in message and segment.segment in message and "damaged segment" in message
    assert pitr_leftovers(docker_client) == []


def test_a_missing_segment_fails_the_drill_naming_the_gap_and_leaves_nothing(scenario, docker_client, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(scenario.store, store)
    segment = replayed_segment(scenario)
    (store / segment.key).unlink()

    result = run_job(drill_config(scenario, tmp_path, store), "drill")

    assert not result.ok
    message = " ".join(result.errors)
    assert "wal_coverage" in message and f"missing {segment.segment}" in message
    assert pitr_leftovers(docker_client) == []
    storage = open_storage(drill_config(scenario, tmp_path, store).storage["main"], "main")
    [base] = basebackups.list_base_backups(storage, SERVER)
    record = json.loads(storage.get_bytes(f"base/{SERVER}/{base.id}/verifications/{result.run_id}.json"))
    assert record["result"] == "failed"  # recorded as such, never as a pass
