"""The one way maintainer restores a backup's dump, for the incident restore and the drill alike.

``Restore.run`` does, in order:

1. reads the globals (small) and streams the dump through its SHA-256 check
   (``VerifiedObject``) into a file where the client's pg_restore reads it:
   beside a local pg_restore, or straight into the client's container (never
   staged locally). --jobs needs a seekable file, and pg_restore starts only
   after the whole object matched the manifest;
2. applies the globals and, for a restore into a new name, creates that database;
3. runs pg_restore --exit-on-error --jobs N (``run_pg_restore``: the only place
   maintainer starts pg_restore, with one watchdog for a cancel and one reading
   of its errors);
4. applies the dump's database-level statements renamed to the new database
   (with --create, pg_restore brings them itself);
5. deletes the copied dump (and a container client's workspace) whatever happened.

What the callers add: the drill its throwaway server and checks
(maintainer.restore.drill), the incident restore its plan, safety backup and
switch-over (maintainer.restore.incident).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import psycopg
from psycopg import sql

from maintainer import redact
from maintainer.crypto.keyring import Keyring
from maintainer.errors import Interrupted, JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import PgClient, choose_client
from maintainer.postgres.connection import ServerVersion
from maintainer.restore.globals import (GlobalsReport, apply_database_statements, apply_globals, creation_options,
                                        database_statements)
from maintainer.restore.stream import ChecksumMismatch, VerifiedObject
from maintainer.storage.base import Storage

if TYPE_CHECKING:
    from maintainer.backup.manifest import Manifest, StoredObject
    from maintainer.config.models import DatabaseSpec

log = get_logger("restore.engine")

DUMP_NAME = "dump.pgcustom"
CREATE, NEW, EXISTING = "create", "new", "existing"  # Destination.how

_STEP = re.compile(r"pg_restore: (creating|processing item|launching item)")
_TOC_ITEM = re.compile(r"^[0-9]+; [0-9]+ [0-9]+ ")
# The entries of pg_restore --create --list that a restore without --create leaves out: the
# database itself, and its settings, comment, grants and labels (which a NEW restore takes).
_LEVEL = "DATABASE PROPERTIES|COMMENT - DATABASE|ACL - DATABASE|SECURITY LABEL - DATABASE"
_DATABASE_ITEM = re.compile(rf"^[0-9]+; [0-9]+ [0-9]+ (DATABASE|{_LEVEL}) ")


class Progress:
    """What a restore reports while it runs; the CLI shows it (rich) or logs it (JSON lines)."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...


