"""The options of continuous protection: the WAL archive and physical base backups."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from maintainer.config.jobbase import JobBase, Retention
from maintainer.config.types import ByteSize, Cron, Duration


class WalArchiveJob(JobBase):
    """Stream the write-ahead log of one server to storage, continuously (pg_receivewal on a
    physical replication slot). The daemon runs it from start to stop and restarts it with
    backoff; `maintainer run` archives until Ctrl-C."""

    type: Literal["wal_archive"]
    schedule: Cron | None = Field(None, description="not used: the job runs continuously (leave unset)")
    database: str = Field(description="a name from the top-level databases section; its server is archived")
    storage: str = Field(description="a name from the top-level storage section")
    slot: str = Field("maintainer", pattern=r"^[a-z0-9_]{1,63}$", description="the physical replication slot it "
                      "uses, created when missing (removing the job leaves it: `maintainer wal drop-slot JOB`)")
    flush_interval: Duration = Field(timedelta(seconds=5), description=(
        "how often the segment being written is stored as a partial object (the archive's RPO); also "
        "pg_receivewal's --status-interval"))
    synchronous: bool = Field(False, description=(
        "pg_receivewal --synchronous: flush and confirm every write at once (the server's "
        "synchronous_standby_names can then wait for it); costs one fsync per write"))
    max_wal_lag: Duration = Field(timedelta(minutes=5), description=(
        "/health fails when the newest archived WAL is older than this while the server writes"))
    slot_alert_bytes: ByteSize = Field(10 * 1024**3, ge=0, description=(
        "alert when the slot holds more WAL than this on the server (its receiver is down or behind); "
        "0: never. Bound it on the server with max_slot_wal_keep_size"))
    restart_backoff: Duration = Field(timedelta(seconds=5), description=(
        "first wait before restarting a receiver that stopped; doubles up to restart_backoff_max"))
    restart_backoff_max: Duration = Field(timedelta(minutes=5), description="the longest wait between restarts")
    check_interval: Duration = Field(timedelta(minutes=1), description=(
        "how often the slot's retained WAL and the archive's gaps are checked while archiving"))


class PgBasebackupJob(JobBase):
    """A physical base backup of one server (pg_basebackup, tar), streamed to storage."""

    type: Literal["pg_basebackup"]
    database: str = Field(description="a name from the top-level databases section; its server is backed up")
    storage: str = Field(description="a name from the top-level storage section")
    retention: Retention = Field(default_factory=Retention, description=(
        "which base backups to keep; WAL older than the oldest kept base backup is removed with it"))
    wal_method: Literal["fetch", "none"] = Field("fetch", description=(
        "fetch: the WAL written during the backup goes into it, so it restores and verifies on its own; "
        "none: rely on the WAL archive"))
    checkpoint: Literal["fast", "spread"] = Field("fast", description=(
        "fast: start at once with an immediate checkpoint; spread: wait for a paced one (less I/O at once)"))
    compression_level: int = Field(1, ge=-7, le=22, description=(
        "zstd level; -1 to -7 are zstd's fast levels (less compression, less CPU: -3 compresses about 1.5x faster "
        "than 1 on database files)"))
    compression_threads: int = Field(0, ge=0, le=64, description="zstd worker threads (0: in the reading thread)")
