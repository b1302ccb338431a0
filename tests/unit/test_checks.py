"""The check-file format: parsing, its error messages, and judging rows (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from maintainer.restore.checks import (CheckFileError, checks_for, evaluate, load_check_file, parse_checks,
                                       parse_expectation)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)


def one(text: str):
    [check] = parse_checks(text, "t.sql")
    return check


def test_a_check_has_a_name_an_expectation_and_one_query():
    checks = parse_checks("-- comment\n\n-- check: a\n-- expect: true\nSELECT 1;\n\n"
                          "-- check: b\n-- expect: rows >= 3\nSELECT *\nFROM t;\n", "f.sql")
    assert [(c.name, c.query, c.expect.kind, c.source) for c in checks] == [
        ("a", "SELECT 1", "true", "f.sql:3"), ("b", "SELECT *\nFROM t", "rows", "f.sql:7")]


@pytest.mark.parametrize("text,kind", [("true", "true"), ("rows >= 10", "rows"), ("rows = 0", "rows"),
                                       ("rows<=5", "rows"), ("between -1.5 and 20", "between"),
                                       ("newer than 1d12h", "newer"), ("NEWER THAN 30m", "newer")])
def test_every_documented_expectation_parses(text, kind):
    assert parse_expectation(text).kind == kind


@pytest.mark.parametrize("text,message", [
    ("-- check: a\nSELECT 1;", "t.sql:1: check 'a' has no '-- expect:' line"),
    ("-- check: a\n-- expect: true\n", "t.sql:1: check 'a' has no query"),
    ("-- check: a\n-- expect: maybe\nSELECT 1", "t.sql:2: 'maybe' is not an expectation"),
    ("-- check: a\n-- expect: between 5 and 1\nSELECT 1", "t.sql:2: 'between 5 and 1': the lower bound"),
    ("-- check: a\n-- expect: newer than soon\nSELECT 1", "t.sql:2: 'soon' is not a duration"),
    ("SELECT 1;", "t.sql:1: SQL outside a check"),
    ("-- expect: true\nSELECT 1", "t.sql:1: '-- expect:' before any"),
    ("-- check: a b\n-- expect: true\nSELECT 1", "t.sql:1: 'a b' is not a check name"),
    ("-- check: a\n-- expect: true\nSELECT 1;\n-- check: a\n-- expect: true\nSELECT 2", "t.sql:4: check 'a' is defined twice"),
    ("-- check: a\n-- expect: true\nSELECT 1; SELECT 2", "t.sql:1: check 'a' has more than one statement"),
])
def test_a_mistake_names_the_file_and_line(text, message):
    with pytest.raises(CheckFileError) as err:
        parse_checks(text, "t.sql")
    assert err.value.message.startswith(message)


def test_semicolons_inside_literals_are_not_statements():
    check = one("-- check: a\n-- expect: true\nSELECT 'x;y' <> $q$;$q$;")
    assert check.query == "SELECT 'x;y' <> $q$;$q$"


def test_rows_expectations_count_rows():
    assert evaluate(one("-- check: a\n-- expect: rows >= 2\nSELECT 1"), [(1,), (2,)], reference_time=NOW).passed
    failed = evaluate(one("-- check: a\n-- expect: rows >= 3\nSELECT 1"), [(1,), (2,)], reference_time=NOW)
    assert not failed.passed and failed.detail == "2 rows, expected rows >= 3" and failed.name == "sql:a"
    assert evaluate(one("-- check: a\n-- expect: rows = 0\nSELECT 1"), [], reference_time=NOW).passed
    assert not evaluate(one("-- check: a\n-- expect: rows <= 1\nSELECT 1"), [(1,), (2,)], reference_time=NOW).passed


def test_true_needs_exactly_one_row_with_true():
    check = one("-- check: a\n-- expect: true\nSELECT 1")
    assert evaluate(check, [(True,)], reference_time=NOW).passed
    assert not evaluate(check, [(False,)], reference_time=NOW).passed
    assert not evaluate(check, [(None,)], reference_time=NOW).passed
    assert not evaluate(check, [(1,)], reference_time=NOW).passed  # 1 is not true
    assert evaluate(check, [], reference_time=NOW).detail == "expected one row, got 0"


def test_between_includes_its_bounds_and_rejects_non_numbers():
    check = one("-- check: a\n-- expect: between 0 and 10\nSELECT 1")
    assert evaluate(check, [(0,)], reference_time=NOW).passed
    assert evaluate(check, [(10,)], reference_time=NOW).passed
    assert not evaluate(check, [(11,)], reference_time=NOW).passed
    assert "expected a number" in evaluate(check, [("x",)], reference_time=NOW).detail


def test_newer_than_is_measured_at_backup_time():
    check = one("-- check: a\n-- expect: newer than 1h\nSELECT 1")
    assert evaluate(check, [(NOW - timedelta(minutes=59),)], reference_time=NOW).passed
    late = evaluate(check, [(NOW - timedelta(hours=3),)], reference_time=NOW)
    assert not late.passed and "3.0h old at backup time" in late.detail
    naive = datetime(2026, 11, 26, 2, 30)  # timestamp without time zone: taken as UTC
    assert evaluate(check, [(naive,)], reference_time=NOW).passed
    assert not evaluate(check, [(None,)], reference_time=NOW).passed


def test_checks_for_reads_the_database_file_and_extra_files(tmp_path):
    (tmp_path / "shop.sql").write_text("-- check: a\n-- expect: true\nSELECT true\n")
    extra = tmp_path / "extra.sql"
    extra.write_text("-- check: b\n-- expect: rows >= 0\nSELECT 1\n")
    assert [c.name for c in checks_for("shop", tmp_path, [extra])] == ["a", "b"]
    assert [c.name for c in checks_for("other", tmp_path, [])] == []
    with pytest.raises(CheckFileError, match="cannot read check file .*missing.sql"):
        checks_for("shop", tmp_path, [tmp_path / "missing.sql"])
    with pytest.raises(CheckFileError, match="already defined"):
        checks_for("shop", tmp_path, [tmp_path / "shop.sql"])


def test_the_shipped_contrivance_checks_parse():
    checks = load_check_file(REPO / "restore" / "checks" / "contrivance.sql")
    names = [c.name for c in checks]
    assert len(names) >= 8 and "roles_restored" in names and "audit_log_fresh" in names
    assert {c.expect.kind for c in checks} >= {"true", "rows", "between", "newer"}
