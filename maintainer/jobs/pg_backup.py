"""The pg_backup job: dump each database, store its server's roles beside it, write
the manifest last, then apply retention to that database's backups only.

For each database, in order:
 1. remove leftovers of earlier failed runs (manifest-less objects, multipart uploads);
 2. open a REPEATABLE READ transaction and export its snapshot; read the server version;
 3. pick a pg_dump at least as new as the server (local, container or exec);
 4. stream ``pg_dump --format=custom --compress=0 --snapshot=...`` through zstd,
    age encryption when the storage has ``encryption`` set, and SHA-256 into
    storage while the same snapshot is counted (rows, objects) and
    ``pg_dumpall --globals-only`` runs beside it (once per server per run);
 5. store the globals (encrypted the same way);
 6. compare with the previous backup (suspicious when rows or size fell sharply);
 7. write manifest.json; 8. plan and apply retention.
A failure in one database fails the run but the others still run.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass

from maintainer import __version__
from maintainer.backup import catalog, layout
from maintainer.backup.dump import MemoryWriter, run_into
from maintainer.backup.manifest import Manifest, StoredObject, TableCount
from maintainer.backup.pipeline import StreamResult
from maintainer.backup.retention import RetentionItem, RetentionPlan, plan_retention
from maintainer.config.jobs import PgBackupJob as PgBackupSpec
from maintainer.config.models import DatabaseSpec
from maintainer.crypto.keyring import Keyring
from maintainer.errors import DatabaseError, Interrupted, MaintainerError
from maintainer.jobs.base import Event, Job, JobResult, RunContext, utcnow
from maintainer.postgres import inventory
from maintainer.postgres.client import Client, choose_client
from maintainer.postgres.connection import client_env, end_sessions, export_snapshot, server_version
from maintainer.storage.base import Storage
from maintainer.units import human_duration, human_size

PG_DUMP_MAGIC = b"PGDMP"
GLOBALS_SETTLE = 120  # seconds a failed dump waits for the pg_dumpall beside it to end


@dataclass
class Globals:
    data: bytes  # zstd-compressed
    raw_size: int
    raw_sha256: str | None
    sha256: str
    note: str | None = None


class PgBackupJob(Job):
    type_name = PgBackupSpec.type_name
    spec: PgBackupSpec

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        storage = ctx.storage(self.spec.storage)
        # From the config, every run: a storage with `encryption` never receives plaintext.
        keyring = Keyring.of(self.config, self.spec.storage)
        globals_cache: dict[tuple[str, int], Future] = {}
        stored = kept = deleted = 0
        for name in self.spec.databases:
            ctx.check_cancelled()
            db = self.config.database(name)
            try:
                if ctx.dry_run:
                    result.summary.extend(self._plan(ctx, storage, keyring, name, db))
                    continue
                manifest, plan = self._backup(ctx, storage, keyring, name, db, globals_cache)
            except Interrupted:
                raise
            except MaintainerError as exc:
                ctx.log.error("backup.failed", database=name, error=exc.message)
                result.fail(f"{name}: {exc.message}")
                result.summary.append(f"{name}: FAILED: {exc.message}")
                continue
            stored += manifest.stored_size
            kept += len(plan.keep)
            deleted += len(plan.delete)
            result.details.setdefault("backups", []).append(
                {"database": name, "id": manifest.id, "raw_size": manifest.raw_size, "stored_size": manifest.stored_size,
                 "duration": manifest.duration, "total_rows": manifest.total_rows, "suspicious": manifest.suspicious,
                 "kept": list(plan.keep), "deleted": plan.delete})
            result.summary.append(_summary_line(manifest, plan))
            if manifest.suspicious:
                message = f"backup {name}/{manifest.id} is suspicious: " + "; ".join(manifest.suspicious_reasons)
                ctx.log.warning("backup.suspicious", database=name, backup=manifest.id, reasons=manifest.suspicious_reasons)
                result.events.append(Event("backup.suspicious", message, {"database": name, "backup": manifest.id}))
                result.summary.append(f"  warning: {message}")
        result.figures.update(bytes_stored=stored, backups_kept=kept, backups_deleted=deleted,
                              databases=len(self.spec.databases),
                              databases_failed=sum(1 for e in result.errors))
        return result

    # -- one database --------------------------------------------------
    def _backup(self, ctx: RunContext, storage: Storage, keyring: Keyring, name: str, db: DatabaseSpec,
                globals_cache: dict) -> tuple[Manifest, RetentionPlan]:
        removed = catalog.remove_leftovers(storage, name)
        if removed:
            ctx.log.info("backup.leftovers_removed", database=name, count=len(removed))
        started = utcnow()
        t0 = time.monotonic()
        backup_id = catalog.unique_backup_id(storage, name, started)
        dbname = db.dbname or name
        with export_snapshot(db, name) as snap:
            server = server_version(snap.conn)
            client = choose_client(db, name, server)
            # Its own application_name, so the sessions of a stopped pg_dump can be ended.
            env = {**client_env(db, snap.conn), "PGAPPNAME": f"maintainer-{backup_id}"}
            ctx.log.info("backup.started", database=name, backup=backup_id, server=server.text,
                         client=client.description, pg_dump=client.version)
            counts = _Counter(snap.conn, self.spec)
            counts.start()
            # pg_dumpall runs beside the dump rather than after it (it needs no snapshot).
            roles = self._globals(ctx, client, db, name, dbname, env, globals_cache) if self.spec.globals else None
            try:
                dump_key = layout.object_key(name, backup_id, keyring.name(layout.DUMP))
                args = ["--format=custom", "--compress=0", f"--snapshot={snap.snapshot_id}", *client.connection_args(dbname)]
                # zstd, then age (EncryptingWriter), then the storage: one pass, one chunk in memory.
                with keyring.writer(storage.open_writer(dump_key)) as writer:
                    dumped = run_into(client, "pg_dump", args, env, writer, level=self.spec.compression_level,
                                      cancel=ctx.cancel, what=f"dump of {name}", threads=self.spec.compression_threads)
                    check_dump(name, dumped)
            except BaseException:
                snap.conn.cancel()  # stop a long count at once; the backup failed anyway
                if roles is not None:
                    # Let pg_dumpall end (a cancel stops it) so its process or container is
                    # gone before this returns and, from the CLI, the process exits.
                    wait([roles], timeout=GLOBALS_SETTLE)
                if ended := end_sessions(db, name, env["PGAPPNAME"]):
                    ctx.log.info("backup.sessions_ended", database=name, sessions=ended)
                raise
            finally:
                counts.join()
        try:
            if counts.error is not None:
                raise counts.error
            objects = [StoredObject(**{"name": "dump", "key": dump_key, "format": "pg_dump-custom",
                                       "raw_size": dumped.raw_size, "stored_size": writer.size, "sha256": dumped.sha256,
                                       "raw_sha256": dumped.raw_sha256, **_encrypted(keyring, writer, dumped.sha256)})]
            if roles is not None:
                g = roles.result()
                gkey = layout.object_key(name, backup_id, keyring.name(layout.GLOBALS))
                data = keyring.seal(g.data)
                info = storage.put(gkey, data)
                sealed = {"encryption": keyring.record(), "compressed_sha256": g.sha256,
                          "sha256": hashlib.sha256(data).hexdigest()} if keyring.enabled else {}
                objects.append(StoredObject(**{"name": "globals", "key": gkey, "format": "sql", "raw_size": g.raw_size,
                                               "stored_size": info.size, "sha256": g.sha256,
                                               "raw_sha256": g.raw_sha256, **sealed,
                                               **({"note": g.note} if g.note else {})}))
            ctx.check_cancelled()
            finished = utcnow()
            row_counts = {k: TableCount(rows=v.rows, exact=v.exact) for k, v in counts.rows.items()}
            manifest = Manifest(
                id=backup_id, database=name, dbname=dbname, job=ctx.job_name, run_id=ctx.run_id,
                server_version=server.text, server_version_num=server.num, server_major=server.major,
                pg_dump_version=client.version, client=client.description, started=started, finished=finished,
                duration=round(time.monotonic() - t0, 3),
                compression={"algorithm": "zstd", "level": self.spec.compression_level,
                             "threads": self.spec.compression_threads},
                maintainer_version=__version__, objects=objects, row_counts=row_counts, object_counts=counts.objects,
                total_rows=sum(c.rows for c in row_counts.values()),
                raw_size=sum(o.raw_size for o in objects), stored_size=sum(o.stored_size for o in objects),
            )
            previous = catalog.list_backups(storage, name)
            reasons = suspicious_reasons(manifest, previous[0].manifest if previous else None, self.spec.suspicious_drop)
            if reasons:
                manifest.suspicious = True
                manifest.suspicious_reasons = reasons
            catalog.write_manifest(storage, manifest)
        except BaseException:
            catalog.discard_backup(storage, name, backup_id)  # stored without a manifest: remove it now
            raise
        ctx.log.info("backup.stored", database=name, backup=backup_id, raw_size=manifest.raw_size,
                     stored_size=manifest.stored_size, rows=manifest.total_rows, duration=manifest.duration)
        plan = plan_retention(catalog.retention_items(catalog.list_backups(storage, name)), self.spec.retention)
        catalog.apply_retention(storage, name, plan)
        if plan.delete:
            ctx.log.info("backup.retention", database=name, deleted=plan.delete, kept=len(plan.keep))
        return manifest, plan

    def _globals(self, ctx: RunContext, client: Client, db: DatabaseSpec, name: str, dbname: str,
                 env: dict[str, str], cache: dict[tuple[str, int], Future]) -> Future:
        """pg_dumpall --globals-only, started in the background once per server per run.

        The result (or the error, which every database of that server then
        reports) is the future's; the bytes are small.
        """
        server_key = (db.host, db.port)
        if server_key not in cache:
            future: Future = Future()

            def work() -> None:
                try:
                    future.set_result(self._dump_globals(ctx, client, db, name, dbname, env))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
                    future.set_exception(exc)

            threading.Thread(target=work, daemon=True, name="maintainer-globals").start()
            cache[server_key] = future
        return cache[server_key]

    def _dump_globals(self, ctx: RunContext, client: Client, db: DatabaseSpec, name: str, dbname: str,
                      env: dict[str, str]) -> Globals:
        host, port = client.target()
        base = ["--globals-only", "--host", host, "--port", str(port), "--username", db.user, "--no-password",
                "--database", dbname]
        note = None
        for attempt, extra in enumerate(([], ["--no-role-passwords"])):
            sink = MemoryWriter()
            try:
                res = run_into(client, "pg_dumpall", base + extra, env, sink, level=self.spec.compression_level,
                               cancel=ctx.cancel, what=f"globals of {name}'s server", hash_raw=True)
                break
            except DatabaseError as exc:
                # Without superuser, pg_authid is unreadable: roles are still dumped, without passwords.
                if attempt == 0 and "pg_authid" in exc.message:
                    note = "dumped with --no-role-passwords (not a superuser): roles have no passwords"
                    ctx.log.warning("backup.globals_without_passwords", database=name)
                    continue
                raise
        if res.raw_size == 0:
            raise DatabaseError(f"globals of {name}'s server: pg_dumpall wrote nothing")
        return Globals(sink.getvalue(), res.raw_size, res.raw_sha256, res.sha256, note)

    # -- dry run -------------------------------------------------------
    def _plan(self, ctx: RunContext, storage: Storage, keyring: Keyring, name: str, db: DatabaseSpec) -> list[str]:
        backup_id = catalog.unique_backup_id(storage, name, utcnow())
        dump, globals_name = keyring.name(layout.DUMP), keyring.name(layout.GLOBALS)
        lines = [f"{name}: would store {layout.backup_prefix(name, backup_id)}"
                 f"{{{dump}, {globals_name if self.spec.globals else ''}{', ' if self.spec.globals else ''}{layout.MANIFEST}}}"]
        if keyring.enabled:
            lines.append(f"  encrypted (age) to {', '.join(keyring.record()['recipients'])}")
        try:
            with export_snapshot(db, name) as snap:
                server = server_version(snap.conn)
            client = choose_client(db, name, server)
            lines.append(f"  server PostgreSQL {server.text}; pg_dump {client.version} ({client.description})")
        except MaintainerError as exc:
            lines.append(f"  (cannot check the server now: {exc.message})")
        entries = catalog.list_backups(storage, name)
        items = [RetentionItem(backup_id, layout.parse_backup_id(backup_id))] + catalog.retention_items(entries)
        plan = plan_retention(items, self.spec.retention)
        for bid in plan.delete:
            lines.append(f"  would delete {layout.backup_prefix(name, bid)}")
        for bid, why in plan.keep.items():
            if bid != backup_id:
                lines.append(f"  would keep {bid} ({', '.join(why)})")
        if not plan.delete:
            lines.append("  would delete nothing")
        return lines


class _Counter(threading.Thread):
    """Counts rows and objects on the snapshot connection while pg_dump streams."""

    def __init__(self, conn, spec: PgBackupSpec):
        super().__init__(daemon=True, name="maintainer-counts")
        self.conn = conn
        self.spec = spec
        self.rows: dict[str, inventory.TableRows] = {}
        self.objects: dict[str, int] = {}
        self.error: MaintainerError | None = None

    def run(self) -> None:
        try:
            # One backend, no parallel workers: the dump needs the CPU more than the count needs speed.
            self.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            self.rows = inventory.row_counts(self.conn, exact=self.spec.exact_row_counts,
                                             estimate_above=self.spec.estimate_rows_above)
            self.objects = inventory.object_counts(self.conn)
        except MaintainerError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - reported as the database's failure
            self.error = DatabaseError(f"cannot count rows and objects: {type(exc).__name__}: {exc}")


def _encrypted(keyring: Keyring, writer, compressed_sha256: str) -> dict:
    """The manifest fields of an object written through ``keyring.writer``: for an
    encrypted one, the checksum and size of the ciphertext (what storage holds), the
    compressed bytes' checksum and the recipients."""
    if not keyring.enabled:
        return {}
    return {"sha256": writer.stored_sha256, "stored_size": writer.stored_size, "compressed_sha256": compressed_sha256,
            "encryption": keyring.record()}


