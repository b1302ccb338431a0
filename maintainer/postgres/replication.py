"""What the WAL archive and base backups need from a server, and its replication slots.

``server_facts`` reads, on an ordinary connection, everything the archiver and
pg_basebackup depend on; ``replication_problems`` says in one line each what is
missing (wal_level, the REPLICATION attribute, WAL senders, slots), so that
``validate`` and a job's start-up report it before anything runs. Slots are
created with SQL (``pg_create_physical_replication_slot(name, true)``: WAL is
reserved at once, so nothing written between creation and the receiver's start
is lost) and dropped only on request. DatabaseError for a failing query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import psycopg.conninfo

from maintainer.errors import DatabaseError
from maintainer.postgres.connection import ServerVersion, describe_error, open_connection, server_version

if TYPE_CHECKING:
    from maintainer.config.models import DatabaseSpec


@dataclass(frozen=True)
class ServerFacts:
    version: ServerVersion
    system_identifier: str
    wal_segment_size: int
    wal_level: str
    replication_role: bool  # the connecting role has REPLICATION (or is superuser)
    max_wal_senders: int
    max_replication_slots: int
    timeline: int
    in_recovery: bool
    flush_lsn: int  # the current WAL flush position (receive position on a standby)
    tablespaces: list[tuple[int, str, str]]  # (oid, name, location) besides pg_default/pg_global


@dataclass(frozen=True)
class SlotStatus:
    name: str
    exists: bool
    active: bool = False
    restart_lsn: int | None = None
    retained_bytes: int | None = None  # WAL the server keeps for this slot
    wal_status: str | None = None  # reserved | extended | unreserved | lost


def _query(conn: psycopg.Connection, sql: str, params=None):
    try:
        return conn.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(describe_error(exc)) from None


def _lsn(value) -> int | None:
    if value is None:
        return None
    hi, lo = str(value).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def server_facts(conn: psycopg.Connection) -> ServerFacts:
    version = server_version(conn)
    (row,) = _query(conn, """
        SELECT (SELECT system_identifier::text FROM pg_control_system()),
               (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
               current_setting('wal_level'),
               (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
               current_setting('max_wal_senders')::int, current_setting('max_replication_slots')::int,
               pg_is_in_recovery(),
               CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_flush_lsn() END
    """)
    timeline = _timeline(conn, bool(row[6]))
    spaces = [(int(r[0]), str(r[1]), str(r[2] or "")) for r in _query(conn, """
        SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace
        WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid""")]
    return ServerFacts(version, str(row[0]), int(row[1]), str(row[2]), bool(row[3]), int(row[4]), int(row[5]),
                       timeline, bool(row[6]), _lsn(row[7]) or 0, spaces)


def _timeline(conn: psycopg.Connection, in_recovery: bool) -> int:
    """The timeline the server writes (a primary) or replays (a standby)."""
    if not in_recovery:
        (row,) = _query(conn, "SELECT substr(pg_walfile_name(pg_current_wal_flush_lsn()), 1, 8)")
        return int(row[0], 16)
    (row,) = _query(conn, "SELECT timeline_id FROM pg_control_checkpoint()")
    return int(row[0])


def replication_problems(facts: ServerFacts, name: str, *, need_slot: bool) -> list[str]:
    """What keeps archiving or base backups from working, one line each (empty: nothing)."""
    problems = []
    if facts.wal_level not in ("replica", "logical"):
        problems.append(f"database {name}: wal_level is {facts.wal_level}; set wal_level = replica (the default) "
                        "and restart the server")
    if not facts.replication_role:
        problems.append(f"database {name}: the role has no REPLICATION attribute; run ALTER ROLE <user> REPLICATION "
                        "(see docs/pitr.md)")
    if facts.max_wal_senders < 1:
        problems.append(f"database {name}: max_wal_senders is 0; set it to at least 2 and restart the server")
    if need_slot and facts.max_replication_slots < 1:
        problems.append(f"database {name}: max_replication_slots is 0; set it to at least 1 and restart the server")
    return problems


def slot_status(conn: psycopg.Connection, slot: str) -> SlotStatus:
    rows = _query(conn, """
        SELECT active, restart_lsn::text,
               CASE WHEN pg_is_in_recovery() THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END,
               wal_status
        FROM pg_replication_slots WHERE slot_name = %s AND slot_type = 'physical'""", (slot,))
    if not rows:
        return SlotStatus(slot, False)
    active, restart, retained, wal_status = rows[0]
    return SlotStatus(slot, True, bool(active), _lsn(restart), int(retained) if retained is not None else None,
                      wal_status)


def ensure_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Create the physical slot (reserving WAL now) unless it exists; True when created."""
    if slot_status(conn, slot).exists:
        return False
    try:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    except psycopg.errors.DuplicateObject:
        return False
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot create replication slot {slot}: {describe_error(exc)}") from None
    return True


def drop_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Drop the slot; False when there is none. DatabaseError while a receiver uses it."""
    status = slot_status(conn, slot)
    if not status.exists:
        return False
    if status.active:
        raise DatabaseError(f"replication slot {slot} is in use by a running receiver; stop the wal_archive job "
                            "(or the daemon) first")
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot drop replication slot {slot}: {describe_error(exc)}") from None
    return True


def restore_slot_position(conn: psycopg.Connection, slot: str, lsn: int) -> bool:
    """Move the physical slot forward to ``lsn`` when its restart_lsn is now before
    it (a receiver that asked for WAL the server had removed reported that position
    and so moved the slot back onto it); True when moved."""
    status = slot_status(conn, slot)
    if not status.exists or status.restart_lsn is None or status.restart_lsn >= lsn:
        return False
    target = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
    _query(conn, "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, target))
    return True


def timeline_history(spec: DatabaseSpec, name: str, timeline: int) -> str:
    """The text of ``<timeline>.history`` as the server has it, read with the
    replication command TIMELINE_HISTORY (what pg_receivewal itself does; reading
    pg_wal with SQL would need pg_read_server_files, the archiver's role has only
    REPLICATION). ``spec`` is database entry ``name``.
    DatabaseError when the connection or the command fails."""
    conninfo = psycopg.conninfo.make_conninfo(spec.conninfo(name), replication="true")
    with open_connection(conninfo, what=f"database {name} (replication connection)") as conn:
        result = conn.pgconn.exec_(f"TIMELINE_HISTORY {int(timeline)}".encode())
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK or result.ntuples != 1:
            message = (result.error_message or b"no result").decode(errors="replace").strip()
            raise DatabaseError(f"database {name}: cannot read the history of timeline {timeline}: {message}")
        return bytes(result.get_value(0, 1) or b"").decode()


def current_flush_lsn(conn: psycopg.Connection) -> int:
    (row,) = _query(conn, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
                          "ELSE pg_current_wal_flush_lsn() END")
    return _lsn(row[0]) or 0
