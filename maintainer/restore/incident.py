"""Applying an incident restore plan (see maintainer.restore.plan).

Safe by default: the backup is always restored into a new database first. With
``replace`` the live database is then renamed to ``<name>_replaced_<ts>`` (kept,
never dropped) and the new one takes its name, in two quick renames once no
session uses it. The dump is verified in full (SHA-256) while it is written to
a temporary file, before pg_restore reads any of it; the file is needed for
parallel pg_restore and is removed afterwards.

pg_restore must be at least as new as the server that was dumped. It is chosen
like the backup's pg_dump (maintainer.postgres.client, per the database's
``client:`` config): the local one if new enough, else a throwaway container of
``client.image`` on ``client.network``, else ``docker exec`` in
``client.container``. A container or exec client gets the verified dump copied
in as a tar stream (it needs a seekable file for --jobs), and waits for it
before it starts.
"""

from __future__ import annotations

import os
import re
import secrets
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import psycopg
from psycopg import sql

from maintainer.backup.manifest import CheckResult
from maintainer.config.models import DatabaseSpec
from maintainer.dockerapi import docker_errors
from maintainer.errors import DatabaseError, DockerError, Interrupted, JobError, UsageError
from maintainer.logs import get_logger
from maintainer.postgres.client import Client
from maintainer.postgres.process import DumpProcess, LocalProcess
from maintainer.restore.globals import apply_globals
from maintainer.restore.plan import RestorePlan, Target
from maintainer.restore.stream import VerifiedObject
from maintainer.restore.verify import compare_row_counts
from maintainer.storage.base import Storage

log = get_logger("restore.incident")


class Progress:
    """What a restore reports while it runs; the CLI shows it (rich) or logs it (JSON lines)."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...


@dataclass
class RestoreSummary:
    database: str
    backup_id: str
    verified: bool
    backup_age_seconds: float
    restored_into: str
    live_database: str
    replaced_name: str | None
    target: str
    duration: float = 0.0
    bytes_restored: int = 0
    row_check: CheckResult | None = None
    globals: str = ""
    database_settings: str = ""
    safety_backup: str | None = None
    steps_done: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"database": self.database, "backup": self.backup_id, "verified": self.verified,
                "backup_age_seconds": round(self.backup_age_seconds), "restored_into": self.restored_into,
                "live_database": self.live_database, "replaced_name": self.replaced_name, "target": self.target,
                "duration": round(self.duration, 3), "bytes_restored": self.bytes_restored,
                "row_counts": self.row_check.model_dump() if self.row_check else None,
                "globals": self.globals, "database_settings": self.database_settings, "safety_backup": self.safety_backup}


def target_from_spec(spec: DatabaseSpec, name: str) -> Target:
    return Target(conninfo=_without(spec.conninfo(name, with_password=False), "dbname"),
                  password=spec.password.get_secret_value() if spec.password else None,
                  display=f"{spec.user}@{spec.host}:{spec.port}", dbname=spec.dbname or name)


def target_from_dsn(dsn: str, default_dbname: str) -> Target:
    """A --target-dsn (URI or key=value); its dbname, if any, names the live database there."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise UsageError("--target-dsn is not a valid PostgreSQL connection string "
                         "(use postgresql://user@host:port/dbname or 'host=... user=...')") from None
    password = params.pop("password", None)
    dbname = params.pop("dbname", None) or default_dbname
    params.setdefault("connect_timeout", "10")
    params.setdefault("application_name", "maintainer")
    display = f"{params.get('user', os.environ.get('USER', ''))}@{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    return Target(conninfo=make_conninfo(**params), password=str(password) if password else None,
                  display=display, dbname=str(dbname), from_dsn=True)


def choose_client(spec: DatabaseSpec, name: str, server_version: str, server_major: int) -> Client:
    """A pg_restore that can read a dump of PostgreSQL ``server_major``, chosen by the
    database's ``client:`` config exactly as the backup chose its pg_dump. JobError
    (one line: the versions found, what to configure) when there is none."""
    from maintainer.postgres.client import choose_client as choose
    from maintainer.postgres.connection import ServerVersion

    return choose(spec, name, ServerVersion(server_version, server_major * 10000), tool="pg_restore")


