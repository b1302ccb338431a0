"""What a point-in-time restore reads from storage before it plans: the WAL archive's
listing and newest timeline history, and the base backups of the same cluster.

Everything is read through maintainer.wal (archive, basebackups); this module only
turns it into the planner's plain inputs and calls ``plan_pitr``. Raises
PitrRefused (no archive, no base backup of this cluster), StorageError from the
storage, HistoryError for an unreadable history, MissingIdentity/NoMatchingIdentity
for an encrypted history the keyring cannot open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maintainer.crypto.keyring import Keyring
from maintainer.restore.pitr_plan import (
    BaseInfo,
    PitrPlan,
    PitrRefused,
    PitrTarget,
    StoredWal,
    plan_pitr,
)
from maintainer.storage.base import Storage
from maintainer.wal import archive, basebackups
from maintainer.wal.basebackup_manifest import BaseBackupManifest


@dataclass
class PitrSource:
    """The plan and what it was made from."""

    plan: PitrPlan
    listing: archive.ArchiveListing
    manifest: BaseBackupManifest  # the chosen base backup's


def base_info(m: BaseBackupManifest) -> BaseInfo:
    """The planner's view of a base backup. Its stop time is the run's end (at or
    after the server's own backup end), so a target after it is always consistent."""
    return BaseInfo(id=m.id, start_lsn=m.start, stop_lsn=m.stop, start_time=m.backup_start_time or m.started,
                    stop_time=m.finished, timeline=m.timeline, pg_major=m.server_major)


def plan_from_storage(storage: Storage, server: str, target: PitrTarget, now: datetime,
                      keyring: Keyring | None = None) -> PitrSource:
    listing = archive.list_archive(storage, server)
    timeline = listing.newest_timeline
    if timeline is None:
        raise PitrRefused(f"no WAL of {server} is archived in {storage.url}; a wal_archive job writes it")
    history = archive.timeline_history(storage, listing, timeline, keyring)
    manifests = {e.id: e.manifest for e in basebackups.list_base_backups(storage, server)}
    if listing.record is not None:  # base backups of another cluster under the same name cannot use this WAL
        manifests = {i: m for i, m in manifests.items() if m.system_identifier == listing.record.system_identifier}
    segments = {where: _stored(listing, s) for where, s in listing.segments.items()}
    partials = {where: _stored(listing, s) for where, s in listing.partials.items()}
    plan = plan_pitr(server, [base_info(m) for m in manifests.values()], segments, partials, timeline, history,
                     target, now, segment_size=listing.segment_size, histories=dict(listing.histories))
    return PitrSource(plan=plan, listing=listing, manifest=manifests[plan.base.id])


def _stored(listing: archive.ArchiveListing, stored) -> StoredWal:
    return StoredWal(key=stored.key, modified=listing.info(stored).modified, partial=stored.partial,
                     encrypted=stored.encrypted)


__all__ = ["PitrRefused", "PitrSource", "base_info", "plan_from_storage"]
