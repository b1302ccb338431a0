"""The manifest of a physical base backup, as stored JSON (``base/<server>/<id>/manifest.json``).

Written last, after the tar and the server's backup_manifest are stored and
their checksums known: a base backup without it does not exist. It says what
point-in-time restore needs before downloading anything: the cluster (system
identifier, major version, segment size), where the backup's WAL starts and
ends (timeline, start and stop LSN, the first and last segment) and each
object's size, SHA-256 and encryption. Unknown fields are kept, so an older
maintainer reads a newer manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maintainer.backup.manifest import ObjectEncryption
from maintainer.wal.lsn import parse_lsn, segment_name_of_lsn

FORMAT_VERSION = 1
TAR = "base.tar"  # object names in ``objects``
BACKUP_MANIFEST = "backup_manifest"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class BaseObject(_Open):
    name: str  # "base.tar" or "backup_manifest"
    key: str  # storage key
    raw_size: int  # bytes before compression
    stored_size: int  # bytes in storage
    sha256: str  # of the stored bytes (compressed, then encrypted when encrypted)
    # Of the raw bytes; None for the tar: hashing 1 GB again cost a quarter of the floor's time,
    # and the stored SHA-256, zstd's frame checksums and the raw size prove it intact.
    raw_sha256: str | None = None
    encryption: ObjectEncryption | None = None


class Tablespace(_Open):
    oid: int
    name: str
    location: str


class BaseBackupManifest(_Open):
    format: int = FORMAT_VERSION
    kind: Literal["pg_basebackup"] = "pg_basebackup"
    id: str
    server: str  # the databases entry name
    job: str | None = None
    run_id: str | None = None
    system_identifier: str
    server_version: str  # "15.18"
    server_version_num: int
    server_major: int
    pg_basebackup_version: str
    client: str  # "local", "container:<image>", "exec:<container>"
    wal_method: Literal["fetch", "none"]  # fetch: the backup holds the WAL it needs (self-contained)
    wal_segment_size: int
    timeline: int  # of the start LSN
    start_lsn: str  # "0/2000028"
    stop_lsn: str  # the end of the WAL needed for consistency
    stop_timeline: int | None = None
    backup_start_time: datetime | None = None  # the server's START TIME (backup_label)
    started: datetime  # maintainer's run
    finished: datetime
    duration: float
    compression: dict[str, Any]
    objects: list[BaseObject]
    tablespaces: list[Tablespace] = Field(default_factory=list)  # besides pg_default and pg_global
    maintainer_version: str
    raw_size: int
    stored_size: int

    def object(self, name: str) -> BaseObject | None:
        return next((o for o in self.objects if o.name == name), None)

    @property
    def start(self) -> int:
        return parse_lsn(self.start_lsn)

    @property
    def stop(self) -> int:
        return parse_lsn(self.stop_lsn)

    @property
    def start_segment(self) -> str:
        """The first WAL segment a restore of this backup replays."""
        return segment_name_of_lsn(self.timeline, self.start, self.wal_segment_size)

    @property
    def stop_segment(self) -> str:
        return segment_name_of_lsn(self.stop_timeline or self.timeline, self.stop, self.wal_segment_size)

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(r for o in self.objects if o.encryption for r in o.encryption.recipients))

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()
