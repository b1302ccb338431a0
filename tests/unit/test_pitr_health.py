"""The PITR drill in /health, /metrics and the status page: its records beside the base
backups are read like the logical drill's beside the backups, and the newest passed one
(when, RTO, achieved RPO, replay speed) is shown. Also the config helpers that answer
"which jobs cover this database" for the one-server jobs (wal_archive, pg_basebackup)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maintainer.backup.manifest import CheckResult, Verification
from maintainer.config.loader import parse_config
from maintainer.config.models import Config
from maintainer.errors import UsageError
from maintainer.health import CatalogCache, DatabaseState, evaluate, fill_pitr_state, gather_databases
from maintainer.history import History
from maintainer.metrics import MaintainerCollector, build_registry, render
from maintainer.restore.pitr import archive_of
from maintainer.restore.pitr_drill import write_pitr_verification
from maintainer.wal.verifications import pitr_drill_records
from maintainer.statuspage.data import PITR, CatalogView, DatabaseView, DrillPoint, PageData, gather_catalog
from maintainer.statuspage.render import render_page
from maintainer.storage.local import LocalStorage
from maintainer.wal import layout

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
BASE = "20261126T030000Z"


def config_for(root) -> Config:
    return parse_config(f"""
storage:
  local: {{url: "file://{root}"}}
  other: {{url: "file://{root}-other"}}
databases:
  app: {{max_backup_age: 26h, max_drill_age: 8d}}
jobs:
  backup: {{type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}}
  wal: {{type: wal_archive, database: app, storage: local}}
  base: {{type: pg_basebackup, schedule: "0 3 * * *", database: app, storage: other}}
  drill: {{type: restore_drill, schedule: "30 5 * * 0", databases: [app], storage: local}}
  pitr: {{type: restore_drill, mode: pitr, schedule: "0 6 * * *", databases: [app], storage: local}}
""")


def pitr_record(run_id: str, finished: datetime, *, passed: bool = True, rto: float | None = 21.5,
                rpo: float | None = 4.2, replay: float = 37.5) -> Verification:
    """A record as maintainer.restore.pitr_drill writes it (its figures as extra fields)."""
    figures = {"mode": "pitr", "replay_mb_s": replay, "wal_bytes": 3 << 20, "base_bytes": 40 << 20}
    if rto is not None:
        figures["rto_seconds"] = rto
    if rpo is not None:
        figures["rpo_seconds"] = rpo
    return Verification(backup_id=BASE, database="app", run_id=run_id, result="passed" if passed else "failed",
                        checks=[CheckResult(name="wal_replay:end", passed=passed)],
                        started=finished - timedelta(minutes=1), finished=finished, restore_seconds=rto,
                        backup_age_seconds=rpo, maintainer_version="0.1.0", **figures)


def store_base_backup(storage: LocalStorage) -> None:
    """A base backup's manifest: what makes its records listable (layout.BASE_BACKUPS)."""
    storage.put(layout.base_manifest_key("app", BASE), b"{}")


# ------------------------------------------------------------ config helpers


def test_jobs_covering_reads_the_single_database_of_wal_archive_and_pg_basebackup(tmp_path):
    config = config_for(tmp_path)
    assert config.jobs_covering("app", "wal_archive") == ["wal"]
    assert config.jobs_covering("app", "pg_basebackup") == ["base"]
    assert config.jobs_covering("app", "restore_drill") == ["drill", "pitr"]
    assert config.pitr_drills_covering("app") == ["pitr"]
    assert config.jobs_covering("other", "wal_archive") == []


def test_the_archive_of_a_database_is_its_wal_archive_jobs_storage_else_its_base_backups(tmp_path):
    config = config_for(tmp_path)
    assert archive_of(config, "app", None) == ("app", "local")
    assert archive_of(config, "app", "other") == ("app", "other")
    without_wal = config.model_copy(update={"jobs": {k: v for k, v in config.jobs.items() if k != "wal"}})
    assert archive_of(without_wal, "app", None) == ("app", "other")
    with pytest.raises(UsageError, match="no wal_archive or pg_basebackup job covers nothing"):
        archive_of(config, "nothing", None)


# ------------------------------------------------------------ health


