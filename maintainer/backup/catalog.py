"""Which backups exist: listing, finding and reading them, and their drill records.

Only a backup with a readable manifest is listed (layout.BACKUPS, an object
set whose manifest is written last); anything else under the layout (leftovers
of failed runs) is invisible here and removed by ``remove_leftovers``.
Every reader (backups, restore, drills, retention, health) goes through this
module, and so does the backup job for the lifecycle rules: a unique id,
discarding a failed backup, leftovers, and applying retention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pydantic import ValidationError

from maintainer.backup import layout
from maintainer.backup.manifest import Manifest, Verification
from maintainer.backup.retention import RetentionItem, RetentionPlan
from maintainer.errors import JobError, MaintainerError, ObjectNotFound, StorageError
from maintainer.storage.base import Storage


@dataclass
class BackupEntry:
    manifest: Manifest
    verifications: list[Verification] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def database(self) -> str:
        return self.manifest.database

    @property
    def created(self) -> datetime:
        return layout.parse_backup_id(self.manifest.id)

    @property
    def verified(self) -> bool:
        """A restore drill passed on this backup."""
        return any(v.passed for v in self.verifications)

    @property
    def suspicious(self) -> bool:
        return self.manifest.suspicious


class BackupNotFound(MaintainerError):
    """No complete backup matches what was asked for."""


def list_backups(storage: Storage, database: str | None = None) -> list[BackupEntry]:
    """Complete backups (manifest present and valid), newest first."""
    entries: list[BackupEntry] = []
    for item in layout.BACKUPS.items(storage, database or None):
        manifest = _read_manifest_or_none(storage, item.group, item.id)
        if manifest is None:
            continue
        verifications = [v for name, info in item.objects.items()
                         if name.startswith(layout.VERIFICATIONS + "/") and name.endswith(".json")
                         and (v := _read_verification_or_none(storage, info.key)) is not None]
        entries.append(BackupEntry(manifest, verifications))
    entries.sort(key=lambda e: (e.id, e.database), reverse=True)
    return entries


def read_manifest(storage: Storage, database: str, backup_id: str) -> Manifest:
    """The manifest of one backup; BackupNotFound if it is missing or unreadable."""
    key = layout.manifest_key(database, backup_id)
    try:
        raw = storage.get_bytes(key)
    except ObjectNotFound:
        raise BackupNotFound(f"backup {database}/{backup_id} does not exist in {storage.url}") from None
    try:
        return Manifest.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise BackupNotFound(f"backup {database}/{backup_id}: manifest is not valid: {str(exc).splitlines()[0]}") from None


def _read_manifest_or_none(storage: Storage, database: str, backup_id: str) -> Manifest | None:
    try:
        manifest = read_manifest(storage, database, backup_id)
    except BackupNotFound:
        return None
    if manifest.id != backup_id or manifest.database != database:
        return None
    return manifest


def _read_verification_or_none(storage: Storage, key: str) -> Verification | None:
    try:
        return Verification.model_validate_json(storage.get_bytes(key))
    except (ObjectNotFound, ValidationError, ValueError):
        return None


def write_verification(storage: Storage, record: Verification) -> str:
    """Store a drill's record beside the backup; returns its key."""
    key = layout.verification_key(record.database, record.backup_id, record.run_id)
    storage.put(key, record.model_dump_json(indent=2).encode())
    return key


def write_manifest(storage: Storage, manifest: Manifest) -> str:
    """Store the manifest; call only after every object is stored and checked."""
    data = manifest.model_dump_json(indent=2).encode()
    layout.BACKUPS.write_manifest(storage, manifest.database, manifest.id, data)
    return layout.manifest_key(manifest.database, manifest.id)


