"""Comparing a restored database with its backup's manifest, and amcheck.

The comparisons are pure (``compare_row_counts``, ``compare_object_counts``);
the counting queries come from ``maintainer.restore.inventory`` so the backup
and the restore count the same way.
"""

from __future__ import annotations

from typing import Mapping

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


AMCHECK_QUERY = """
SELECT c.oid, format('%I.%I', n.nspname, c.relname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 2
"""


def run_amcheck(conn) -> CheckResult:
    """``bt_index_check`` (with heap verification) on every B-tree index of the database."""
    import psycopg

    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = conn.execute(AMCHECK_QUERY).fetchall()
    except psycopg.Error as exc:
        return CheckResult(name="amcheck", passed=False, detail=f"cannot run amcheck: {_first(exc)}")
    bad = []
    for oid, index in indexes:
        try:
            conn.execute("SELECT bt_index_check(%s::oid::regclass, true)", (oid,))
        except psycopg.Error as exc:
            bad.append(f"{index}: {_first(exc)}")
    if bad:
        return CheckResult(name="amcheck", passed=False, detail=f"{len(bad)} of {len(indexes)} indexes corrupt: "
                           + "; ".join(bad[:5]))
    return CheckResult(name="amcheck", passed=True, detail=f"{len(indexes)} B-tree indexes verified")


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