class PgRestoreFailed(JobError):
    """pg_restore exited non-zero (or was killed); ``reason`` is its first error line."""

    def __init__(self, code: int, reason: str, dbname: str):
        super().__init__(f"pg_restore into {dbname} failed (exit {code}): {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Destination:
    """Where the dump goes, and how pg_restore and maintainer reach that server.

    ``how``: CREATE runs pg_restore --create, which brings the dumped database
    back under its own name with its settings (a throwaway server); NEW creates
    ``dbname`` (owned by ``owner``) first and applies the dump's database-level
    statements renamed to it; EXISTING restores into ``dbname`` as it is.
    """

    dbname: str  # the database that holds the restored objects
    pg_restore_args: list[str]  # how the client's pg_restore connects; never a password
    env: dict[str, str]  # pg_restore's environment: PGPASSWORD, PGAPPNAME
    connect: Callable[[str], object]  # maintainer's own autocommit connection to a database there
    how: str = NEW
    owner: str | None = None


@dataclass
class Restore:
    """One restore of ``manifest``'s dump through ``client`` into ``dest``.

    ``run`` raises ChecksumMismatch or StorageError (and, for an encrypted backup,
    MissingIdentity or NoMatchingIdentity) before anything was changed,
    Interrupted when ``cancel`` is set, PgRestoreFailed when pg_restore fails,
    and DatabaseError/DockerError from the servers. The attributes say how far
    it got, for a caller that reports each step (the drill's checks).
    """

    client: PgClient
    storage: Storage
    manifest: Manifest
    dest: Destination
    jobs: int = 2
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)
    temp_dir: str | None = None  # a local client's place for the dump
    keyring: Keyring | None = None  # the storage's identities, for encrypted objects
    # filled in by run():
    globals_bytes: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    globals: GlobalsReport | None = None
    created: bool = False  # NEW: the database exists now, the caller drops it on failure
    database_settings: str = ""
    creation_note: str = ""  # when the dump's encoding/locale could not be used
    seconds: dict[str, float] = field(default_factory=dict)  # copy_seconds, pg_restore_seconds

    def run(self) -> "Restore":
        m = self.manifest
        dump = m.object("dump")
        if dump is None:
            raise JobError(f"backup {m.database}/{m.id} has no dump object in its manifest")
        check_identities(self.storage, m, self.keyring)
        globals_sql = None
        if (gobj := m.object("globals")) is not None:
            data = VerifiedObject(self.storage, gobj, label=f"backup {m.database}/{m.id} globals",
                                  keyring=self.keyring).read_all()
            self.globals_bytes, globals_sql = len(data), data.decode()
        directory = self.client.make_dir(self.temp_dir)
        try:
            path = self._place(dump, directory)  # verified: nothing below runs on a mismatch
            total, database_sql = self._database_sql(path, directory) if self.dest.how == NEW else (None, "")
            self._prepare(globals_sql, creation_options(database_sql))
            self.progress.phase("pg_restore", total=total)
            t = time.monotonic()
            try:
                run_pg_restore(self.client, ["--exit-on-error", "--verbose", "--no-password", f"--jobs={self.jobs}",
                                             *(["--create"] if self.dest.how == CREATE else []),
                                             *self.dest.pg_restore_args, path],
                               self.dest.env, self.cancel, dbname=self.dest.dbname, on_line=self._step)
            finally:
                self.seconds["pg_restore_seconds"] = round(time.monotonic() - t, 3)
        finally:
            self.client.remove_dir(directory)
        if statements := database_statements(database_sql, self.dest.dbname):
            with self.dest.connect("postgres") as admin:
                self.database_settings = apply_database_statements(admin, statements)
        if self.creation_note:
            self.database_settings = "; ".join(filter(None, [self.creation_note, self.database_settings]))
        return self

    def _place(self, obj: StoredObject, directory: str) -> str:
        """The verified dump, streamed to where pg_restore reads it; its path there."""
        label = f"backup {self.manifest.database}/{self.manifest.id} dump"
        reader = VerifiedObject(self.storage, obj, label=label, keyring=self.keyring)
        self.progress.phase("download and verify", total=obj.raw_size)

        def chunks():
            sent = 0
            for chunk in reader.chunks():
                if self.cancel.is_set():
                    raise Interrupted("restore stopped during the download; nothing was changed")
                sent += len(chunk)
                if sent > obj.raw_size:  # else the copy fails first, on its announced size
                    raise ChecksumMismatch(f"{label}: more than the manifest's {obj.raw_size} bytes "
                                           "after decompression")
                self.progress.advance(len(chunk))
                yield chunk

        t = time.monotonic()
        path = self.client.put_file(directory, DUMP_NAME, obj.raw_size, chunks())
        self.seconds["copy_seconds"] = round(time.monotonic() - t, 3)
        self.raw_bytes, self.stored_bytes = reader.raw_bytes, reader.stored_bytes
        return path

    def _prepare(self, globals_sql: str | None, options: list[str]) -> None:
        """Globals first (owners and grants need the roles), then a NEW database with
        the dumped database's encoding and locale (``options``), as --create would."""
        if globals_sql is None and self.dest.how != NEW:
            return
        with self.dest.connect("postgres") as admin:
            if globals_sql is not None:
                self.progress.phase("globals")
                self.globals = apply_globals(admin, globals_sql)
                if not self.globals.ok:
                    log.warning("restore.globals_errors", errors=self.globals.errors)
            if self.dest.how == NEW:
                self._create_database(admin, options)
                self.created = True

    def _create_database(self, admin, options: list[str]) -> None:
        """CREATE DATABASE with the dump's options; where this server lacks its locale,
        with the server's defaults instead, said in the summary (the data still fits:
        pg_restore converts the encoding)."""
        owner = sql.SQL(" OWNER {}").format(sql.Identifier(self.dest.owner)) if self.dest.owner else sql.SQL("")
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0{}").format(sql.Identifier(self.dest.dbname), owner)
        if options:
            try:
                # The options are the dump's own NAME = 'literal' pairs (see creation_options).
                admin.execute(sql.Composed([create, sql.SQL(" " + " ".join(options))]))
                return
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.creation_note = (f"created with this server's default encoding and locale, not the dump's "
                                      f"({', '.join(options)}: {first})")
                log.warning("restore.database_options_refused", options=options, error=first)
        admin.execute(create)

    def _database_sql(self, path: str, directory: str) -> tuple[int, str]:
        """The number of items pg_restore will restore (for the progress display) and
        the dump's database-level SQL, which pg_restore emits only with --create."""
        listing = run_pg_restore(self.client, ["--create", "--list", path], self.dest.env, self.cancel,
                                 dbname=self.dest.dbname)
        items = [line for line in listing.splitlines() if _TOC_ITEM.match(line)]
        total = sum(1 for line in items if not _DATABASE_ITEM.match(line))
        wanted = [line for line in items if _DATABASE_ITEM.match(line)]  # CREATE DATABASE and its settings
        if not wanted:
            return total, ""
        data = ("\n".join(wanted) + "\n").encode()
        use_list = self.client.put_file(directory, "database.list", len(data), [data])
        return total, run_pg_restore(self.client, ["--create", f"--use-list={use_list}", "--file=-", path],
                                     self.dest.env, self.cancel, dbname=self.dest.dbname)

    def _step(self, line: str) -> None:
        if _STEP.match(line):
            self.progress.advance(1)