def find_backup(storage: Storage, database: str, *, backup_id: str | None = None,
                before: datetime | None = None, verified_only: bool = False) -> tuple[BackupEntry, str]:
    """Pick one complete backup and say why it was chosen.

    By id when given; otherwise the newest (older than ``before`` if given),
    or with ``verified_only`` the newest that a restore drill passed. The
    reason says whether a drill verified the choice. Raises BackupNotFound
    with what exists.
    """
    entries = list_backups(storage, database)
    if backup_id:
        for entry in entries:
            if entry.id == backup_id:
                return entry, f"backup {backup_id} as requested, {_verified_note(entry)}"
        raise BackupNotFound(f"no complete backup {database}/{backup_id} in {storage.url}",
                             hint=f"list them with: maintainer backups --database {database}")
    if before is not None:
        before = before if before.tzinfo else before.replace(tzinfo=timezone.utc)
        entries = [e for e in entries if e.created < before]
    when = f" older than {before.isoformat()}" if before else ""
    if not entries:
        raise BackupNotFound(f"no complete backup of {database}{when} in {storage.url}")
    if not verified_only:
        return entries[0], f"newest backup{when}, {_verified_note(entries[0])}"
    verified = [e for e in entries if e.verified]
    if not verified:
        raise BackupNotFound(f"no backup of {database}{when} in {storage.url} has been verified by a restore drill "
                             f"(newest: {entries[0].id})", hint="restore the newest one without --verified")
    chosen = verified[0]
    newer = entries.index(chosen)
    note = f"newest backup{when} verified by a restore drill"
    return chosen, note + (f" ({newer} newer unverified backup(s) skipped)" if newer else "")


def newest_verified(storage: Storage, database: str, *, other_than: str | None = None) -> BackupEntry | None:
    """The newest drill-verified backup (not ``other_than``): what to try next when a restore fails."""
    return next((e for e in list_backups(storage, database) if e.verified and e.id != other_than), None)


def _verified_note(entry: BackupEntry) -> str:
    if not entry.verified:
        return "not verified by a restore drill (its SHA-256 and row counts are still checked)"
    record = max((v for v in entry.verifications if v.passed), key=lambda v: v.finished)
    return f"verified by a restore drill on {record.finished.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


# ---------------------------------------------------------------- lifecycle
# What the backup job does to the catalogue: its rules live here, beside the listing.


def retention_items(entries: list[BackupEntry]) -> list[RetentionItem]:
    """Backups as retention sees them; the newest verified one is protected."""
    newest = next((e.id for e in entries if e.verified), None)
    return [RetentionItem(e.id, e.created, protected=e.id == newest, suspicious=e.suspicious) for e in entries]


def apply_retention(storage: Storage, database: str, plan: RetentionPlan) -> None:
    """Delete what the plan says, manifest first: a half-deleted backup is never listed."""
    for backup_id in plan.delete:
        layout.BACKUPS.delete(storage, database, backup_id)


def discard_backup(storage: Storage, database: str, backup_id: str) -> None:
    """Best effort: remove what a failed backup stored (the next run retries anything left)."""
    layout.BACKUPS.discard(storage, database, backup_id)


def remove_leftovers(storage: Storage, database: str) -> list[str]:
    """Remove what failed or killed runs left under this database; returns the keys removed.
    Never what another run is writing right now (see maintainer.storage.objectset)."""
    return layout.BACKUPS.remove_leftovers(storage, database)


def unique_backup_id(storage: Storage, database: str, when: datetime) -> str:
    """The start time as an id; one second later if that id is taken (bounded)."""
    for step in range(10):
        backup_id = layout.new_backup_id(when + timedelta(seconds=step))
        if not any(True for _ in storage.list(layout.backup_prefix(database, backup_id))):
            return backup_id
    raise JobError(f"database {database}: cannot find a free backup id near {when.isoformat()}")


__all__ = ["BackupEntry", "BackupNotFound", "StorageError", "apply_retention", "discard_backup", "find_backup", "newest_verified", "list_backups",
           "remove_leftovers", "retention_items", "unique_backup_id",
           "read_manifest", "write_manifest", "write_verification"]
