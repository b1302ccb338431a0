"""The manifest of a backup and the record of a restore drill, as stored JSON.

The manifest is written last, after every object is stored and its checksum
known; a backup without one does not exist. Unknown fields are kept (extra
"allow") so older versions can read newer manifests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ObjectEncryption(_Open):
    """How a stored object is encrypted: the format and the recipients (public
    keys only) whose identities can read it. Recorded so that a reader without
    the key still knows which key it needs (rotation, errors)."""

    format: str = "age"
    recipients: list[str]


class StoredObject(_Open):
    name: str  # "dump" or "globals"
    key: str  # storage key, relative to the storage root
    format: str  # "pg_dump-custom" or "sql"
    raw_size: int  # bytes before compression
    stored_size: int  # bytes in storage
    sha256: str  # of the stored bytes: compressed, or compressed then encrypted
    raw_sha256: str | None = None  # of the uncompressed bytes
    encryption: ObjectEncryption | None = None  # None: stored unencrypted
    compressed_sha256: str | None = None  # encrypted objects: of the compressed bytes, checked after decryption


class TableCount(_Open):
    rows: int
    exact: bool = True


class Manifest(_Open):
    format: int = FORMAT_VERSION
    id: str
    database: str  # the config entry name
    dbname: str  # the PostgreSQL database name
    job: str | None = None
    run_id: str | None = None
    server_version: str  # "15.18"
    server_version_num: int  # 150018
    server_major: int
    pg_dump_version: str
    client: str  # "local", "container:<image>" or "exec:<container>"
    started: datetime
    finished: datetime
    duration: float
    compression: dict[str, Any]  # {"algorithm": "zstd", "level": 3}
    maintainer_version: str
    objects: list[StoredObject]
    row_counts: dict[str, TableCount]  # "schema.table" -> count
    object_counts: dict[str, int]  # schemas, tables, views, materialized_views, sequences,
    # functions, indexes, triggers, extensions, roles
    total_rows: int
    raw_size: int
    stored_size: int
    suspicious: bool = False
    suspicious_reasons: list[str] = Field(default_factory=list)

    def object(self, name: str) -> StoredObject | None:
        return next((o for o in self.objects if o.name == name), None)

    @property
    def recipients(self) -> list[str]:
        """Every recipient any object is encrypted to (empty: unencrypted)."""
        return list(dict.fromkeys(r for o in self.objects if o.encryption for r in o.encryption.recipients))


class CheckResult(_Open):
    name: str
    passed: bool
    detail: str = ""


class Verification(_Open):
    """What a restore drill found about one backup."""

    format: int = FORMAT_VERSION
    backup_id: str
    database: str
    run_id: str
    result: Literal["passed", "failed"]
    checks: list[CheckResult]
    started: datetime
    finished: datetime
    image: str | None = None
    restore_seconds: float | None = None  # the recovery time a person would face
    overhead_seconds: float | None = None  # container start to ready, plus cleanup
    backup_age_seconds: float | None = None  # the recovery point at drill time
    bytes_restored: int | None = None
    maintainer_version: str

    @property
    def passed(self) -> bool:
        return self.result == "passed"