def check_dump(name: str, dumped: StreamResult) -> None:
    """A dump that is empty or not a custom-format archive fails the backup."""
    if dumped.raw_size == 0:
        raise DatabaseError(f"dump of {name}: pg_dump exited 0 but wrote nothing")
    if not dumped.head.startswith(PG_DUMP_MAGIC):
        raise DatabaseError(f"dump of {name}: output is not a pg_dump custom-format archive")


def suspicious_reasons(new: Manifest, previous: Manifest | None, drop: float) -> list[str]:
    """Why ``new`` looks like data loss compared with ``previous`` (empty: it does not)."""
    if previous is None:
        return []
    reasons = []
    for label, before, after in (("total rows", previous.total_rows, new.total_rows),
                                 ("raw size", previous.raw_size, new.raw_size)):
        if before > 0 and (before - after) / before > drop:
            reasons.append(f"{label} fell from {before} to {after} (more than {drop:.0%}) since {previous.id}")
    return reasons


def _summary_line(m: Manifest, plan: RetentionPlan) -> str:
    mark = " SUSPICIOUS" if m.suspicious else ""
    return (f"{m.database}: backup {m.id}{mark}: {human_size(m.stored_size)} stored ({human_size(m.raw_size)} raw), "
            f"{m.total_rows} rows in {len(m.row_counts)} tables, {human_duration(m.duration)}, "
            f"pg_dump {m.pg_dump_version} ({m.client}); retention kept {len(plan.keep)}, deleted {len(plan.delete)}")