def describe_client(client: Client) -> str:
    """How the plan names the pg_restore it will run."""
    if client.kind == "container":
        where = f" on network {client.network}" if client.network else ""
        return f"pg_restore {client.version} in a throwaway container of {client.image}{where}"
    if client.kind == "exec":
        return f"pg_restore {client.version} by docker exec in {client.container}"
    return f"local pg_restore {client.version}"


def connect(target: Target, dbname: str) -> psycopg.Connection:
    try:
        return psycopg.connect(target.dsn(dbname), password=target.password, autocommit=True)
    except psycopg.Error as exc:
        from maintainer.postgres.connection import describe_error

        raise DatabaseError(f"{target.display}/{dbname}: {describe_error(exc)}") from None


def other_sessions(conn, dbname: str) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                       (dbname,)).fetchone()
    return int(row[0]) if row else 0


def database_exists(conn, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def apply_restore(plan: RestorePlan, storage: Storage, *, client: Client, progress: Progress | None = None,
                  safety_backup: Callable[[], str] | None = None, temp_dir: str | None = None,
                  cancel: threading.Event | None = None) -> RestoreSummary:
    """Do what the plan says, running pg_restore through ``client`` (see choose_client).
    Raises a MaintainerError with context on any failure; on a failure before the
    switch-over, the live database is untouched and the half-restored new database
    is dropped (and a pg_restore container removed)."""
    progress = progress or Progress()
    cancel = cancel or threading.Event()
    started = time.monotonic()
    m = plan.backup.manifest
    target = plan.target
    summary = RestoreSummary(database=plan.database, backup_id=m.id, verified=plan.backup.verified,
                             backup_age_seconds=plan.backup_age_seconds, restored_into=plan.restore_into,
                             live_database=target.dbname, replaced_name=plan.replaced_name, target=target.display)
    dump = m.object("dump")
    if dump is None:
        raise JobError(f"backup {m.database}/{m.id} has no dump object in its manifest")
    with connect(target, "postgres") as admin:
        if database_exists(admin, plan.restore_into):
            raise JobError(f"database {plan.restore_into} already exists on {target.display}")
        if plan.replace:
            if not database_exists(admin, target.dbname):
                raise JobError(f"--replace: database {target.dbname} does not exist on {target.display}",
                               hint="without --replace the backup is restored into a new database")
            _require_no_sessions(admin, target.dbname, plan.terminate_connections)

    if plan.safety_backup:
        if safety_backup is None:
            raise JobError("no way to take a safety backup was given")
        progress.phase("safety backup")
        summary.safety_backup = safety_backup()
        summary.steps_done.append(f"safety backup {summary.safety_backup}")

    with tempfile.TemporaryDirectory(prefix="maintainer-restore-", dir=temp_dir) as tmp:
        path = os.path.join(tmp, "dump.pgcustom")
        progress.phase("download and verify", total=dump.raw_size)
        reader = VerifiedObject(storage, dump, label=f"{m.database}/{m.id} dump")
        with open(path, "wb") as fh:
            for chunk in reader.chunks():
                if cancel.is_set():
                    raise Interrupted("restore stopped during the download; nothing was changed")
                fh.write(chunk)
                progress.advance(len(chunk))
        summary.bytes_restored = reader.raw_bytes
        summary.steps_done.append(f"downloaded and verified {reader.stored_bytes} stored bytes")

        with connect(target, "postgres") as admin:
            if (gobj := m.object("globals")) is not None:
                progress.phase("globals")
                report = apply_globals(admin, VerifiedObject(storage, gobj).read_all().decode())
                summary.globals = report.describe()
                if not report.ok:
                    log.warning("restore.globals_errors", errors=report.errors)
            owner = _owner_of(admin, target.dbname)
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0{}").format(
                sql.Identifier(plan.restore_into),
                sql.SQL(" OWNER {}").format(sql.Identifier(owner)) if owner else sql.SQL("")))
        summary.steps_done.append(f"created database {plan.restore_into}")
        try:
            database_sql = _pg_restore(plan, client, path, progress, cancel)
            if statements := database_statements(database_sql, plan.restore_into):
                with connect(target, "postgres") as admin:
                    summary.database_settings = _apply_database_statements(admin, statements)
                summary.steps_done.append(f"database settings and grants: {summary.database_settings}")
            with connect(target, plan.restore_into) as conn:
                from maintainer.postgres.inventory import row_counts

                actual = {t: c.rows for t, c in row_counts(conn).items()}
            summary.row_check = compare_row_counts(m.row_counts, actual, tolerance=0.1)
        except BaseException:
            _drop_quietly(target, plan.restore_into)
            raise
    if summary.row_check is not None and not summary.row_check.passed and plan.replace:
        _drop_quietly(target, plan.restore_into)
        raise JobError(f"restored copy does not match the manifest ({summary.row_check.detail}); "
                       f"{target.dbname} was not replaced")

    if plan.replace:
        progress.phase("switch over")
        _switch(target, plan)
        summary.steps_done.append(f"renamed {target.dbname} to {plan.replaced_name}, "
                                  f"{plan.restore_into} to {target.dbname}")
    progress.done()
    summary.duration = time.monotonic() - started
    log.info("restore.finished", database=plan.database, backup=m.id, restored_into=plan.restore_into,
             replaced=plan.replace, duration=round(summary.duration, 3))
    return summary


