"""Running pg_restore for an incident restore, with a client as new as the dump.

pg_restore must be at least as new as the server that was dumped. It is chosen
like the backup's pg_dump (maintainer.postgres.client, per the database's
``client:`` config): the local one if new enough, else a throwaway container of
``client.image`` on ``client.network``, else ``docker exec`` in
``client.container``. A container or exec client gets the verified dump copied
in as a tar stream (it needs a seekable file for --jobs), and waits for it
before it starts. The dump's database-level SQL (owner, settings, grants,
comment), which pg_restore only emits with --create, is extracted and renamed
for the new database.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from typing import TYPE_CHECKING, Iterator

import psycopg

from maintainer.config.models import DatabaseSpec
from maintainer.dockerapi import docker_errors, tar_stream
from maintainer.errors import DockerError, Interrupted, JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import Client
from maintainer.postgres.process import DumpProcess, LocalProcess

if TYPE_CHECKING:
    from maintainer.restore.plan import RestorePlan, Target

log = get_logger("restore.pg_restore")


class Progress:
    """What a restore reports while it runs; the CLI shows it (rich) or logs it (JSON lines)."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...



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

def run_pg_restore(plan: RestorePlan, client: Client, path: str, progress: Progress, cancel: threading.Event) -> str:
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
        renamed = statement[:m.start(1)] + new + statement[m.end(1):]
        if any(other.group(1) == old for other in _DATABASE_NAME.finditer(renamed)):
            # Still names the dumped database: never run it against the live one.
            log.warning("restore.database_statement_skipped", reason="names the dumped database twice")
            continue
        out.append(renamed)
    return out


def apply_database_statements(admin, statements: list[str]) -> str:
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
    """The directory, the dump, then the ``ready`` marker the restore script waits for."""
    base = os.path.basename(directory)

    def dump_chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while block := fh.read(1024 * 1024):
                if cancel.is_set():
                    raise Interrupted("restore stopped while copying the dump to pg_restore; nothing was changed")
                progress.advance(len(block))
                yield block

    return tar_stream([(base, 0, None), (f"{base}/dump.pgcustom", os.path.getsize(path), dump_chunks()),
                       (f"{base}/ready", 0, [])])


def _remove_exec_copy(client: Client, directory: str) -> None:
    """Delete the dump copied into the database container (best effort, logged)."""
    try:
        api = client.docker_client.api
        exec_id = api.exec_create(client.container, ["rm", "-rf", directory])["Id"]
        api.exec_start(exec_id)
    except Exception as exc:  # noqa: BLE001 - the restore's own outcome matters more
        log.warning("restore.exec_cleanup_failed", container=client.container, path=directory, error=str(exc))
