"""What a database holds, counted inside a snapshot: rows per table and objects by kind.

The backup job counts in the snapshot pg_dump uses, so the manifest describes
exactly the dump; a restore drill runs the same queries on the restored copy
and compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from maintainer.errors import DatabaseError
from maintainer.postgres.connection import describe_error

SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
_USER_NS = f"n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'"

# Tables whose data pg_dump writes: ordinary tables and partitions (not partitioned
# parents, which would count their partitions twice), not temporary, not owned by
# an extension.
TABLES_SQL = f"""
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {_USER_NS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

OBJECT_COUNTS_SQL = f"""
SELECT
  (SELECT count(*) FROM pg_namespace n WHERE {_USER_NS}) AS schemas,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND {_USER_NS}) AS tables,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'v' AND {_USER_NS}) AS views,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'm' AND {_USER_NS}) AS materialized_views,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND c.relpersistence <> 't' AND {_USER_NS}) AS sequences,
  (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NS}) AS functions,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('i', 'I') AND c.relpersistence <> 't' AND {_USER_NS}) AS indexes,
  (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {_USER_NS}) AS triggers,
  (SELECT count(*) FROM pg_extension) AS extensions,
  (SELECT count(*) FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%') AS roles
"""

OBJECT_KINDS = ("schemas", "tables", "views", "materialized_views", "sequences", "functions",
                "indexes", "triggers", "extensions", "roles")


@dataclass(frozen=True)
class TableRows:
    rows: int
    exact: bool


def row_counts(conn: psycopg.Connection, *, exact: bool = True, estimate_above: int = 10_000_000) -> dict[str, TableRows]:
    """Rows of every table, keyed "schema.table". Exact ``count(*)`` unless
    ``exact`` is false and the planner's estimate is above ``estimate_above``."""
    try:
        tables = conn.execute(TABLES_SQL).fetchall()
        counts: dict[str, TableRows] = {}
        for schema, table, estimate in tables:
            key = f"{schema}.{table}"
            if not exact and estimate > estimate_above:
                counts[key] = TableRows(int(estimate), False)
                continue
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table))).fetchone()
            counts[key] = TableRows(int(row[0]) if row else 0, True)
        return counts
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot count rows: {describe_error(exc)}") from None


def object_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Objects by kind (see OBJECT_KINDS), outside the system schemas."""
    try:
        cur = conn.execute(OBJECT_COUNTS_SQL)
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return {col.name: int(value) for col, value in zip(cur.description, row)}
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot count objects: {describe_error(exc)}") from None
