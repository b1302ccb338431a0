"""amcheck's pure parts: which indexes it checks, how errors are classified, how the
result reads; and run_amcheck against a small fake connection for the paths a real
server rarely takes (an unsupported index, a lost connection, no extension)."""

from __future__ import annotations

from contextlib import contextmanager

import psycopg
import pytest

from maintainer.restore.verify import (
    AmcheckPlan,
    IndexInfo,
    IndexOutcome,
    classify_error,
    plan_amcheck,
    run_amcheck,
    summarize_amcheck,
)

pytestmark = pytest.mark.unit
GiB = 1024**3


def index(name, method="btree", **kw) -> IndexInfo:
    return IndexInfo(oid=hash(name) % 100_000, name=name, method=method, **kw)


INDEXES = [
    index("public.orders_pkey", partitioned=True),  # on the partitioned parent: no storage
    index("public.orders_2024_01_pkey", heap_bytes=8192),
    index("public.orders_default_pkey", heap_bytes=8192),
    index("shop.no_double_booking", "gist"),
    index("shop.customers_profile", "gin"),
    index("shop.customers_search", "gin"),
    index("audit.changes_at_brin", "brin"),
    index("shop.customers_api_token", "hash"),
    index("shop.products_title_spgist", "spgist"),
    index("shop.customers_email_ccnew", usable=False),  # a failed CREATE INDEX CONCURRENTLY
    index("shop.events_pkey", heap_bytes=5 * GiB),
]


def test_btrees_with_storage_are_checked_and_the_rest_counted_by_kind():
    plan = plan_amcheck(INDEXES)

    assert [(i.name, heap) for i, heap in plan.check] == [
        ("public.orders_2024_01_pkey", True), ("public.orders_default_pkey", True), ("shop.events_pkey", False)]
    assert plan.skipped == {"partitioned": 1, "gin": 2, "gist": 1, "brin": 1, "hash": 1, "spgist": 1, "invalid": 1}


def test_heapallindexed_runs_where_the_table_is_at_most_the_limit():
    plan = plan_amcheck([index("a", heap_bytes=100), index("b", heap_bytes=101)], heap_limit=100)

    assert [heap for _, heap in plan.check] == [True, False]


@pytest.mark.parametrize("sqlstate, status", [
    ("XX001", "corrupt"),  # data_corrupted: e.g. a heap tuple its index lacks, an invalid page
    ("XX002", "corrupt"),  # index_corrupted
    ("0A000", "error"),  # feature_not_supported: "only B-Tree indexes are supported as targets"
    ("55P03", "error"),  # lock_not_available: lock_timeout
    ("57014", "error"),  # query_canceled: statement_timeout
    ("XX000", "error"),  # internal_error
    ("42883", "error"),  # undefined_function: no amcheck
    (None, "error"),  # no SQLSTATE at all: a lost connection
])
def test_only_corruption_sqlstates_mean_corrupt(sqlstate, status):
    assert classify_error(sqlstate) == status


def test_a_clean_run_says_what_was_checked_and_what_was_skipped():
    plan = plan_amcheck(INDEXES)
    result = summarize_amcheck(plan, [IndexOutcome(i.name, "ok") for i, _ in plan.check])

    assert result.passed
    assert result.detail == ("B-tree indexes: 3 checked (heapallindexed on 2; 1 on tables over 1 GiB checked for "
                             "structure only), 8 skipped (2 gin, 1 brin, 1 gist, 1 hash, 1 invalid, "
                             "1 on partitioned tables, 1 spgist)")
    assert result.model_extra["checked"] == 3 and result.model_extra["corrupt"] == []


def test_a_corrupt_index_fails_the_check_and_is_named():
    plan = plan_amcheck(INDEXES[:3])
    result = summarize_amcheck(plan, [
        IndexOutcome("public.orders_2024_01_pkey", "corrupt", 'item order invariant violated for index '
                     '"orders_2024_01_pkey" [XX002]'),
        IndexOutcome("public.orders_default_pkey", "ok"),
    ])

    assert not result.passed
    assert result.detail.startswith("1 of 2 B-tree indexes corrupt: public.orders_2024_01_pkey: item order")
    assert result.detail.endswith("2 checked (with heapallindexed), 1 skipped (1 on partitioned tables)")
    assert result.model_extra["corrupt"] == ["public.orders_2024_01_pkey"]


def test_an_error_of_the_check_fails_it_but_is_not_called_corruption():
    plan = plan_amcheck(INDEXES[1:3])
    result = summarize_amcheck(plan, [
        IndexOutcome("public.orders_2024_01_pkey", "error", "canceling statement due to lock timeout [55P03]"),
        IndexOutcome("public.orders_default_pkey", "ok"),
    ])

    assert not result.passed
    assert result.detail.startswith("1 of 2 B-tree indexes could not be checked (an error of the check, not "
                                    "corruption): public.orders_2024_01_pkey: canceling statement due to lock")
    assert "indexes corrupt" not in result.detail and "1 checked" in result.detail
    assert result.model_extra["corrupt"] == [] and result.model_extra["check_errors"] == ["public.orders_2024_01_pkey"]