def test_the_newest_passed_pitr_drill_gives_when_rto_rpo_and_replay_speed():
    state = DatabaseState("app")
    fill_pitr_state(state, [pitr_record("r1", NOW - timedelta(days=2), rto=30.0, rpo=9.0, replay=20.0),
                            pitr_record("r2", NOW - timedelta(days=1), rto=21.5, rpo=4.2, replay=37.5),
                            pitr_record("r3", NOW - timedelta(hours=1), passed=False, rto=None)])
    assert state.last_pitr_drill_passed == NOW - timedelta(days=1)
    assert (state.last_pitr_rto_seconds, state.last_pitr_rpo_seconds, state.last_pitr_replay_mb_s) == \
        (21.5, 4.2, 37.5)


def test_a_passed_pitr_drill_counts_as_a_passed_drill_for_the_drill_age_rule(tmp_path):
    config = config_for(tmp_path)
    state = DatabaseState("app", ["backup"], ["drill", "pitr"], newest_backup_id=BASE,
                          newest_backup=NOW - timedelta(hours=9))
    report = evaluate(config, NOW, scheduler_alive=True, databases={"app": state}, jobs={})
    assert [c.check for c in report.failing] == ["drill_age"]

    fill_pitr_state(state, [pitr_record("r1", NOW - timedelta(days=1))])
    report = evaluate(config, NOW, scheduler_alive=True, databases={"app": state}, jobs={})
    assert report.ok, [c.message for c in report.failing]


def test_only_failed_pitr_drills_leave_the_pitr_fields_and_the_drill_age_unset():
    state = DatabaseState("app")
    fill_pitr_state(state, [pitr_record("r1", NOW, passed=False)])
    assert state.last_pitr_drill_passed is None and state.last_drill_passed is None
    assert state.last_pitr_rto_seconds is None


def test_pitr_drill_records_are_read_from_beside_the_base_backups_and_logical_ones_are_not(tmp_path):
    storage = LocalStorage("local", tmp_path / "store")
    store_base_backup(storage)
    write_pitr_verification(storage, pitr_record("r2", NOW - timedelta(hours=1)))
    write_pitr_verification(storage, pitr_record("r1", NOW - timedelta(hours=5)))
    logical = pitr_record("r0", NOW).model_copy(update={"mode": "logical"})
    storage.put(layout.base_object_key("app", BASE, "verifications/r0.json"), logical.model_dump_json().encode())
    storage.put(layout.base_object_key("app", BASE, "verifications/broken.json"), b"{not json")

    records = pitr_drill_records(storage, "app")

    assert [r.run_id for r in records] == ["r1", "r2"]  # oldest first; the broken one skipped
    assert pitr_drill_records(storage, "other") == []


def test_gather_databases_reads_the_pitr_drill_records_of_the_pitr_drill_jobs_storage(tmp_path):
    config = config_for(tmp_path / "store")
    storage = LocalStorage("local", tmp_path / "store")
    store_base_backup(storage)
    finished = datetime.now(timezone.utc) - timedelta(hours=2)
    write_pitr_verification(storage, pitr_record("r1", finished))
    write_pitr_verification(storage, pitr_record("r2", finished + timedelta(hours=1), passed=False))

    state = gather_databases(config)["app"]

    assert state.pitr_drill_jobs == ["pitr"]
    assert state.last_pitr_drill_passed == finished and state.last_drill_passed == finished
    assert (state.last_pitr_rto_seconds, state.last_pitr_rpo_seconds, state.last_pitr_replay_mb_s) == \
        (21.5, 4.2, 37.5)


# ------------------------------------------------------------ metrics


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_carry_the_newest_passed_pitr_drills_rto_rpo_time_and_replay_speed(tmp_path):
    config = config_for(tmp_path)
    passed = datetime(2026, 11, 26, 6, 5, tzinfo=timezone.utc)
    state = DatabaseState("app", ["backup"], ["drill", "pitr"], pitr_drill_jobs=["pitr"])
    fill_pitr_state(state, [pitr_record("r1", passed, rto=21.5, rpo=4.2, replay=37.5)])
    cache = CatalogCache(lambda: config, None, gather=lambda config, history: {"app": state})
    collector = MaintainerCollector(lambda: config, History(tmp_path / "state"), cache, lambda: True)

    m = samples(render(build_registry(collector)).decode())

    app = (("database", "app"),)
    assert m[("maintainer_pitr_drill_rto_seconds", app)] == 21.5
    assert m[("maintainer_pitr_drill_rpo_seconds", app)] == 4.2
    assert m[("maintainer_pitr_replay_mb_per_second", app)] == 37.5
    assert m[("maintainer_pitr_drill_last_success_timestamp_seconds", app)] == passed.timestamp()
    assert m[("maintainer_drill_last_success_timestamp_seconds", app)] == passed.timestamp()


