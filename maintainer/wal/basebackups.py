"""Which base backups exist: listing, finding and reading them verified, and deleting them.

Only a base backup with a readable manifest is listed (layout.BASE_BACKUPS, an
ObjectSet whose manifest is written last); what failed or killed runs left is
invisible here and removed by ``remove_leftovers``. Point-in-time restore,
``maintainer backups``, retention and health all read through this module::

    entries = list_base_backups(storage, server)      # newest first
    entry = find_base_backup(storage, server, before=target_time)
    for chunk in read_object(storage, entry.manifest, "base.tar", keyring): ...   # raw tar bytes
    download_object(storage, entry.manifest, "backup_manifest", path, keyring)

``read_object`` yields the raw bytes (decrypted, decompressed) and raises
ChecksumMismatch after the last chunk unless the stored bytes and the raw bytes
both have the SHA-256 the manifest recorded: consume every chunk before acting
on any. MissingIdentity/NoMatchingIdentity come before a byte is read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import zstandard
from pydantic import ValidationError

from maintainer.crypto.errors import DecryptionError
from maintainer.crypto.keyring import DecryptingReader, Keyring
from maintainer.errors import MaintainerError, ObjectNotFound, StorageError
from maintainer.storage.base import COPY_CHUNK, Storage
from maintainer.storage.objectset import ChecksumMismatch, open_verified, parse_id
from maintainer.wal import layout
from maintainer.wal.basebackup_manifest import BaseBackupManifest


class BaseBackupNotFound(MaintainerError):
    """No complete base backup matches what was asked for."""


@dataclass
class BaseBackupEntry:
    manifest: BaseBackupManifest

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def server(self) -> str:
        return self.manifest.server

    @property
    def created(self) -> datetime:
        return parse_id(self.manifest.id)


def list_base_backups(storage: Storage, server: str | None = None) -> list[BaseBackupEntry]:
    """Complete base backups (manifest present and valid), newest first."""
    entries = []
    for item in layout.BASE_BACKUPS.items(storage, server or None):
        manifest = _manifest_or_none(storage, item.group, item.id)
        if manifest is not None:
            entries.append(BaseBackupEntry(manifest))
    entries.sort(key=lambda e: (e.id, e.server), reverse=True)
    return entries


def read_base_manifest(storage: Storage, server: str, backup_id: str) -> BaseBackupManifest:
    """BaseBackupNotFound if it is missing or unreadable."""
    try:
        raw = storage.get_bytes(layout.base_manifest_key(server, backup_id))
    except ObjectNotFound:
        raise BaseBackupNotFound(f"base backup {server}/{backup_id} does not exist in {storage.url}") from None
    try:
        return BaseBackupManifest.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise BaseBackupNotFound(f"base backup {server}/{backup_id}: manifest is not valid: "
                                 f"{str(exc).splitlines()[0]}") from None


def _manifest_or_none(storage: Storage, server: str, backup_id: str) -> BaseBackupManifest | None:
    try:
        manifest = read_base_manifest(storage, server, backup_id)
    except BaseBackupNotFound:
        return None
    return manifest if manifest.id == backup_id and manifest.server == server else None


def find_base_backup(storage: Storage, server: str, *, backup_id: str | None = None,
                     before: datetime | None = None) -> BaseBackupEntry:
    """By id, else the newest whose backup finished before ``before`` (a recovery
    target must lie after the backup's end), else the newest. BaseBackupNotFound."""
    entries = list_base_backups(storage, server)
    if backup_id:
        for entry in entries:
            if entry.id == backup_id:
                return entry
        raise BaseBackupNotFound(f"no complete base backup {server}/{backup_id} in {storage.url}",
                                 hint="list them with: maintainer backups")
    if before is not None:
        before = before if before.tzinfo else before.replace(tzinfo=timezone.utc)
        entries = [e for e in entries if e.manifest.finished <= before]
    if not entries:
        when = f" that finished before {before.isoformat()}" if before else ""
        raise BaseBackupNotFound(f"no complete base backup of {server}{when} in {storage.url}")
    return entries[0]


def oldest_needed_lsn(storage: Storage, server: str) -> int | None:
    """Where the WAL archive must be whole: from the newest base backup's start (a gap
    before it no longer matters), or None (from the oldest segment) when there is none."""
    entries = list_base_backups(storage, server)
    return entries[0].manifest.start if entries else None


def read_object(storage: Storage, manifest: BaseBackupManifest, name: str,
                keyring: Keyring | None = None) -> Iterator[bytes]:
    """The raw bytes of object ``name``, streamed and verified (see the module docstring)."""
    obj = manifest.object(name)
    if obj is None:
        raise BaseBackupNotFound(f"base backup {manifest.server}/{manifest.id} has no object {name}")
    label = f"base backup {manifest.server}/{manifest.id} {name}"
    identities = None
    if obj.encryption is not None:
        keyring = keyring or Keyring(storage.name)
        identities = keyring.identities_for(label, obj.encryption.recipients)
    raw_digest = hashlib.sha256() if obj.raw_sha256 is not None else None
    raw_size = 0
    with open_verified(storage, obj.key, size=obj.stored_size, sha256=obj.sha256, label=label) as stored:
        plain = DecryptingReader(stored, identities) if identities is not None else stored
        try:
            with zstandard.ZstdDecompressor().stream_reader(plain, closefd=False) as reader:
                while chunk := reader.read(COPY_CHUNK):
                    if raw_digest is not None:
                        raw_digest.update(chunk)
                    raw_size += len(chunk)
                    yield chunk
        except (DecryptionError, zstandard.ZstdError) as exc:
            stored.verify()  # altered in storage: say that first
            raise StorageError(f"{label} cannot be read (its SHA-256 matches, so it was stored that way): "
                               f"{getattr(exc, 'message', exc)}") from None
        stored.verify()
    if raw_size != obj.raw_size or (raw_digest is not None and raw_digest.hexdigest() != obj.raw_sha256):
        raise ChecksumMismatch(f"{label}: the decompressed bytes do not match the manifest ({raw_size} bytes, "
                               f"expected {obj.raw_size})")


def download_object(storage: Storage, manifest: BaseBackupManifest, name: str, path: str,
                    keyring: Keyring | None = None) -> int:
    """Write object ``name`` to ``path`` verified; removes the file and raises if
    the check fails. Returns the bytes written."""
    written = 0
    try:
        with open(path, "wb") as out:
            for chunk in read_object(storage, manifest, name, keyring):
                out.write(chunk)
                written += len(chunk)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return written


def delete_base_backup(storage: Storage, server: str, backup_id: str) -> None:
    """Manifest first: from that moment it no longer exists, even if the rest stays."""
    layout.BASE_BACKUPS.delete(storage, server, backup_id)


def discard_base_backup(storage: Storage, server: str, backup_id: str) -> None:
    layout.BASE_BACKUPS.discard(storage, server, backup_id)


def remove_leftovers(storage: Storage, server: str) -> list[str]:
    return layout.BASE_BACKUPS.remove_leftovers(storage, server)


__all__ = ["BaseBackupEntry", "BaseBackupNotFound", "delete_base_backup", "discard_base_backup", "download_object",
           "find_base_backup", "list_base_backups", "oldest_needed_lsn", "read_base_manifest", "read_object",
           "remove_leftovers"]