def test_long_lists_are_cut_after_five():
    names = [f"s.i{n}" for n in range(8)]
    plan = AmcheckPlan(check=[(index(n), True) for n in names], skipped={})
    result = summarize_amcheck(plan, [IndexOutcome(n, "corrupt", "bad") for n in names])

    assert "s.i4: bad; and 3 more" in result.detail and "s.i5" not in result.detail
    assert result.model_extra["corrupt"] == names


# ---------------------------------------------------------------- run_amcheck with a fake connection


class FakeCursor:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows


class FakeConnection:
    """Answers the queries run_amcheck sends; ``failures`` maps an index oid to the
    error bt_index_check raises for it; ``crash_on`` closes the connection there."""

    def __init__(self, indexes, failures=None, crash_on=None, extension=True, create_error=None):
        self.indexes = indexes
        self.failures = failures or {}
        self.crash_on = crash_on
        self.extension = extension
        self.create_error = create_error
        self.closed = False
        self.broken = False
        self.checked: list[tuple[int, bool]] = []
        self.statements: list[str] = []

    @contextmanager
    def transaction(self):
        yield

    def execute(self, query, params=None):
        if self.closed:
            raise psycopg.OperationalError("the connection is closed")
        self.statements.append(query)
        if "FROM pg_extension WHERE extname = 'amcheck'" in query and query.startswith("SELECT 1"):
            return FakeCursor([(1,)] if self.extension else [])
        if query.startswith("CREATE EXTENSION"):
            if self.create_error:
                raise self.create_error
            self.extension = True
            return FakeCursor([])
        if "extnamespace" in query:
            return FakeCursor([("pg_catalog",)])
        if "FROM pg_index" in query:
            return FakeCursor([(i.oid, i.name, i.method, i.partitioned, i.usable, i.heap_bytes) for i in self.indexes])
        if "bt_index_check" in query:
            oid, heap = params
            if oid == self.crash_on:
                self.closed = self.broken = True
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            self.checked.append((oid, heap))
            if oid in self.failures:
                raise self.failures[oid]
            return FakeCursor([("",)])
        return FakeCursor([])


def error(sqlstate: str, message: str) -> psycopg.Error:
    return psycopg.errors.lookup(sqlstate)(message)


A, B, C = index("s.a", heap_bytes=1), index("s.b", heap_bytes=1), index("s.c", heap_bytes=1)
PARENT = index("s.parent_pkey", partitioned=True)


def test_run_amcheck_never_sends_a_partitioned_parent_to_amcheck():
    conn = FakeConnection([PARENT, A])

    result = run_amcheck(conn)

    assert result.passed and conn.checked == [(A.oid, True)]
    assert "1 skipped (1 on partitioned tables)" in result.detail


def test_run_amcheck_tells_corruption_from_errors_of_the_check():
    conn = FakeConnection([A, B, C], failures={
        A.oid: error("XX002", 'item order invariant violated for index "a"'),
        B.oid: error("0A000", "only B-Tree indexes are supported as targets for verification"),
    })

    result = run_amcheck(conn)

    assert not result.passed
    assert result.model_extra["corrupt"] == ["s.a"] and result.model_extra["check_errors"] == ["s.b"]
    assert 's.a: item order invariant violated for index "a" [XX002]' in result.detail
    assert ("could not be checked (an error of the check, not corruption): s.b: only B-Tree indexes are "
            "supported as targets for verification [0A000]") in result.detail
    assert [oid for oid, _ in conn.checked] == [A.oid, B.oid, C.oid]  # one error does not stop the others


def test_run_amcheck_bounds_every_check_by_a_statement_and_a_lock_timeout():
    conn = FakeConnection([A])

    run_amcheck(conn, statement_timeout=2.5, lock_timeout=0.25)

    assert "SET LOCAL statement_timeout = '2500ms'" in conn.statements
    assert "SET LOCAL lock_timeout = '250ms'" in conn.statements


def test_a_lost_connection_is_an_error_of_the_check_that_names_the_index_and_stops():
    conn = FakeConnection([A, B, C], crash_on=B.oid)

    result = run_amcheck(conn)

    assert not result.passed and result.model_extra["corrupt"] == []
    assert "s.b: the connection was lost while checking it (did the server crash?)" in result.detail
    assert "1 not checked after the connection was lost" in result.detail
    assert conn.checked == [(A.oid, True)]


def test_amcheck_is_installed_in_pg_catalog_when_missing_and_a_failure_to_is_an_error_of_the_check():
    conn = FakeConnection([A], extension=False)
    assert run_amcheck(conn).passed
    assert "CREATE EXTENSION amcheck SCHEMA pg_catalog" in conn.statements

    missing = FakeConnection([A], extension=False, create_error=error(
        "58P01", 'could not open extension control file "amcheck.control": No such file or directory'))
    result = run_amcheck(missing)
    assert not result.passed and missing.checked == []
    assert result.detail.startswith("cannot run amcheck (an error of the check, not corruption): could not open "
                                    "extension control file")