def test_a_database_without_a_passed_pitr_drill_has_no_pitr_gauges(tmp_path):
    config = config_for(tmp_path)
    cache = CatalogCache(lambda: config, None, gather=lambda config, history: {"app": DatabaseState("app")})
    text = render(build_registry(MaintainerCollector(lambda: config, None, cache, lambda: True))).decode()
    assert "# TYPE maintainer_pitr_drill_rto_seconds gauge" in text
    assert "maintainer_pitr_drill_rto_seconds{" not in text


# ------------------------------------------------------------ status page


def page(drills, *, pitr_drilled=True) -> str:
    catalog = CatalogView("app", [], list(drills), pitr_drilled=pitr_drilled)
    data = PageData(generated=NOW, healthy=True, problems=[], databases=[
        DatabaseView("app", "postgres@db:5432/app", True, [], catalog, {})], jobs=[], last_prune=None,
        last_image_update=None, history_available=True, authenticated=False)
    return render_page(data)


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", html, flags=re.S))).split())


def pitr_point(hours: float, *, passed: bool = True, rto: float = 21.5, rpo: float = 4.2) -> DrillPoint:
    return DrillPoint(BASE, NOW - timedelta(hours=hours), passed, rto, 6 if passed else 3, 6, PITR, rpo)


def test_the_newest_passed_pitr_drill_is_shown_beside_the_logical_one_with_rto_and_rpo():
    drills = [DrillPoint("B1", NOW - timedelta(hours=30), True, 14.0, 5, 5), pitr_point(5),
              pitr_point(2, passed=False)]
    t = text(page(drills))
    assert "Newest passed drill 30h00m ago (2026-11-25 06:00 UTC) on backup B1: RTO 14.0s, checks 5/5 passed" in t
    assert (f"Newest passed PITR drill 5h00m ago (2026-11-26 07:00 UTC) on base backup {BASE}: RTO 21.5s, "
            "RPO 4.2s, checks 6/6 passed") in t


def test_pitr_drills_are_bars_of_their_own_kind_in_the_drill_rto_chart():
    html = page([DrillPoint("B1", NOW - timedelta(hours=30), True, 14.0, 5, 5), pitr_point(5),
                 pitr_point(2, passed=False)])
    assert html.count('class="bar"') == 1  # the logical drill
    assert html.count('class="bar pitr"') == 1 and html.count('class="bar flagged pitr"') == 1
    assert f"PITR drill of base backup {BASE}: RTO 21.5s, RPO 4.2s, passed" in html  # the bar's hover title
    assert ">P</text>" in html and ">P: PITR drill</text>" in html  # marker and legend, readable without colour
    assert "<script" not in html.lower()


def test_a_database_no_pitr_drill_covers_shows_no_pitr_row_and_one_that_is_covered_says_none_yet():
    assert "PITR" not in text(page([], pitr_drilled=False))
    assert "Newest passed PITR drill no passed PITR drill yet" in text(page([pitr_point(1, passed=False)]))


def test_gather_catalog_puts_pitr_drills_with_the_logical_ones_marked_as_pitr(tmp_path):
    config = config_for(tmp_path / "store")
    storage = LocalStorage("local", tmp_path / "store")
    store_base_backup(storage)
    write_pitr_verification(storage, pitr_record("r1", NOW - timedelta(hours=3), rto=30.0, rpo=9.0))
    write_pitr_verification(storage, pitr_record("r2", NOW - timedelta(hours=1), passed=False, rto=None))

    view = gather_catalog(config)["app"]

    assert view.pitr_drilled and view.newest_passed_drill is None
    assert [(d.mode, d.passed, d.restore_seconds) for d in view.drills] == [(PITR, True, 30.0), (PITR, False, None)]
    assert view.newest_passed_pitr_drill.rpo_seconds == 9.0