def _require_no_sessions(admin, dbname: str, terminate: bool) -> None:
    n = other_sessions(admin, dbname)
    if n and not terminate:
        raise JobError(f"{n} other session(s) are connected to {dbname}; refusing to replace it",
                       hint="stop the application, or pass --terminate-connections")


def _owner_of(admin, dbname: str) -> str | None:
    row = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return str(row[0]) if row else None


# Run by sh in the client's environment: wait until the dump has been copied in
# (a container or exec client; bounded to an hour), print the number of TOC
# entries for the progress display and the database-level SQL (settings,
# grants, comment: pg_restore emits them only with --create, which the restore
# into a new name cannot use), then become pg_restore with its messages on
# stdout (the one stream every DumpProcess hands back as it comes).
_RESTORE_SCRIPT = r"""exe=$1; dump=$2; ready=$3; props=$4; shift 4
if [ -n "$ready" ]; then
  n=0
  while [ ! -e "$ready" ]; do
    n=$((n+1)); if [ $n -gt 36000 ]; then echo "pg_restore: error: the dump never arrived"; exit 1; fi
    sleep 0.1
  done
fi
echo "maintainer-items: $("$exe" --list "$dump" 2>/dev/null | grep -c '^[0-9]')"
"$exe" --create --list "$dump" 2>/dev/null \
  | grep -E '^[0-9]+; [0-9]+ [0-9]+ (DATABASE PROPERTIES|COMMENT - DATABASE|ACL - DATABASE|SECURITY LABEL - DATABASE) ' > "$props"
if [ -s "$props" ]; then "$exe" --create --use-list="$props" --file=- "$dump" 2>/dev/null | sed 's/^/maintainer-db: /'; fi
rm -f "$props"
exec "$exe" "$@" "$dump" 2>&1
"""

