"""Stream ``pg_basebackup -D - -Ft`` into storage: zstd, SHA-256, age, no local copy.

The tar goes through the same frame-by-frame zstd pipeline as dumps
(maintainer.backup.pipeline) into one storage writer; on the way a TarScanner
picks out ``backup_label`` (start LSN, timeline, start time) and
``backup_manifest`` (the server's own list of files and checksums, with the WAL
range; the tar's last member), which is then stored alone as well.

WAL method: ``-X fetch`` (the default) puts the WAL written during the backup
into the tar, so a base backup restores and verifies (pg_verifybackup parses
its WAL) on its own even if the archive has a hole; it costs the size of that
WAL (a few segments). ``-X none`` relies on the WAL archive. Raises
DatabaseError with pg_basebackup's own reason, Interrupted on cancel,
StorageError from the storage; the caller discards what was stored.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from maintainer.backup.dump import tool_failure
from maintainer.backup.pipeline import StreamResult, store_stream
from maintainer.crypto.keyring import Keyring
from maintainer.errors import DatabaseError, Interrupted, JobError
from maintainer.postgres.client import PgClient
from maintainer.storage.base import Storage
from maintainer.wal import layout
from maintainer.wal.basebackup_manifest import BACKUP_MANIFEST, TAR, BaseObject
from maintainer.wal.lsn import format_lsn, parse_lsn
from maintainer.wal.store import encode
from maintainer.wal.tarscan import TarScanner

LABEL = "backup_label"


@dataclass
class StreamedBackup:
    objects: list[BaseObject]
    timeline: int
    start_lsn: str
    stop_lsn: str
    stop_timeline: int
    start_time: datetime | None
    files: int


def stream_basebackup(client: PgClient, storage: Storage, keyring: Keyring, server: str, backup_id: str,
                      env: dict[str, str], *, wal_method: str, checkpoint: str, level: int, threads: int,
                      cancel: threading.Event) -> StreamedBackup:
    """Run pg_basebackup through ``client`` and store its tar and backup_manifest."""
    host, port = client.target()
    args = ["-D", "-", "-Ft", f"-X{wal_method}", f"--checkpoint={checkpoint}", "--label", f"maintainer {backup_id}",
            "--host", host, "--port", str(port), "--username", client.user, "--no-password"]
    scanner = TarScanner({LABEL, BACKUP_MANIFEST})
    tar_key = layout.base_object_key(server, backup_id, keyring.name(layout.BASE_TAR))
    if cancel.is_set():
        raise Interrupted("base backup: stopped before pg_basebackup started")
    proc = client.start("pg_basebackup", args, env)
    done = threading.Event()

    def kill_on_cancel() -> None:
        while not done.is_set():
            if cancel.wait(0.05) and not done.is_set():
                proc.kill()
                return

    threading.Thread(target=kill_on_cancel, daemon=True, name="maintainer-basebackup-cancel").start()

    ahead = ReadAhead(proc, scanner)

    try:
        with keyring.writer(storage.open_writer(tar_key)) as writer:
            result: StreamResult = store_stream(ahead.readinto, writer, level=level, threads=threads, cancel=cancel)
            ahead.check()
            code = proc.finish()
            if cancel.is_set():
                raise Interrupted("base backup: stopped while pg_basebackup was running")
            if code != 0 or proc.killed:
                raise DatabaseError(f"base backup of {server}: pg_basebackup {tool_failure(code, proc)}")
            if not scanner.ended or BACKUP_MANIFEST not in scanner.members or LABEL not in scanner.members:
                raise JobError(f"base backup of {server}: pg_basebackup's tar has no backup_label or backup_manifest")
    except BaseException:
        proc.kill()
        ahead.drain()
        proc.finish()
        raise
    finally:
        done.set()
    tar = _object(TAR, tar_key, keyring, writer, result.raw_size, None, result.sha256)
    manifest_raw = scanner.members[BACKUP_MANIFEST]
    manifest_key = layout.base_object_key(server, backup_id, keyring.name(layout.BACKUP_MANIFEST))
    stored = encode(manifest_raw, keyring)
    info = storage.put(manifest_key, stored)
    server_manifest = BaseObject(name=BACKUP_MANIFEST, key=manifest_key, raw_size=len(manifest_raw),
                                 stored_size=info.size, sha256=hashlib.sha256(stored).hexdigest(),
                                 raw_sha256=hashlib.sha256(manifest_raw).hexdigest(),
                                 encryption=keyring.record() if keyring.enabled else None)
    label = parse_backup_label(scanner.members[LABEL].decode(errors="replace"))
    stop_tli, stop_lsn = wal_end(manifest_raw)
    return StreamedBackup([tar, server_manifest], label["timeline"], label["start_lsn"], format_lsn(stop_lsn),
                          stop_tli, label["start_time"], len(scanner.names))


class ReadAhead:
    """Reads the tool's output in a thread of its own, up to DEPTH chunks ahead, and
    feeds the tar scanner there: pg_basebackup and the server keep streaming while
    the caller compresses (zstd releases the GIL). Without it the two took turns
    through the 1 MiB pipe, and a base backup cost the sum of both instead of the
    larger. Memory: DEPTH chunks."""

    DEPTH = 8
    CHUNK = 1024 * 1024

    def __init__(self, proc, scanner: TarScanner):
        self._proc = proc
        self._scanner = scanner
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._pending = memoryview(b"")
        self._ended = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="maintainer-basebackup-read")
        self._thread.start()

    def _run(self) -> None:
        try:
            while chunk := self._proc.read(self.CHUNK):
                self._scanner.feed(chunk)
                self._queue.put(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer (a damaged tar, a read error)
            self.error = exc
        finally:
            self._queue.put(b"")

    def readinto(self, buffer: memoryview) -> int:
        """Up to len(buffer) bytes; 0 at the end (or when the reader failed: see ``check``)."""
        if not self._pending:
            if self._ended:
                return 0
            chunk = self._queue.get()
            if not chunk:
                self._ended = True
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def check(self) -> None:
        """Raise what the reading thread met (TarScanError for output that is not a tar)."""
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """After a kill: let the reading thread see the end and stop (bounded)."""
        deadline = time.monotonic() + 30
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass


def _object(name: str, key: str, keyring: Keyring, writer, raw_size: int, raw_sha256: str | None,
            compressed_sha256: str) -> BaseObject:
    if keyring.enabled:
        return BaseObject(name=name, key=key, raw_size=raw_size, stored_size=writer.stored_size,
                          sha256=writer.stored_sha256, raw_sha256=raw_sha256, encryption=keyring.record(),
                          compressed_sha256=compressed_sha256)
    assert writer.info is not None
    return BaseObject(name=name, key=key, raw_size=raw_size, stored_size=writer.info.size, sha256=compressed_sha256,
                      raw_sha256=raw_sha256)


_LABEL_LINE = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$", re.M)
_TIME_LINE = re.compile(r"^START TIME: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ?(\S+)?$", re.M)
_TLI_LINE = re.compile(r"^START TIMELINE: (\d+)$", re.M)


def parse_backup_label(text: str) -> dict:
    """START WAL LOCATION, START TIMELINE and START TIME of a backup_label; JobError if absent."""
    loc = _LABEL_LINE.search(text)
    if not loc:
        raise JobError("backup_label has no START WAL LOCATION line")
    tli = _TLI_LINE.search(text)
    timeline = int(tli[1]) if tli else int(loc[2][:8], 16)
    start_time = None
    when = _TIME_LINE.search(text)
    if when:
        zone = when[2] or "UTC"
        try:
            start_time = datetime.fromisoformat(when[1] + ("+00:00" if zone in ("UTC", "GMT") else ""))
        except ValueError:
            start_time = None
        if start_time is not None and start_time.tzinfo is None:
            start_time = None  # a named zone other than UTC: maintainer's own start time stands in
    return {"start_lsn": format_lsn(parse_lsn(loc[1])), "timeline": timeline, "start_time": start_time}


def wal_end(backup_manifest: bytes) -> tuple[int, int]:
    """(timeline, End-LSN) of the last WAL range of a backup_manifest; JobError if absent."""
    try:
        ranges = json.loads(backup_manifest)["WAL-Ranges"]
        last = ranges[-1]
        return int(last["Timeline"]), parse_lsn(last["End-LSN"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise JobError("the server's backup_manifest has no readable WAL-Ranges") from None
