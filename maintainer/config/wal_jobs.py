"""The options of continuous protection: the WAL archive and physical base backups."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maintainer.config.jobbase import JobBase, Retention


class WalArchiveJob(JobBase):
    """Stream the write-ahead log of one server to storage, continuously (pg_receivewal)."""

    type: Literal["wal_archive"]
    database: str = Field(description="a name from the top-level databases section; its server is archived")
    storage: str = Field(description="a name from the top-level storage section")
    slot: str = Field("maintainer", pattern=r"^[a-z0-9_]{1,63}$", description="the physical replication slot it uses")


class PgBasebackupJob(JobBase):
    """A physical base backup of one server (pg_basebackup, tar), streamed to storage."""

    type: Literal["pg_basebackup"]
    database: str = Field(description="a name from the top-level databases section; its server is backed up")
    storage: str = Field(description="a name from the top-level storage section")
    retention: Retention = Field(default_factory=Retention, description="which base backups to keep")