def _pg_restore(plan: RestorePlan, client: Client, path: str, progress: Progress, cancel: threading.Event) -> str:
    """pg_restore the verified dump at ``path`` into plan.restore_into through ``client``;
    the dump's database-level SQL (see database_statements). Raises Interrupted on
    cancel, JobError with pg_restore's first error otherwise; whatever was started
    (a container, a copy in the database container) is removed."""
    env = {"PGAPPNAME": "maintainer-restore"}
    if plan.target.password:
        env["PGPASSWORD"] = plan.target.password
    args = ["--exit-on-error", "--verbose", "--no-password", f"--jobs={plan.parallel_jobs}",
            f"--dbname={_client_dsn(plan.target, client, plan.restore_into)}"]
    remote_dir = f"/tmp/maintainer-restore-{secrets.token_hex(4)}"
    if client.kind == "local":
        exe = os.path.join(client.path_dir, "pg_restore") if client.path_dir else "pg_restore"
        proc: DumpProcess = LocalProcess(["sh", "-c", _RESTORE_SCRIPT, "sh", exe, path, "",
                                          os.path.join(os.path.dirname(path), "database.list"), *args], env)
    else:
        proc = client.start("sh", ["-c", _RESTORE_SCRIPT, "sh", "pg_restore", f"{remote_dir}/dump.pgcustom",
                                   f"{remote_dir}/ready", f"{remote_dir}/database.list", *args], env)
    finished = threading.Event()
    watcher = threading.Thread(target=_kill_on_cancel, args=(proc, cancel, finished), daemon=True)
    watcher.start()
    errors: list[str] = []
    database_sql: list[str] = []
    try:
        if client.kind != "local":
            progress.phase("copy to pg_restore", total=os.path.getsize(path))
            _copy_dump(client, proc, remote_dir, path, progress, cancel)
        for line in _lines(proc):
            if line.startswith("maintainer-items: "):
                total = int(line.split(":", 1)[1].strip() or 0)
                progress.phase("pg_restore", total=total or None)
            elif line.startswith("maintainer-db: "):
                database_sql.append(line[len("maintainer-db: "):])
            elif re.match(r"pg_restore: (creating|processing item|launching item)", line):
                progress.advance(1)
            elif "error" in line.lower():
                errors.append(line.strip())
    except BaseException:
        proc.kill()
        if cancel.is_set():  # e.g. the copy failed because the cancel removed the container
            raise Interrupted(f"restore stopped; the new database {plan.restore_into} was dropped") from None
        raise
    finally:
        finished.set()
        code = proc.finish()
        watcher.join(timeout=5)
        if client.kind == "exec":
            _remove_exec_copy(client, remote_dir)
    if cancel.is_set():
        raise Interrupted(f"restore stopped during pg_restore; the new database {plan.restore_into} was dropped")
    if code != 0 or proc.killed:
        reason = errors[0] if errors else (proc.stderr_text().splitlines() or ["see the log"])[-1]
        raise JobError(f"pg_restore into {plan.restore_into} failed (exit {code}): {reason}")
    return "\n".join(database_sql)


_DATABASE_NAME = re.compile(r'\bDATABASE\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)')
_DATABASE_STATEMENTS = ("ALTER DATABASE", "ALTER ROLE", "GRANT", "REVOKE", "COMMENT ON DATABASE", "SECURITY LABEL")


def database_statements(sql_text: str, new_name: str) -> list[str]:
    """The database-level statements of ``pg_restore --create`` output (owner,
    settings, per-role settings, grants, comment), made to name ``new_name``
    instead of the dumped database. Pure. CREATE DATABASE and psql
    meta-commands are left out."""
    from maintainer.restore.globals import split_statements

    created = re.search(r"^CREATE DATABASE\s+(\"(?:[^\"]|\"\")+\"|\S+)", sql_text, re.MULTILINE)
    if not created:
        return []
    old = created.group(1)
    new = '"' + new_name.replace('"', '""') + '"'
    out = []
    for statement in split_statements(sql_text):
        if not statement.upper().startswith(_DATABASE_STATEMENTS):
            continue
        m = _DATABASE_NAME.search(statement)
        if m is None or m.group(1) != old:
            continue
        out.append(statement[:m.start(1)] + new + statement[m.end(1):])
    return out


