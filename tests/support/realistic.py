"""A database that uses what real schemas use (tests/support/realistic_schema.sql),
and the means to compare two copies of it: schema, rows, sequences, large
objects, database-level settings and the roles it needs.

``load_realistic(server, dbname)`` creates and fills it (with psql, as a user
would); ``snapshot(server, dbname)`` returns everything a restore must bring
back, normalised so that two snapshots compare with ``==`` and differences
read well in pytest's diff.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from psycopg import sql

SCHEMA = Path(__file__).resolve().parent / "realistic_schema.sql"

# The roles the schema creates (cluster-wide, so a restore must bring them back too).
ROLES = ("Shop Owner", "o'reilly", "ANALYST", 'say "hi"', "shop_app", "shop_readonly")


def client_env(server) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": server.password, "PGHOST": server.host, "PGPORT": str(server.port),
            "PGUSER": server.user}


def load_realistic(server, dbname: str = "shop", *, extra_sql: str = "") -> None:
    """Create ``dbname`` on ``server`` and load the realistic schema and rows into it;
    ``extra_sql`` runs after it. Raises CalledProcessError with psql's output."""
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", str(SCHEMA)]
    if extra_sql:
        args += ["-c", extra_sql]
    result = subprocess.run(args, env=client_env(server), capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, args, result.stdout, result.stderr)


def schema_dump(server, dbname: str) -> str:
    """``pg_dump --schema-only`` of the database, normalised: no comments, blank
    lines or psql meta-commands (\\restrict carries a random key)."""
    out = subprocess.run(["pg_dump", "--schema-only", "--no-password", "-d", dbname], env=client_env(server),
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return normalise_dump(out)


def normalise_dump(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if ln and not ln.startswith("--") and not ln.startswith("\\"))


def table_contents(conn) -> dict[str, tuple[int, str]]:
    """Every table, partition and populated materialized view: (rows, md5 of its sorted rows)."""
    relations = conn.execute("""
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't' AND c.relispopulated
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1""").fetchall()
    out = {}
    for (name,) in relations:
        rows, digest = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                                    f"FROM {name} t").fetchone()
        out[name] = (rows, digest)
    return out


def sequences(conn) -> dict[str, tuple]:
    rows = conn.execute("SELECT format('%I.%I', schemaname, sequencename), last_value, increment_by, cache_size "
                        "FROM pg_sequences ORDER BY 1").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def large_objects(conn) -> list[tuple]:
    return [tuple(r) for r in conn.execute("""
        SELECT m.oid::bigint, pg_get_userbyid(m.lomowner), m.lomacl::text, obj_description(m.oid, 'pg_largeobject'),
               md5(lo_get(m.oid))
        FROM pg_largeobject_metadata m ORDER BY 1""").fetchall()]


def database_level(conn, dbname: str) -> dict:
    """Owner, privileges, comment and settings of the database (its name left out)."""
    owner, comment = conn.execute(
        "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (dbname,)).fetchone()
    acl = conn.execute("""
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               pg_get_userbyid(a.grantor), a.privilege_type
        FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 3""", (dbname,)).fetchall()
    settings = conn.execute("""
        SELECT coalesce(r.rolname, '(all roles)'), s.setconfig::text FROM pg_db_role_setting s
        JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE d.datname = %s ORDER BY 1""", (dbname,)).fetchall()
    return {"owner": owner, "privileges": [tuple(a) for a in acl], "comment": comment,
            "settings": [tuple(s) for s in settings]}


def roles(conn) -> dict[str, tuple]:
    """Attributes, memberships, comment and settings of the schema's roles."""
    out = {}
    for name in ROLES:
        row = conn.execute("""
            SELECT r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil::text, r.rolpassword IS NOT NULL,
                   shobj_description(r.oid, 'pg_authid'),
                   ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                         WHERE m.member = r.oid ORDER BY 1)::text,
                   ARRAY(SELECT s.setconfig::text FROM pg_db_role_setting s
                         WHERE s.setrole = r.oid AND s.setdatabase = 0)::text
            FROM pg_authid r WHERE r.rolname = %s""", (name,)).fetchone()
        out[name] = tuple(row) if row else None
    return out


def snapshot(server, dbname: str) -> dict:
    """Everything a restore of ``dbname`` must bring back, comparable with ``==``."""
    with server.connect(dbname) as conn:
        contents = table_contents(conn)
        seqs = sequences(conn)
        los = large_objects(conn)
    with server.connect() as conn:
        db = database_level(conn, dbname)
        role_state = roles(conn)
    return {"schema": schema_dump(server, dbname), "tables": contents, "sequences": seqs, "large_objects": los,
            "database": db, "roles": role_state}
