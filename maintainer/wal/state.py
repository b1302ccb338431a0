"""The live state of each WAL receiver in this process, for /health, /metrics and logs.

The archiver (maintainer.wal.archiver) updates its job's ReceiverState as it
goes; health and metrics read ``STATES.snapshot()``. One lock guards every
update and read, so a reader never sees half an update. Only the daemon (or a
``maintainer run`` of the job) has live state; commands in another process
read the archive in storage instead (``archive_age``).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

LAG_TOLERANCE = 64  # bytes: a record's trailing zero bytes are not in the partial's non-zero tail


@dataclass
class ReceiverState:
    job: str
    server: str
    storage: str
    slot: str
    max_wal_lag: float  # seconds
    up: bool = False
    started: datetime | None = None
    restarts: int = 0
    last_segment: str | None = None  # newest complete segment stored
    last_segment_time: datetime | None = None  # when it was stored
    archived_lsn: int | None = None  # how far the stored WAL (segments and partial) reaches
    server_lsn: int | None = None  # the server's flush position at the last check
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    slot_retained_bytes: int | None = None
    gaps: int | None = None
    gap_text: str | None = None
    last_error: str | None = None
    segments_stored: int = 0
    partials_stored: int = 0
    # (monotonic time, server flush LSN) samples: how long the oldest unarchived byte has waited
    samples: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))

    def failing(self) -> list[str]:
        """Why this archive is unhealthy now (empty: healthy)."""
        out = []
        if not self.up:
            out.append(f"WAL receiver of {self.server} is down" + (f": {self.last_error}" if self.last_error else ""))
        if self.lag_seconds is not None and self.lag_seconds > self.max_wal_lag:
            out.append(f"WAL archive of {self.server} lags by {self.lag_seconds:.0f} s "
                       f"(max_wal_lag {self.max_wal_lag:.0f} s)")
        if self.gaps:
            out.append(f"WAL archive of {self.server} has {self.gaps} missing segment(s): {self.gap_text}")
        return out


class WalStates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ReceiverState] = {}

    def register(self, state: ReceiverState) -> None:
        with self._lock:
            old = self._states.get(state.job)
            if old is not None:  # a restarted run keeps counting
                state.restarts = old.restarts
            self._states[state.job] = state

    def update(self, job: str, **changes) -> None:
        with self._lock:
            state = self._states.get(job)
            if state is not None:
                for key, value in changes.items():
                    setattr(state, key, value)

    def add(self, job: str, name: str, amount: int = 1) -> None:
        with self._lock:
            state = self._states.get(job)
            if state is not None:
                setattr(state, name, getattr(state, name) + amount)

    def record_server_lsn(self, job: str, lsn: int) -> None:
        """A sample of the server's flush position; recomputes the lag."""
        now = time.monotonic()
        with self._lock:
            state = self._states.get(job)
            if state is None:
                return
            state.server_lsn = lsn
            state.samples.append((now, lsn))
            _recompute(state, now)

    def record_archived(self, job: str, lsn: int, segment: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            state = self._states.get(job)
            if state is None:
                return
            if state.archived_lsn is None or lsn > state.archived_lsn:
                state.archived_lsn = lsn
            if segment is not None:
                state.last_segment = segment
                state.last_segment_time = datetime.now(timezone.utc)
            _recompute(state, now)

    def snapshot(self) -> list[ReceiverState]:
        with self._lock:
            return [replace(s, samples=collections.deque()) for s in self._states.values()]

    def get(self, job: str) -> ReceiverState | None:
        with self._lock:
            state = self._states.get(job)
            return replace(state, samples=collections.deque()) if state else None

    def forget(self, job: str) -> None:
        with self._lock:
            self._states.pop(job, None)


def _recompute(state: ReceiverState, now: float) -> None:
    archived = state.archived_lsn or 0
    if state.server_lsn is None:
        return
    state.lag_bytes = max(0, state.server_lsn - archived)
    if state.lag_bytes <= LAG_TOLERANCE:
        state.lag_seconds = 0.0
        state.samples.clear()
        state.samples.append((now, state.server_lsn))
        return
    # the first sample that is ahead of the archive: that WAL has waited since then at least
    waiting = next((t for t, lsn in state.samples if lsn > archived + LAG_TOLERANCE), now)
    state.lag_seconds = round(now - waiting, 3)


STATES = WalStates()
