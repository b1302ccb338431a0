"""The backup pipeline's first step: pg_dump or pg_dumpall, run through a PgClient,
streamed straight into a storage writer (postgres/ only runs the tools).

The tool's stdout goes through zstd and SHA-256 into the writer (see
backup.pipeline). A watcher kills the tool (or removes its container) as soon
as the cancel flag is set, so a blocked read returns and the caller can abort
the writer. A non-zero exit, a kill, or a cancel raises; the caller's ``with
writer`` then removes the partial object.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from maintainer import redact
from maintainer.backup.pipeline import StreamResult, store_stream
from maintainer.errors import DatabaseError, Interrupted
from maintainer.postgres.client import PgClient
from maintainer.postgres.process import DumpProcess
from maintainer.storage.base import ObjectInfo, Writer


def run_into(client: PgClient, tool: str, args: list[str], env: dict[str, str], writer: Writer, *,
             level: int, cancel: threading.Event, what: str, threads: int = 0,
             hash_raw: bool = False) -> StreamResult:
    """Stream ``tool args`` into ``writer``; DatabaseError with the tool's own reason on failure."""
    if cancel.is_set():
        raise Interrupted(f"{what}: stopped before {tool} started")
    proc = client.start(tool, args, env)
    finished = threading.Event()
    watcher = threading.Thread(target=_kill_on_cancel, args=(proc, cancel, finished), daemon=True)
    watcher.start()
    try:
        result = store_stream(proc.readinto, writer, level=level, threads=threads, cancel=cancel,
                              hash_raw=hash_raw)
    except BaseException:
        proc.kill()
        proc.finish()
        raise
    finally:
        finished.set()
    code = proc.finish()
    if cancel.is_set():
        raise Interrupted(f"{what}: stopped while {tool} was running")
    if code != 0 or proc.killed:
        raise DatabaseError(f"{what}: {tool} {tool_failure(code, proc)}")
    return result


def _kill_on_cancel(proc: DumpProcess, cancel: threading.Event, finished: threading.Event) -> None:
    """Kill the tool when ``cancel`` is set; ends on its own once ``finished`` is
    (nobody waits for it: joining cost up to one polling interval per dump)."""
    while not finished.is_set():
        if cancel.wait(0.05):
            if not finished.is_set():
                proc.kill()
            return


def tool_failure(code: int, proc: DumpProcess) -> str:
    """"exited with 1: <its last error line>" or "was killed by signal 9"."""
    stderr = proc.stderr_text()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln or "FATAL" in ln] or lines
    reason = errors[-1] if errors else ""
    for prefix in ("pg_dump: error: ", "pg_dumpall: error: ", "pg_dump: ", "pg_dumpall: "):
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
            break
    reason = redact.scrub(reason)
    if code < 0 or code == 137:
        signal = -code if code < 0 else 9
        return f"was killed by signal {signal}" + (f" ({reason})" if reason else "")
    return f"exited with {code}" + (f": {reason}" if reason else " and said nothing")


class MemoryWriter(Writer):
    """Collects a small stream (pg_dumpall's globals) to store beside several dumps."""

    def __init__(self, key: str = "memory"):
        super().__init__(key)
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def _commit(self):

        return ObjectInfo(self.key, self.size, datetime.now(timezone.utc))

    def _abort(self) -> None:
        self.chunks.clear()

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)
