"""The status page's HTML and charts from given data (pure: no I/O, no clock).
The page served by a real daemon and loaded in Chromium: tests/integration/test_status_page*.py."""

from __future__ import annotations

import base64
import re
from html import unescape
from zoneinfo import ZoneInfo
from datetime import datetime, timedelta, timezone

import pytest

from maintainer.httpserver import check_basic_auth
from maintainer.statuspage.charts import Bar, bar_chart
from maintainer.statuspage.data import (BackupPoint, CatalogView, DatabaseView, DrillPoint, JobView, PageData,
                                        RunView, flag_drops)
from maintainer.statuspage.render import render_page

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def backup(day: int, size: int, *, suspicious=False, verified=False) -> BackupPoint:
    taken = NOW - timedelta(days=day)
    return BackupPoint(taken.strftime("%Y%m%dT%H%M%SZ"), taken, size, size // 100, 4.0 + day / 10, verified,
                       suspicious, ["rows fell by 80%"] if suspicious else [])


def page(databases=(), jobs=(), **overrides) -> str:
    data = PageData(generated=NOW, healthy=not overrides.get("problems"), problems=[], databases=list(databases),
                    jobs=list(jobs), last_prune=None, last_image_update=None, history_available=True,
                    authenticated=False)
    for key, value in overrides.items():
        setattr(data, key, value)
    return render_page(data)


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", html, flags=re.S))).split())


def database(backups=(), drills=(), problems=(), wal=None) -> DatabaseView:
    catalog = CatalogView("contrivance", flag_drops(list(backups)), list(drills), total_backups=len(backups))
    return DatabaseView("contrivance", "postgres@db:5432/contrivance", not problems, list(problems), catalog, wal or {})


def test_a_backup_far_smaller_than_the_one_before_is_flagged_as_a_drop():
    points = flag_drops([backup(3, 1000), backup(2, 1100), backup(1, 400), backup(0, 420)])
    assert [p.dropped for p in points] == [False, False, True, False]


def test_the_size_drop_is_a_red_bar_with_a_marker_in_the_chart():
    html = page([database([backup(3, 9000), backup(2, 9100), backup(1, 2000)])])
    assert html.count('class="bar flagged"') == 1 and html.count('class="bar"') == 2
    assert '<text class="marker"' in html and ">drop</text>" in html
    assert "SIZE DROP" in html  # the hover title of the bar
    assert "SUSPICIOUS: much smaller than the backup before it" in text(html)


def test_a_backup_the_job_flagged_shows_its_reasons():
    html = page([database([backup(1, 9000), backup(0, 8000, suspicious=True)])])
    assert "SUSPICIOUS: rows fell by 80%" in text(html) and 'class="bar flagged"' in html


def test_the_newest_backup_shows_age_size_rows_and_whether_it_is_verified():
    t = text(page([database([backup(2, 5 << 20, verified=True), backup(0, 6 << 20)])]))
    assert f"{backup(0, 1).id}, 0.0s ago: 6.0 MiB, 62,914 rows, took 4.0s, not verified yet" in t
    assert "(2 complete backups)" in t


def test_the_newest_passed_drill_shows_when_rto_and_checks():
    drills = [DrillPoint("B1", NOW - timedelta(hours=30), True, 14.0, 5, 5),
              DrillPoint("B2", NOW - timedelta(hours=2), False, 20.0, 3, 5)]
    html = page([database([backup(1, 100)], drills)])
    assert "30h00m ago (2026-11-25 06:00 UTC) on backup B1: RTO 14.0s, checks 5/5 passed" in text(html)
    assert html.count('class="bar flagged"') == 1 and ">failed</text>" in html  # the failed drill in the RTO chart


def test_an_empty_history_says_so_instead_of_drawing_empty_charts():
    job = JobView("backup", "pg_backup", "15 3 * * *", True, NOW + timedelta(hours=15), [], 0)
    t = text(page([database()], [job], history_available=False, healthy=False,
                  problems=["database contrivance: no complete backup yet"]))
    for expected in ("No run history yet", "no complete backup yet", "no passed restore drill yet", "no backups yet",
                     "no restore drills yet", "never run", "2026-11-27 03:00 UTC (in 15h00m)", "no prune has run",
                     "no image update has run", "FAILING"):
        assert expected in t, expected


def test_the_page_says_plainly_whether_it_has_authentication():
    assert "This page has no authentication" in text(page())
    assert "protected by HTTP basic authentication" in text(page(authenticated=True))