def run_pg_restore(client: PgClient, args: list[str], env: dict[str, str], cancel: threading.Event, *,
                   dbname: str, on_line: Callable[[str], None] | None = None) -> str:
    """Run ``pg_restore args`` through ``client`` and return its stdout (a listing, SQL).

    Each stderr line goes to ``on_line`` as it comes. A cancel kills pg_restore
    (Interrupted); a non-zero exit raises PgRestoreFailed with its first error line.
    """
    if cancel.is_set():
        raise Interrupted("restore stopped before pg_restore started")
    errors: list[str] = []

    def line(text: str) -> None:
        if "error" in text.lower() and len(errors) < 10:
            errors.append(text.strip())
        if on_line is not None:
            on_line(text)

    lines = _Lines(line)
    proc = client.start("pg_restore", args, env, on_stderr=lines)
    out = bytearray()
    with Watchdog(cancel, proc.kill, what="pg_restore") as watchdog:
        try:
            while chunk := proc.read(65536):
                out += chunk
            code = proc.finish()
        except BaseException:
            proc.kill()
            with contextlib.suppress(Exception):  # the first failure is the one to report
                proc.finish()
            watchdog.check()  # a failure caused by the cancel is reported as one
            raise
    lines.flush()
    watchdog.check()
    if code != 0 or proc.killed:
        reason = errors[0] if errors else (proc.stderr_text().splitlines() or ["pg_restore said nothing"])[-1]
        raise PgRestoreFailed(code, redact.scrub(reason), dbname)
    return out.decode(errors="replace")


class _Lines:
    """Stderr chunks as lines, each handed to ``on_line`` once complete."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.pending = b""

    def __call__(self, data: bytes) -> None:
        self.pending += data
        *complete, self.pending = self.pending.split(b"\n")
        for line in complete:
            self.on_line(line.decode(errors="replace"))

    def flush(self) -> None:
        if self.pending:
            self.on_line(self.pending.decode(errors="replace"))
            self.pending = b""


class Watchdog:
    """Calls ``stop`` once, from a second thread, when ``cancel`` is set or ``timeout``
    seconds have passed.

    The main thread may be blocked in a long call (pg_restore, a copy into a
    container); ``stop`` (kill the process, remove the container) ends that
    call, and ``check`` then raises Interrupted or, on timeout, JobError.
    """

    def __init__(self, cancel: threading.Event, stop: Callable[[], object], *, timeout: float | None = None,
                 what: str = "restore", aftermath: str = ""):
        self.cancel = cancel
        self.stop = stop
        self.timeout = timeout
        self.what = what
        self.aftermath = f"; {aftermath}" if aftermath else ""
        self.fired: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"{what}-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        deadline = None if self.timeout is None else self._started + self.timeout
        while not self._done.is_set():
            if self.cancel.is_set():
                self.fired = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                self.fired = "timeout"
            if self.fired:
                try:
                    self.stop()
                except Exception as exc:  # noqa: BLE001 - the main thread cleans up again
                    log.warning("watchdog.stop_failed", what=self.what, error=str(exc))
                return
            self._done.wait(0.1)

    def check(self) -> None:
        """Raise if the watchdog fired: Interrupted on cancel, JobError on timeout."""
        if self.fired == "cancelled":
            raise Interrupted(f"{self.what} stopped by a signal{self.aftermath}")
        if self.fired == "timeout":
            raise JobError(f"{self.what} timed out after {self.timeout:.0f} s{self.aftermath}")


def check_identities(storage: Storage, manifest: Manifest, keyring: Keyring | None) -> None:
    """For an encrypted backup: MissingIdentity or NoMatchingIdentity now, naming the
    storage and the recipients, unless ``keyring`` can open every object."""
    keyring = keyring or Keyring(storage.name)
    for obj in manifest.objects:
        if obj.encryption is not None:
            keyring.identities_for(f"backup {manifest.database}/{manifest.id} {obj.name}", obj.encryption.recipients)


def pg_restore_client(spec: DatabaseSpec, name: str, manifest: Manifest) -> PgClient:
    """A pg_restore that can read ``manifest``'s dump (as new as the server dumped),
    chosen by the database's ``client:`` config exactly as the backup chose its
    pg_dump. JobError (one line: the versions found, what to configure) when there is none."""
    server = ServerVersion(manifest.server_version, manifest.server_major * 10000)
    return choose_client(spec, name, server, tool="pg_restore")
