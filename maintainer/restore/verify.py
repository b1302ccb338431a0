"""Comparing a restored database with its backup's manifest, and amcheck.

The comparisons are pure (``compare_row_counts``, ``compare_object_counts``);
the counting queries come from ``maintainer.postgres.inventory`` so the backup
and the restore count the same way. amcheck is planned purely (``plan_amcheck``:
which indexes, which skipped and why) and summarised purely
(``summarize_amcheck``); ``run_amcheck`` is the thin layer that runs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import psycopg

from maintainer.backup.manifest import CheckResult, TableCount


def compare_row_counts(expected: Mapping[str, TableCount], actual: Mapping[str, int], *,
                       tolerance: float) -> CheckResult:
    """Exact counts must be equal; estimated ones within ``tolerance`` (relative).

    Tables missing on either side are differences too.
    """
    problems = []
    for table, count in sorted(expected.items()):
        if table not in actual:
            problems.append(f"{table} missing")
            continue
        got = actual[table]
        if count.exact:
            if got != count.rows:
                problems.append(f"{table} {got} rows, manifest {count.rows}")
        elif abs(got - count.rows) > tolerance * max(count.rows, 1):
            problems.append(f"{table} {got} rows, manifest estimate {count.rows} (tolerance {tolerance:.0%})")
    for table in sorted(set(actual) - set(expected)):
        problems.append(f"{table} not in manifest")
    total = sum(actual.values())
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return CheckResult(name="row_counts", passed=False, detail=f"{len(problems)} table(s) differ: {shown}")
    return CheckResult(name="row_counts", passed=True, detail=f"{len(expected)} tables, {total} rows as in the manifest")


def compare_object_counts(expected: Mapping[str, int], actual: Mapping[str, int]) -> CheckResult:
    """Every kind the manifest counts must have the same count after restore."""
    problems = [f"{kind} {actual.get(kind)} (manifest {count})"
                for kind, count in sorted(expected.items()) if actual.get(kind) != count]
    if problems:
        return CheckResult(name="object_counts", passed=False, detail="differ: " + "; ".join(problems))
    return CheckResult(name="object_counts", passed=True,
                       detail=", ".join(f"{k} {v}" for k, v in sorted(expected.items())))


# ---------------------------------------------------------------- amcheck
#
# amcheck verifies B-tree indexes only, and only those with storage: the index
# declared on a partitioned table (relkind 'I') has none, its partitions' own
# indexes hold the entries. Other access methods (GiST, GIN, BRIN, hash,
# SP-GiST) are skipped and counted by kind, so the report says what was not checked.
# TOAST indexes of the database's own tables are B-trees and are checked too.

# SQLSTATEs amcheck (and the buffer manager under it) raise for corruption it
# found; every other error means the check itself failed (a timeout, a missing
# extension, an index kind it cannot verify), which is reported as such.
CORRUPTION_SQLSTATES = {"XX001": "data_corrupted", "XX002": "index_corrupted"}

# heapallindexed re-reads the whole table for every index of it, so it runs
# only where the table is at most this big (pg_class.relpages, which the
# restore's index builds set: reading it takes no lock, unlike
# pg_relation_size); larger ones get the structural check alone, and the
# detail says how many.
HEAPALLINDEXED_MAX_BYTES = 1024**3
STATEMENT_TIMEOUT_S = 600.0  # per index
LOCK_TIMEOUT_S = 30.0  # a drill's database has no other sessions; a live one might

AMCHECK_INDEXES_SQL = """
SELECT c.oid,
       CASE WHEN n.nspname = 'pg_toast'
            THEN format('%I.%I (TOAST of %I.%I)', n.nspname, c.relname, own.nspname, owner.relname)
            ELSE format('%I.%I', n.nspname, c.relname) END,
       am.amname, c.relkind = 'I', i.indisvalid AND i.indisready,
       t.relpages::bigint * current_setting('block_size')::int
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_class owner ON n.nspname = 'pg_toast' AND owner.reltoastrelid = i.indrelid
LEFT JOIN pg_namespace own ON own.oid = owner.relnamespace
WHERE c.relpersistence <> 't'
  AND (n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
       OR n.nspname = 'pg_toast' AND owner.relpersistence <> 't'
          AND own.nspname NOT IN ('pg_catalog', 'information_schema'))