def test_a_failing_database_shows_its_reasons():
    html = page([database(problems=["database contrivance: newest complete backup X is 30h05m old (max 26h00m)"])],
                healthy=False, problems=["database contrivance: newest complete backup X is 30h05m old (max 26h00m)"])
    assert 'class="state failing"' in html and "is 30h05m old (max 26h00m)" in text(html)
    assert "/health answers 503" in text(html)


def test_job_runs_show_result_duration_error_and_next_run():
    runs = [RunView("failed", NOW - timedelta(hours=1), 0.4, "contrivance: could not connect", [], {}),
            RunView("failed", NOW - timedelta(days=1), 0.3, "contrivance: could not connect", [], {}),
            RunView("ok", NOW - timedelta(days=2), 41.0, None, [], {})]
    html = page(jobs=[JobView("backup", "pg_backup", "15 3 * * *", True, NOW + timedelta(hours=15), runs, 2),
                      JobView("old", "docker_prune", "0 5 * * *", False, None, [], 0)])
    row = text(re.search(r'<tr id="job-backup">.*?</tr>', html).group(0))
    assert row.startswith("backup pg_backup failed 1h00m ago, 0.4s failed 24h00m ago, 0.3s ok 2d00h ago, 41.0s")
    assert "contrivance: could not connect (2 failures in a row)" in row
    assert "disabled" in text(re.search(r'<tr id="job-old">.*?</tr>', html).group(0))


def test_the_last_prune_and_image_update_show_what_they_did():
    prune = RunView("ok", NOW - timedelta(hours=5), 2.0, None, ["removed 3 objects"],
                    {"removed": 3, "reclaimed_bytes": 3 << 30})
    update = RunView("ok", NOW - timedelta(days=1), 9.0, None, ["nginx:1.27.3-alpine: updated sha256:aa -> sha256:bb"],
                     {"updated": 1, "current": 3, "failed": 0})
    t = text(page(last_prune=("prune", prune), last_image_update=("update-images", update)))
    assert "prune: ok 5h00m ago, 2.0s: removed 3 objects, reclaimed 3.0 GiB" in t
    assert "update-images: ok 24h00m ago, 9.0s: 1 updated, 3 current, 0 failed" in t
    assert "nginx:1.27.3-alpine: updated sha256:aa -> sha256:bb" in t


def test_the_wal_archive_is_shown_only_once_it_exists():
    assert "WAL archive" not in text(page([database()]))
    t = text(page([database(wal={"wal_lag_seconds": 42.0, "wal_receiver_up": True, "wal_gaps": 0,
                                 "wal_last_segment_time": NOW - timedelta(minutes=3)})]))
    assert "WAL archive lag 42.0s, receiver up, no gaps, last segment 3m00s ago" in t
    down = text(page([database(wal={"wal_receiver_up": False, "wal_gaps": 2, "wal_problem": "connection refused"})]))
    assert "WAL archive receiver down , 2 gap(s) , connection refused" in down  # spans leave spaces


def test_everything_shown_is_escaped_and_the_page_has_no_script_and_no_outside_asset():
    runs = [RunView("failed", NOW, 1.0, "<script>alert(1)</script>", [], {})]
    html = page([database([backup(0, 10)])], [JobView("j", "pg_backup", "@daily", True, None, runs, 1)])
    assert "<script" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_a_chart_without_data_says_what_is_missing():
    assert "no backups yet" in bar_chart([], label="size", fmt=str, empty="no backups yet")


def test_a_chart_scales_bars_to_the_largest_value():
    svg = bar_chart([Bar("a", 50, "a"), Bar("b", 100, "b")], label="size", fmt=lambda v: f"{v:.0f}")
    heights = [float(h) for h in re.findall(r'<rect class="bar" [^>]*height="([\d.]+)"', svg)]
    assert heights[1] == pytest.approx(2 * heights[0])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header, ok", [
    (basic("ops", "s3cret:with-colon"), True),
    (basic("ops", "wrong"), False),
    (basic("other", "s3cret:with-colon"), False),
    ("Basic not-base64!!", False),
    ("Bearer abc", False),
    (None, False),
])
def test_basic_auth_accepts_exactly_the_configured_credentials(header, ok):
    assert check_basic_auth(header, ("ops", "s3cret:with-colon")) is ok


def test_times_are_shown_in_utc_whatever_zone_the_scheduler_answers_in():
    berlin = datetime(2026, 11, 27, 3, 15, tzinfo=ZoneInfo("Europe/Berlin"))
    job = JobView("backup", "pg_backup", "15 3 * * *", True, berlin, [], 0)
    assert "2026-11-27 02:15 UTC (in 14h15m)" in text(page(jobs=[job]))
