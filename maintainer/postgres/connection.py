"""Connections built from a DatabaseSpec, with failures turned into one clear line.

The password goes to libpq inside this process (never onto a command line);
client tools get it through their environment (see ``client_env``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from maintainer import redact
from maintainer.config.models import DatabaseSpec
from maintainer.errors import DatabaseError


@dataclass(frozen=True)
class ServerVersion:
    text: str  # "15.18"
    num: int  # 150018

    @property
    def major(self) -> int:
        return self.num // 10000


def connect(spec: DatabaseSpec, name: str, dbname: str | None = None, *, autocommit: bool = True) -> psycopg.Connection:
    """An open connection to database entry ``name``; DatabaseError saying why not."""
    return open_connection(spec.conninfo(name, dbname), what=f"database {name} ({spec.display(name)})",
                           autocommit=autocommit)


def open_connection(conninfo: str, *, what: str, password: str | None = None,
                    autocommit: bool = True) -> psycopg.Connection:
    """psycopg.connect with a failure turned into DatabaseError("<what>: <reason>"),
    the reason on one line and without secrets. The one place maintainer connects."""
    try:
        return psycopg.connect(conninfo, password=password, autocommit=autocommit)
    except psycopg.Error as exc:
        raise DatabaseError(f"{what}: {describe_error(exc)}") from None


def describe_error(exc: BaseException) -> str:
    """The meaningful part of a libpq/psycopg error, on one line, without secrets."""
    text = str(exc).strip()
    fatal = re.search(r"FATAL:\s+(.*)", text)
    if fatal:
        reason = fatal.group(1)
    elif "Connection refused" in text:
        reason = "connection refused (is the server running and listening there?)"
    elif "timeout expired" in text or "timed out" in text:
        reason = "connection timed out"
    elif "could not translate host name" in text or "Name or service not known" in text:
        reason = "unknown host name"
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        reason = lines[0] if lines else type(exc).__name__
        reason = re.sub(r"^connection failed: connection to server at [^:]+ failed: ", "", reason)
    return redact.scrub(reason.strip())


def server_version(conn: psycopg.Connection) -> ServerVersion:
    row = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int").fetchone()
    assert row is not None
    text = str(row[0]).split()[0]
    return ServerVersion(text=text, num=int(row[1]))


def client_env(spec: DatabaseSpec, conn: psycopg.Connection | None = None) -> dict[str, str]:
    """Environment for pg_dump/pg_dumpall: the password and options, never on argv.

    The password is the one libpq used for ``conn`` (see ``password_used``), so
    the child tool authenticates exactly as this process did, wherever it runs.
    """
    env = {"PGSSLMODE": spec.sslmode, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "maintainer"}
    password = spec.password.get_secret_value() if spec.password is not None else None
    password = password or (password_used(conn) if conn is not None else None)
    if password:
        env["PGPASSWORD"] = password
    return env


def end_sessions(spec: DatabaseSpec, name: str, application_name: str) -> int:
    """Terminate the server sessions of a client tool that was stopped (by its
    application_name); how many. Best effort: 0 when that is not possible.

    A pg_dump killed while it waits for a lock leaves its backend queued for the
    lock on the server, where it would block every later conflicting lock
    (a migration's ALTER TABLE, say) until it gets its turn.
    """
    try:
        with psycopg.connect(spec.conninfo(name), autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                                (application_name,)).fetchall()
        return sum(1 for (ok,) in rows if ok)
    except psycopg.Error:
        return 0


def password_used(conn: psycopg.Connection) -> str | None:
    """The password libpq sent for ``conn``, from whichever source it came.

    libpq finds it in the connection string, ``PGPASSWORD``, ``passfile=``,
    ``PGPASSFILE`` or ``~/.pgpass``, in that order. Child tools (pg_dump,
    pg_dumpall, pg_restore) run with a cleaned environment, perhaps in a
    container or in the database container where none of those files exist, so
    they are handed this one value instead of each source: the same result in
    every client mode. None when the server asked for no password.
    """
    password = conn.info.password
    if password:
        redact.register(password)
    return password or None


@dataclass
class Snapshot:
    """A REPEATABLE READ transaction whose snapshot pg_dump shares (``--snapshot``).

    Keep it open until pg_dump has finished; queries on ``conn`` see exactly
    the data pg_dump dumps. Closing rolls the transaction back.
    """

    conn: psycopg.Connection
    snapshot_id: str

    def close(self) -> None:
        try:
            self.conn.rollback()
        except psycopg.Error:
            pass
        self.conn.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def export_snapshot(spec: DatabaseSpec, name: str) -> Snapshot:
    conn = connect(spec, name, autocommit=False)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        return Snapshot(conn, str(row[0]))
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseError(f"database {name}: cannot export a snapshot: {describe_error(exc)}") from None