ORDER BY 2
"""


@dataclass(frozen=True)
class IndexInfo:
    """One index as amcheck planning sees it."""

    oid: int
    name: str  # schema-qualified, quoted where needed
    method: str  # access method: btree, gist, gin, brin, hash, spgist, ...
    partitioned: bool = False  # declared on a partitioned table: no storage of its own
    usable: bool = True  # valid and ready (not a failed CREATE INDEX CONCURRENTLY)
    heap_bytes: int = 0  # size of its table (relpages, as of the last VACUUM, ANALYZE or index build)


@dataclass(frozen=True)
class AmcheckPlan:
    check: list[tuple[IndexInfo, bool]]  # (index, heapallindexed)
    skipped: Counter  # reason ("partitioned", "invalid", or the access method) -> count


@dataclass(frozen=True)
class IndexOutcome:
    index: str
    status: str  # "ok", "corrupt" or "error"
    message: str = ""


def plan_amcheck(indexes: Sequence[IndexInfo], *, heap_limit: int = HEAPALLINDEXED_MAX_BYTES) -> AmcheckPlan:
    """Which indexes amcheck verifies (B-trees with storage, valid), with
    heapallindexed when the table is at most ``heap_limit`` bytes; every other
    index is counted under the reason it is skipped. Pure."""
    check, skipped = [], Counter()
    for index in indexes:
        if index.partitioned:
            skipped["partitioned"] += 1
        elif index.method != "btree":
            skipped[index.method] += 1
        elif not index.usable:
            skipped["invalid"] += 1
        else:
            check.append((index, index.heap_bytes <= heap_limit))
    return AmcheckPlan(check=check, skipped=skipped)


def classify_error(sqlstate: str | None) -> str:
    """"corrupt" for the SQLSTATEs of found corruption, "error" (of the check) otherwise."""
    return "corrupt" if sqlstate in CORRUPTION_SQLSTATES else "error"


def summarize_amcheck(plan: AmcheckPlan, outcomes: Sequence[IndexOutcome], *,
                      heap_limit: int = HEAPALLINDEXED_MAX_BYTES) -> CheckResult:
    """The ``amcheck`` check: passed only when every planned index was checked
    and none is corrupt. Corrupt indexes and errors of the check are named
    separately; the detail ends with what was checked and skipped. Pure."""
    corrupt = [o for o in outcomes if o.status == "corrupt"]
    errors = [o for o in outcomes if o.status == "error"]
    total = len(plan.check)
    problems = []
    if corrupt:
        problems.append(f"{len(corrupt)} of {total} B-tree indexes corrupt: " + _list(corrupt))
    if errors:
        problems.append(f"{len(errors)} of {total} B-tree indexes could not be checked "
                        f"(an error of the check, not corruption): " + _list(errors))
    unchecked = total - len(outcomes)  # the connection was lost before them
    if unchecked > 0:
        problems.append(f"{unchecked} not checked after the connection was lost")
    full = sum(1 for _, heap in plan.check if heap)
    checked = f"{total - unchecked - len(errors)} checked"
    if full == total:
        checked += " (with heapallindexed)" if total else ""
    else:
        checked += (f" (heapallindexed on {full}; {total - full} on tables over {_size(heap_limit)}"
                    " checked for structure only)")
    scope = f"{checked}, {_skipped(plan.skipped)}"
    extra = {"checked": total - unchecked - len(errors), "heapallindexed": full, "skipped": dict(plan.skipped),
             "corrupt": [o.index for o in corrupt], "check_errors": [o.index for o in errors]}
    if problems:
        return CheckResult(name="amcheck", passed=False, detail="; ".join(problems) + f"; {scope}", **extra)
    return CheckResult(name="amcheck", passed=True, detail=f"B-tree indexes: {scope}", **extra)


def list_indexes(conn) -> list[IndexInfo]:
    """Every index of the database's own tables, materialized views and their
    TOAST tables, of any kind (plan_amcheck decides). Takes no lock on them."""
    return [IndexInfo(oid=int(row[0]), name=row[1], method=row[2], partitioned=bool(row[3]),
                      usable=bool(row[4]), heap_bytes=int(row[5] or 0))
            for row in conn.execute(AMCHECK_INDEXES_SQL).fetchall()]


def run_amcheck(conn, *, heap_limit: int = HEAPALLINDEXED_MAX_BYTES, statement_timeout: float = STATEMENT_TIMEOUT_S,
                lock_timeout: float = LOCK_TIMEOUT_S) -> CheckResult:
    """``bt_index_check`` on every B-tree index with storage of the connected
    database (see plan_amcheck), each in its own transaction under a statement
    and a lock timeout. Never raises for a database error: one that stops the
    check is a failed CheckResult that says so. Installs the amcheck extension
    (in pg_catalog, so no search_path or schema of the database matters) when
    the database does not have it: meant for a drill's throwaway copy."""

    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {_ms(lock_timeout)}")
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is None:
                conn.execute("CREATE EXTENSION amcheck SCHEMA pg_catalog")
        with conn.transaction():
            schema = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                                  "WHERE extname = 'amcheck'").fetchone()[0]
            indexes = list_indexes(conn)
    except psycopg.Error as exc:
        return CheckResult(name="amcheck", passed=False,
                           detail=f"cannot run amcheck (an error of the check, not corruption): {_describe(exc)}")
    plan = plan_amcheck(indexes, heap_limit=heap_limit)
    call = f"SELECT {schema}.bt_index_check(%s::oid::regclass, %s)"  # schema is quoted by ::regnamespace::text
    outcomes: list[IndexOutcome] = []
    for index, heapallindexed in plan.check:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {_ms(statement_timeout)}")
                conn.execute(f"SET LOCAL lock_timeout = {_ms(lock_timeout)}")
                conn.execute(call, (index.oid, heapallindexed))
            outcomes.append(IndexOutcome(index.name, "ok"))
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                outcomes.append(IndexOutcome(index.name, "error", "the connection was lost while checking it "
                                             f"(did the server crash?): {_describe(exc)}"))
                break
            status = classify_error(exc.sqlstate)
            outcomes.append(IndexOutcome(index.name, status, _describe(exc, detail=status == "corrupt")))
    return summarize_amcheck(plan, outcomes, heap_limit=heap_limit)


def _describe(exc: Exception, *, detail: bool = False) -> str:
    """The error's first line and SQLSTATE; with ``detail``, amcheck's DETAIL too
    (for corruption it says where: block, offset, heap tid)."""
    text = _first(exc)
    diag = getattr(exc, "diag", None)
    if detail and diag is not None and diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{text} [{sqlstate}]" if sqlstate else text


def _list(outcomes: Sequence[IndexOutcome], limit: int = 5) -> str:
    shown = "; ".join(f"{o.index}: {o.message}" for o in outcomes[:limit])
    return shown + (f"; and {len(outcomes) - limit} more" if len(outcomes) > limit else "")


def _skipped(skipped: Counter) -> str:
    if not skipped:
        return "none skipped"
    names = {"partitioned": "on partitioned tables", "invalid": "invalid"}
    by_count = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{n} {names.get(reason, reason)}" for reason, n in by_count]
    return f"{sum(skipped.values())} skipped ({', '.join(parts)})"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}"
        n /= 1024
    return str(n)


def _ms(seconds: float) -> str:
    return f"'{max(1, int(seconds * 1000))}ms'"


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
