"""The manifest of a configuration snapshot, as stored JSON.

It is stored twice: as the archive's last member (without ``archive``, which
describes the archive itself) and beside the archive, written last, where a
snapshot exists only with it. Unknown fields are kept (extra "allow") so older
versions can read newer manifests; ``to_json`` writes the keys, order and
formatting the first version wrote.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from maintainer.backup.manifest import ObjectEncryption

FORMAT_VERSION = 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SnapshotFile(_Open):
    path: str  # where the file was read
    member: str  # its name in the archive: files/<path>
    size: int  # bytes archived (after masking)


class SkippedPath(_Open):
    path: str
    reason: str


class SnapshotArchive(_Open):
    key: str  # storage key, relative to the storage root
    size: int  # bytes in storage
    sha256: str  # of the stored bytes: compressed, or compressed then encrypted
    encryption: ObjectEncryption | None = None  # None: stored unencrypted
    compressed_sha256: str | None = None  # encrypted archives: of the compressed bytes, checked after decryption


class SnapshotManifest(_Open):
    format: int = FORMAT_VERSION
    id: str
    name: str  # the compose project, else the job's name: the folder in storage
    job: str
    created: datetime
    content_hash: str  # see content_hash(): equal content, equal hash
    maintainer_version: str
    compose_project: str | None = None
    secret_patterns: list[str] = Field(default_factory=list)
    files: list[SnapshotFile] = Field(default_factory=list)
    containers: list[str] = Field(default_factory=list)
    skipped: list[SkippedPath] = Field(default_factory=list)
    binary_unmasked: list[str] = Field(default_factory=list)  # archived as they are: not text
    masked_values: int = 0
    archive: SnapshotArchive | None = None  # set once the archive is stored

    @field_serializer("created")
    def _created(self, value: datetime) -> str:
        return value.isoformat()  # "+00:00", as written since the first version, not pydantic's "Z"

    def to_json(self, *, archive: bool = True) -> bytes:
        """The stored form; without ``archive`` for the copy inside the archive."""
        data = self.model_dump(mode="json", exclude=None if archive else {"archive"})
        for name in ("encryption", "compressed_sha256"):  # only for encrypted archives, as first written
            if data.get("archive") and data["archive"].get(name, 0) is None:
                del data["archive"][name]
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def content_hash(members: dict[str, bytes]) -> str:
    """sha256 over every member's name and content: the snapshot's identity, free of times."""
    h = hashlib.sha256()
    for name in sorted(members):
        h.update(name.encode() + b"\0" + hashlib.sha256(members[name]).hexdigest().encode() + b"\n")
    return "sha256:" + h.hexdigest()
