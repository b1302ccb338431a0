"""The WAL archiver: supervise pg_receivewal and store every file it finishes.

One ``Archiver.run()`` lasts until its cancel flag is set. Each session:
check the server (wal_level, REPLICATION, senders, slots), check the archive's
record (same cluster, same segment size), create the slot when missing, pick a
pg_receivewal of the server's major version (local, container or exec, as
pg_dump is chosen), and start it under the receiver script
(maintainer.wal.receiver). Each completed segment is stored under its name and
SHA-256 as soon as it arrives, then acknowledged (deleted where it was
written); the partial segment is stored at the flush interval. A session that
ends while not cancelled (the server restarted, the receiver died, storage
failed) is logged, alerted, counted, and followed by a new one after a backoff
that doubles up to its bound; the slot makes the new session resume where the
last stored byte ended. Beside it a checker samples the server's flush
position (lag), the slot's retained WAL (alert above the bound) and the
archive's gaps (alert on a new gap). Raises JobError for what no restart can
fix (another cluster's archive, a server that cannot replicate).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from maintainer.config.models import Config, DatabaseSpec
from maintainer.config.wal_jobs import WalArchiveJob as Spec
from maintainer.crypto.keyring import Keyring
from maintainer.errors import Interrupted, JobError, MaintainerError
from maintainer.logs import EventLogger
from maintainer.postgres.client import PgClient, choose_client
from maintainer.postgres.connection import client_env, connect
from maintainer.postgres import replication
from maintainer.storage.base import Storage
from maintainer.wal import archive, layout, receiver, store
from maintainer.wal.basebackups import oldest_needed_lsn
from maintainer.wal.lsn import parse_segment_name, segment_start
from maintainer.wal.state import STATES, ReceiverState, WalStates

Alert = Callable[..., None]  # Notifier.alert(kind, message, severity=..., **fields)
UPLOAD_ATTEMPTS = 4


@dataclass
class ArchiveTotals:
    sessions: int = 0
    segments: int = 0
    partials: int = 0
    histories: int = 0


class Archiver:
    def __init__(self, job: str, spec: Spec, config: Config, storage: Storage, keyring: Keyring,
                 cancel: threading.Event, log: EventLogger, alert: Alert | None = None,
                 states: WalStates = STATES):
        self.job = job
        self.spec = spec
        self.config = config
        self.server = spec.database
        self.db: DatabaseSpec = config.database(spec.database)
        self.storage = storage
        self.keyring = keyring
        self.cancel = cancel
        self.log = log
        self.alert = alert or (lambda *a, **k: None)
        self.states = states
        self.totals = ArchiveTotals()
        self.segment_size = 16 * 1024 * 1024
        states.register(ReceiverState(job, self.server, storage.name, spec.slot,
                                      spec.max_wal_lag.total_seconds()))

    # -- the supervisor -------------------------------------------------
    def run(self) -> ArchiveTotals:
        backoff = self.spec.restart_backoff.total_seconds()
        limit = self.spec.restart_backoff_max.total_seconds()
        checker = threading.Thread(target=self._check_loop, daemon=True, name=f"maintainer-wal-check-{self.job}")
        checker.start()
        try:
            while not self.cancel.is_set():
                started = time.monotonic()
                try:
                    self._session()
                    reason = "pg_receivewal stopped"
                except JobError:
                    raise
                except Interrupted:
                    break
                except MaintainerError as exc:
                    reason = exc.message
                self.states.update(self.job, up=False, last_error=reason)
                if self.cancel.is_set():
                    break
                if time.monotonic() - started > 10 * limit:
                    backoff = self.spec.restart_backoff.total_seconds()  # it ran well for a long while
                self.states.add(self.job, "restarts")
                self.log.warning("wal.receiver_stopped", server=self.server, reason=reason, restart_in=backoff)
                self.alert("wal.receiver_down", f"WAL receiver of {self.server} stopped: {reason}; restarting in "
                           f"{backoff:.0f} s", severity="error", database=self.server, job=self.job)
                if self.cancel.wait(backoff):
                    break
                backoff = min(backoff * 2, limit)
        finally:
            self.states.update(self.job, up=False)
        return self.totals

    def _session(self) -> None:
        with connect(self.db, self.server) as conn:
            facts = replication.server_facts(conn)
            problems = replication.replication_problems(facts, self.server, need_slot=True)
            if problems:
                raise JobError("; ".join(problems))
            store.ensure_archive_record(self.storage, self.server, system_identifier=facts.system_identifier,
                                        wal_segment_size=facts.wal_segment_size, pg_major=facts.version.major)
            self.segment_size = facts.wal_segment_size
            if replication.ensure_slot(conn, self.spec.slot):
                self.log.info("wal.slot_created", server=self.server, slot=self.spec.slot)
            env = client_env(self.db, conn)
        client = choose_client(self.db, self.server, facts.version, tool="pg_receivewal")
        self.totals.sessions += 1
        with client:
            self._stream(client, env, facts.system_identifier)

    def _stream(self, client: PgClient, env: dict[str, str], system_identifier: str) -> None:
        host, port = client.target()
        flush = max(1, int(self.spec.flush_interval.total_seconds()))
        args = receiver.receivewal_args(self.spec.slot, host, port, client.user, status_interval=flush,
                                        synchronous=self.spec.synchronous)
        directory = (receiver.local_directory(self.job, system_identifier) if client.description == "local"
                     else receiver.container_directory(self.job, system_identifier))
        env = {**env, "PGAPPNAME": f"maintainer-wal-{self.job}", "MAINTAINER_WALDIR": directory,
               "MAINTAINER_FLUSH": str(flush)}
        proc = client.start_script(receiver.SCRIPT, "pg_receivewal", args, env)
        self.log.info("wal.receiver_started", server=self.server, slot=self.spec.slot, client=client.description,
                      pg_receivewal=client.version)
        self.states.update(self.job, up=True, last_error=None, started=_now())
        stop = threading.Event()
        watcher = threading.Thread(target=self._stop_on_cancel, args=(proc, stop), daemon=True)
        watcher.start()
        try:
            frames = receiver.FrameReader(proc)
            while (frame := frames.next_frame()) is not None:
                self._store(frame, frames)
                if frame.kind == "F":
                    client.remove_path(proc, f"{directory}/{frame.name}.sent")
        except BaseException:
            proc.kill()
            proc.finish()
            raise
        finally:
            stop.set()
        code = proc.finish()
        if self.cancel.is_set():
            # Every file it sent is stored: the directory holds only the partial segment,
            # which the slot lets the next receiver stream again.
            client.remove_dir(directory)
            raise Interrupted(f"WAL archive of {self.server} stopped")
        stderr = [ln for ln in proc.stderr_text().splitlines() if "error" in ln or "FATAL" in ln]
        raise MaintainerError(f"pg_receivewal exited with {code}" + (f": {stderr[-1].strip()}" if stderr else ""))

    def _stop_on_cancel(self, proc, stop: threading.Event) -> None:
        """On cancel: SIGTERM (the script stops pg_receivewal and sends what is left), then kill."""
        while not stop.is_set():
            if self.cancel.wait(0.2):
                proc.terminate()
                if not stop.wait(20):
                    proc.kill()
                return

    # -- one file --------------------------------------------------------
    def _store(self, frame: receiver.Frame, frames: receiver.FrameReader) -> None:
        encoder = store.SegmentEncoder()
        try:
            offset = tail = 0
            while chunk := frames.read_body(1024 * 1024):
                encoder.update(chunk)
                stripped = chunk.rstrip(b"\x00")
                if stripped:
                    tail = offset + len(stripped)
                offset += len(chunk)
            encoder.finish()
            name = frame.name
            if name.endswith(".history"):
                key = layout.history_key(self.server, int(name[:8], 16), encrypted=store.encrypted(self.keyring))
                self._retry(lambda: encoder.store(self.storage, key, self.keyring), name)
                self.totals.histories += 1
                self.log.info("wal.history_stored", server=self.server, file=name)
                return
            segment = name[:-len(".partial")] if name.endswith(".partial") else name
            try:
                _, segno = parse_segment_name(segment, self.segment_size)
            except ValueError:
                self.log.warning("wal.unknown_file", server=self.server, file=name)
                return
            partial = frame.kind == "P" or name.endswith(".partial")
            key = self._retry(lambda: store.store_segment(self.storage, self.server, segment, encoder, self.keyring,
                                                          partial=partial), name)
            if partial:
                self.totals.partials += 1
                self.states.add(self.job, "partials_stored")
                self.states.record_archived(self.job, segment_start(segno, self.segment_size) + tail)
            else:
                self.totals.segments += 1
                self.states.add(self.job, "segments_stored")
                self.states.record_archived(self.job, segment_start(segno + 1, self.segment_size), segment)
                self.log.debug("wal.segment_stored", server=self.server, segment=segment, key=key)
        finally:
            encoder.close()

    def _retry(self, put: Callable[[], str], name: str):
        """A storage write, retried with a short backoff: a blip must not cost a restart."""
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                return put()
            except MaintainerError as exc:
                if attempt == UPLOAD_ATTEMPTS - 1:
                    raise MaintainerError(f"cannot store {name}: {exc.message}") from None
                self.log.warning("wal.store_retry", server=self.server, file=name, error=exc.message)
                if self.cancel.wait(2 ** attempt):
                    raise Interrupted(f"WAL archive of {self.server} stopped") from None
        raise AssertionError("unreachable")

    # -- the checker -----------------------------------------------------
    def _check_loop(self) -> None:
        flush = max(1.0, self.spec.flush_interval.total_seconds())
        every = self.spec.check_interval.total_seconds()
        last_full = 0.0
        alerted_slot = False
        known_gaps: set[str] = set()
        while not self.cancel.is_set():
            try:
                with connect(self.db, self.server) as conn:
                    self.states.record_server_lsn(self.job, replication.current_flush_lsn(conn))
                    if time.monotonic() - last_full >= every:
                        last_full = time.monotonic()
                        slot = replication.slot_status(conn, self.spec.slot)
                        self.states.update(self.job, slot_retained_bytes=slot.retained_bytes)
                        alerted_slot = self._check_slot(slot, alerted_slot)
                        known_gaps = self._check_gaps(known_gaps)
            except MaintainerError as exc:
                self.log.debug("wal.check_failed", server=self.server, error=exc.message)
            except Exception as exc:  # noqa: BLE001 - the checker must outlive one bad check
                self.log.warning("wal.check_crashed", server=self.server, error=repr(exc))
            self.cancel.wait(flush)

    def _check_slot(self, slot: replication.SlotStatus, alerted: bool) -> bool:
        bound = self.spec.slot_alert_bytes
        over = bool(bound and slot.retained_bytes is not None and slot.retained_bytes > bound)
        if over and not alerted:
            message = (f"replication slot {slot.name} on {self.server} retains {slot.retained_bytes} bytes of WAL "
                       f"(bound {bound}); the server's disk fills while the archive is behind")
            self.log.warning("wal.slot_over_bound", server=self.server, slot=slot.name, retained=slot.retained_bytes)
            self.alert("wal.slot_retained", message, severity="warning", database=self.server, job=self.job)
        return over

    def _check_gaps(self, known: set[str]) -> set[str]:
        listing = archive.list_archive(self.storage, self.server)
        since = oldest_needed_lsn(self.storage, self.server)
        gaps = archive.archive_gaps(self.storage, listing, since, self.keyring)
        text = "; ".join(g.describe() for g in gaps) or None
        self.states.update(self.job, gaps=sum(g.count for g in gaps), gap_text=text)
        names = {g.first_name for g in gaps}
        new = names - known
        if new:
            self.log.error("wal.gap", server=self.server, gaps=text)
            self.alert("wal.gap", f"WAL archive of {self.server} has a gap: {text}; take a new base backup to cover it",
                       severity="error", database=self.server, job=self.job)
        return names


def _now() -> datetime:
    return datetime.now(timezone.utc)
