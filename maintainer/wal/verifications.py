"""The PITR drills' records, stored beside the base backup they recovered from:
``base/<server>/<id>/verifications/<run>.json`` (a backup.manifest.Verification
with ``mode: pitr`` and the drill's figures as extra fields). Health, metrics and
the status page read them here; restore.pitr_drill writes them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import ValidationError

from maintainer.backup.manifest import Verification
from maintainer.errors import ObjectNotFound
from maintainer.storage.base import Storage
from maintainer.wal.layout import BASE_BACKUPS


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


PITR_MODE = "pitr"  # the ``mode`` a PITR drill writes into its Verification record


def pitr_drill_records(storage: "Storage", server: str) -> list[Verification]:
    """The PITR drills' records stored beside ``server``'s base backups
    (``base/<server>/<id>/verifications/<run>.json``), oldest first. An unreadable
    record is skipped; a storage failure raises what the storage raises."""
    records = []
    for item in BASE_BACKUPS.items(storage, server):
        for name, info in item.objects.items():
            if not (name.startswith("verifications/") and name.endswith(".json")):
                continue
            try:
                record = Verification.model_validate_json(storage.get_bytes(info.key))
            except (ObjectNotFound, ValidationError, ValueError):
                continue
            if (record.model_extra or {}).get("mode") == PITR_MODE:
                records.append(record)
    return sorted(records, key=lambda r: _utc(r.finished))


def pitr_figure(record: Verification, name: str) -> float | None:
    """A number the PITR drill recorded (rto_seconds, rpo_seconds, replay_mb_s...), or None."""
    value = (record.model_extra or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