def _apply_database_statements(admin, statements: list[str]) -> str:
    """Run them one by one; a failure (a missing role, say) is reported, not fatal."""
    applied, errors = 0, []
    for statement in statements:
        try:
            admin.execute(statement)
            applied += 1
        except psycopg.Error as exc:
            errors.append((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    if errors:
        log.warning("restore.database_settings_errors", errors=errors)
    text = f"{applied} statements applied"
    return text + (f"; {len(errors)} failed: " + "; ".join(errors[:3]) if errors else "")


def _client_dsn(target: Target, client: Client, dbname: str) -> str:
    """The target as the client reaches it: a container or exec client uses the
    database's host and port as seen from there (client.host/port, see Client.target);
    a --target-dsn is used as given."""
    if client.kind == "local" or target.from_dsn:
        return target.dsn(dbname)
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    host, port = client.target()
    params = conninfo_to_dict(target.conninfo)
    params.update(host=host, port=str(port), dbname=dbname)
    return make_conninfo(**params)


def _kill_on_cancel(proc: DumpProcess, cancel: threading.Event, finished: threading.Event) -> None:
    while not finished.is_set():
        if cancel.wait(0.2):
            proc.kill()
            return


def _lines(proc: DumpProcess) -> Iterator[str]:
    """The process's output, line by line, as it comes."""
    pending = b""
    while chunk := proc.read(65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def _copy_dump(client: Client, proc: DumpProcess, directory: str, path: str, progress: Progress,
               cancel: threading.Event) -> None:
    """Stream the dump file into the client's container as a tar archive (directory,
    dump, then the ``ready`` marker the script waits for); memory stays one chunk."""
    container = getattr(proc, "id", None) if client.kind == "container" else client.container
    with docker_errors(f"copy the dump into {describe_client(client)}"):
        ok = client.docker_client.api.put_archive(container, "/tmp", _tar_stream(directory, path, progress, cancel))
    if not ok:
        raise DockerError(f"copy the dump into {describe_client(client)}: refused by the engine")


def _tar_stream(directory: str, path: str, progress: Progress, cancel: threading.Event) -> Iterator[bytes]:
    base = os.path.basename(directory)
    now = int(time.time())

    def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode, info.mtime = size, kind, mode, now
        return info.tobuf(format=tarfile.GNU_FORMAT)

    size = os.path.getsize(path)
    yield header(base, kind=tarfile.DIRTYPE, mode=0o755)
    yield header(f"{base}/dump.pgcustom", size)
    sent = 0
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            if cancel.is_set():
                raise Interrupted("restore stopped while copying the dump to pg_restore; nothing was changed")
            sent += len(block)
            progress.advance(len(block))
            yield block
    if sent != size:
        raise JobError(f"{path} changed while it was copied ({sent} bytes, expected {size})")
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE)
    yield header(f"{base}/ready")
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _remove_exec_copy(client: Client, directory: str) -> None:
    """Delete the dump copied into the database container (best effort, logged)."""
    try:
        api = client.docker_client.api
        exec_id = api.exec_create(client.container, ["rm", "-rf", directory])["Id"]
        api.exec_start(exec_id)
    except Exception as exc:  # noqa: BLE001 - the restore's own outcome matters more
        log.warning("restore.exec_cleanup_failed", container=client.container, path=directory, error=str(exc))


def _switch(target: Target, plan: RestorePlan) -> None:
    """Rename live -> replaced, new -> live. Sessions that reconnect in between are
    terminated (with --terminate-connections) and the rename retried, a few times."""
    assert plan.replaced_name is not None
    with connect(target, "postgres") as admin:
        for attempt in range(5):
            _require_no_sessions(admin, target.dbname, plan.terminate_connections)
            if plan.terminate_connections:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (target.dbname,))
                time.sleep(0.2)
            try:
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(target.dbname), sql.Identifier(plan.replaced_name)))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 4:
                    raise JobError(f"{target.dbname} is still in use; it was not replaced "
                                   f"(the restored copy is {plan.restore_into})") from None
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(plan.restore_into), sql.Identifier(target.dbname)))
        except psycopg.Error as exc:
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(plan.replaced_name), sql.Identifier(target.dbname)))
            raise DatabaseError(f"switch-over failed, {target.dbname} was put back: {exc}") from None


def _drop_quietly(target: Target, dbname: str) -> None:
    try:
        with connect(target, "postgres") as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        log.warning("restore.cleanup_failed", database=dbname, error=str(exc))


def _without(conninfo: str, key: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(conninfo)
    params.pop(key, None)
    return make_conninfo(**params)
