"""Where a recovered cluster goes: copied into the live server as a new database, or
kept in its own Docker volume.

``copy_out`` dumps the database inside the recovery container (``pg_dump -Fc``,
the server's own version, over its socket), streams that file out of the
container into the pg_restore client the database's ``client:`` config chooses
(as an incident restore does), creates ``<name>_restored_<ts>`` with the live
database's owner and the recovered database's encoding and locale, and runs the
restore engine's ``run_pg_restore`` into it. The new database is dropped on any
failure; the live one is never touched (``--replace`` renames afterwards, by the
incident restore's own switch-over).

``keep_volume`` stops the recovered server cleanly, removes its container, starts
a plain server of the same image on the volume to check that it comes up, and
returns the swap steps. The existing volume is never touched.
"""

from __future__ import annotations

import tarfile
import threading
import time
from dataclasses import dataclass

from psycopg import sql

from maintainer.dockerapi import docker_errors
from maintainer.errors import JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import PgClient
from maintainer.restore.engine import DUMP_NAME, run_pg_restore
from maintainer.restore.incident import (
    _client_dsn,
    _drop_quietly,
    _owner_of,
    connect,
    database_exists,
)
from maintainer.restore.pitr_recover import STAGE
from maintainer.restore.pitr_server import PGDATA, SOCKET_DIR, WORK, RecoveryServer
from maintainer.restore.plan import Target

log = get_logger("restore.pitr")

DUMP = f"{WORK}/{DUMP_NAME}"
CHECK_TIMEOUT = 120.0


@dataclass
class CopyResult:
    restore_into: str
    dump_bytes: int
    seconds: dict[str, float]
    tables: int


def copy_out(server: RecoveryServer, dbname: str, target: Target, client: PgClient, into: str, *, jobs: int,
             cancel: threading.Event) -> CopyResult:
    """Copy database ``dbname`` of the recovered server into ``into`` on ``target``.
    JobError (and no new database left) on failure."""
    seconds: dict[str, float] = {}
    code, out = server.psql("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                            f"WHERE datname = '{dbname.replace(chr(39), chr(39) * 2)}'")
    if code != 0 or "|" not in out:
        raise JobError(f"database {dbname} does not exist in the recovered cluster"
                       + (f" ({out.strip().splitlines()[-1]})" if out.strip() else ""))
    encoding, collate, ctype = out.strip().split("|")
    t = time.monotonic()
    server.run(["pg_dump", "-Fc", "-Z0", "-h", SOCKET_DIR, "-U", server.settings.user, "-d", dbname, "-f", DUMP],
               what=f"pg_dump of {dbname}")
    seconds["pg_dump_seconds"] = round(time.monotonic() - t, 3)
    with connect(target, "postgres") as admin:
        if database_exists(admin, into):
            raise JobError(f"database {into} already exists on {target.display}")
        owner = _owner_of(admin, target.dbname)
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(into), sql.Literal(encoding), sql.Literal(collate), sql.Literal(ctype))
        if owner:
            create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
        admin.execute(create)
    try:
        directory = client.make_dir(None)
        try:
            t = time.monotonic()
            size, chunks = _read_out(server, DUMP)
            path = client.put_file(directory, DUMP_NAME, size, chunks)
            seconds["copy_seconds"] = round(time.monotonic() - t, 3)
            env = {"PGAPPNAME": "maintainer-restore", **({"PGPASSWORD": target.password} if target.password else {})}
            t = time.monotonic()
            run_pg_restore(client, ["--exit-on-error", "--no-password", f"--jobs={jobs}",
                                    f"--dbname={_client_dsn(target, client, into)}", path],
                           env, cancel, dbname=into)
            seconds["pg_restore_seconds"] = round(time.monotonic() - t, 3)
        finally:
            client.remove_dir(directory)
        with connect(target, into) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog', "
                                  "'information_schema')").fetchone()[0]
    except BaseException:
        _drop_quietly(target, into)
        raise
    server.exec(["rm", "-f", DUMP])
    return CopyResult(restore_into=into, dump_bytes=size, seconds=seconds, tables=int(tables))


def _read_out(server: RecoveryServer, path: str):
    """(size, chunks) of one file in the container, streamed from ``get_archive``."""
    with docker_errors(f"read {path} from recovery container {server.name}"):
        stream, stat = server.client.api.get_archive(server.container.id, path)
    size = int(stat["size"])

    class _Raw:
        def __init__(self, it):
            self.it, self.buf = iter(it), b""

        def read(self, n=-1):
            while n < 0 or len(self.buf) < n:
                try:
                    self.buf += next(self.it)
                except StopIteration:
                    break
            out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
            return out

    def chunks():
        with tarfile.open(fileobj=_Raw(stream), mode="r|") as tar:
            member = tar.next()
            if member is None or member.size != size:
                raise JobError(f"read {path} from recovery container {server.name}: unexpected archive")
            fh = tar.extractfile(member)
            while block := fh.read(1024 * 1024):
                yield block

    return size, chunks()


def keep_volume(server: RecoveryServer, *, labels: dict[str, str]) -> str:
    """Stop the recovered server cleanly and check the volume by starting a plain
    server on it; a one-line description of the check. JobError when it does not
    come up (the caller then removes the volume)."""
    server.run(["psql", "-X", "-q", "-h", SOCKET_DIR, "-U", server.settings.user, "-d", "postgres",
                "-c", "CHECKPOINT"], what="checkpoint the recovered cluster")
    server.stop_postgres("fast")
    server.run(["rm", "-rf", STAGE], user="root", what="remove the WAL staging directory")
    server.remove(keep_volume=True)
    image = server.settings.image
    with docker_errors(f"start a check server on volume {server.volume}"):
        check = server.client.containers.run(
            image, name=f"{server.name}-check", labels=labels, volumes={server.volume: {"bind": PGDATA, "mode": "rw"}},
            network_mode="none", detach=True)
    try:
        deadline = time.monotonic() + CHECK_TIMEOUT
        while time.monotonic() < deadline:
            check.reload()
            if check.status in ("exited", "dead"):
                tail = check.logs(tail=3).decode(errors="replace").strip().replace("\n", " | ")
                raise JobError(f"a server on volume {server.volume} exited at start: {tail}")
            result = check.exec_run(["pg_isready", "-q"], user="postgres")
            if result.exit_code == 0:
                return f"a {image} server started on volume {server.volume} and accepted connections"
            time.sleep(0.3)
        raise JobError(f"a server on volume {server.volume} did not accept connections within {CHECK_TIMEOUT:.0f} s")
    finally:
        with docker_errors(f"stop the check server on volume {server.volume}"):
            check.stop(timeout=30)
            check.remove(v=True, force=True)


def swap_steps(volume: str, image: str) -> list[str]:
    """How an operator puts the recovered volume under the compose service."""
    return [
        "stop the application and the database service: docker compose stop <app> <db>",
        f"in compose.yaml, mount the volume {volume} at the database's data directory instead of the old one:",
        f"    volumes: {{ <dbdata>: {{ external: true, name: {volume} }} }}",
        "start it: docker compose up -d <db>, check it, then start the application",
        "the old volume is untouched: to go back, restore the previous compose.yaml",
        f"(the recovered cluster runs on {image}; its data directory is the volume's root)",
    ]


__all__ = ["CopyResult", "copy_out", "keep_volume", "swap_steps"]
