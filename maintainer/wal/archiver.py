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
last stored byte ended. A session on a timeline the archive does not hold yet
(a promoted server) starts pg_receivewal at the segment of the timeline's
switch point, not at the new slot's position, so that the WAL written between
the promotion and the archiver's start is archived too (``_seed_segment``);
when the server has already removed it, the gap is alerted. Beside it a
checker samples the server's flush position (lag), the slot's retained WAL
(alert above the bound) and the archive's gaps (alert on a new gap). Raises
JobError for what no restart can fix (another cluster's archive, a server that
cannot replicate).
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
from maintainer.wal.lsn import parse_segment_name, segment_name_of_lsn, segment_start
from maintainer.wal.state import STATES, ReceiverState, WalStates
from maintainer.wal.timeline import parse_history

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
        self._seeds_gone: set[str] = set()  # seeds the server had already removed: not tried again
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
            # The slot first: from now on the server keeps what it has not yet removed.
            if replication.ensure_slot(conn, self.spec.slot):
                self.log.info("wal.slot_created", server=self.server, slot=self.spec.slot)
            slot_lsn = replication.slot_status(conn, self.spec.slot).restart_lsn
            store.ensure_archive_record(self.storage, self.server, system_identifier=facts.system_identifier,
                                        wal_segment_size=facts.wal_segment_size, pg_major=facts.version.major)
            self.segment_size = facts.wal_segment_size
            env = client_env(self.db, conn)
        seed = self._seed_segment(facts.timeline)
        client = choose_client(self.db, self.server, facts.version, tool="pg_receivewal")
        self.totals.sessions += 1
        with client:
            self._stream(client, env, facts.system_identifier, seed, slot_lsn)

    def _seed_segment(self, timeline: int) -> str | None:
        """The segment pg_receivewal must start at when the archive holds nothing of
        the server's ``timeline`` yet (a promoted server, e.g. a recovered cluster
        swapped in): the one holding the timeline's switch point, as named on that
        timeline. Left alone, pg_receivewal would start at the new slot's position,
        and the WAL written between the promotion and the archiver's first start
        would never be archived. None when nothing needs seeding (timeline 1, an
        empty archive, one that already has the timeline, or a seed the server
        no longer had: that gap is alerted, then reported by the gap check).
        Stores the timeline's history file when the archive lacks it.
        DatabaseError/StorageError end the session (and a restart tries again)."""
        if timeline <= 1:
            return None
        listing = archive.list_archive(self.storage, self.server)
        stored = [*listing.segments, *listing.partials]
        if not stored or any(tli == timeline for tli, _ in stored):
            return None  # a new archive starts where the slot does; a known timeline resumes
        text = replication.timeline_history(self.db, self.server, timeline)
        if timeline not in listing.histories:
            self._retry(lambda: store.put_history(self.storage, self.server, timeline, text.encode(), self.keyring),
                        f"{timeline:08X}.history")
            self.totals.histories += 1
            self.log.info("wal.history_stored", server=self.server, file=f"{timeline:08X}.history")
        entries = parse_history(text, timeline)
        if not entries:
            return None
        seed = segment_name_of_lsn(timeline, entries[-1].switchpoint, self.segment_size)
        if seed in self._seeds_gone:
            return None
        return seed

    def _stream(self, client: PgClient, env: dict[str, str], system_identifier: str, seed: str | None,
                slot_lsn: int | None = None) -> None:
        host, port = client.target()
        flush = max(1, int(self.spec.flush_interval.total_seconds()))
        args = receiver.receivewal_args(self.spec.slot, host, port, client.user, status_interval=flush,
                                        synchronous=self.spec.synchronous)
        directory = (receiver.local_directory(self.job, system_identifier) if client.description == "local"
                     else receiver.container_directory(self.job, system_identifier))
        env = {**env, "PGAPPNAME": f"maintainer-wal-{self.job}", "MAINTAINER_WALDIR": directory,
               "MAINTAINER_FLUSH": str(flush)}
        if seed is not None:
            env.update(MAINTAINER_SEED=seed, MAINTAINER_SEGSIZE=str(self.segment_size))
        proc = client.start_script(receiver.SCRIPT, "pg_receivewal", args, env)
        self.log.info("wal.receiver_started", server=self.server, slot=self.spec.slot, client=client.description,
                      pg_receivewal=client.version, start_segment=seed)
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
        if seed is not None and any("has already been removed" in ln for ln in stderr):
            self._give_up_seed(client, directory, seed, slot_lsn)
        raise MaintainerError(f"pg_receivewal exited with {code}" + (f": {stderr[-1].strip()}" if stderr else ""))

    def _give_up_seed(self, client: PgClient, directory: str, seed: str, slot_lsn: int | None) -> None:
        """The server recycled the new timeline's first WAL before the slot held it:
        drop the seed, put the slot back where it was before pg_receivewal reported
        the seed's position to it (so the next session starts at the slot's position,
        on WAL the server has) and say so loudly; the archive's gap check then reports
        the hole as a gap."""
        self._seeds_gone.add(seed)
        client.remove_dir(directory)  # it held only the seed: pg_receivewal failed at its start
        if slot_lsn is not None:
            with connect(self.db, self.server) as conn:
                replication.restore_slot_position(conn, self.spec.slot, slot_lsn)
        message = (f"WAL archive of {self.server}: segment {seed}, where timeline {seed[:8]} began, was removed "
                   "from the server before it could be archived; the archive has a gap there; take a new base "
                   "backup to cover it")
        self.log.error("wal.timeline_start_lost", server=self.server, segment=seed)
        self.alert("wal.gap", message, severity="error", database=self.server, job=self.job)

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
