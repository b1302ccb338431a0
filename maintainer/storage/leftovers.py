"""What failed or killed runs leave under a ``<prefix><id>/...`` layout whose items
exist only once their manifest is written (backups, config snapshots), and its removal.

Another run may be writing an item under the same prefix right now (``maintainer
run`` beside the daemon, an incident restore's safety backup, two jobs that share
a database), so nothing is removed on suspicion alone:

- unfinished writes (partial files, multipart uploads) go when the storage can
  tell their writer died, or after ABANDONED_AFTER without a sign of life where
  it cannot (see Storage.cleanup_incomplete);
- the objects of an item without a manifest go once the newest of them is
  ABANDONED_AFTER old: from its first object's commit until its manifest is
  written, a live run's item has no manifest either;
- directories left empty go with them (local storage).
"""

from __future__ import annotations

from datetime import datetime, timezone

from maintainer.storage.base import ABANDONED_AFTER, ObjectInfo, Storage


def remove_leftovers(storage: Storage, prefix: str, manifest: str) -> list[str]:
    """Remove leftovers under ``prefix`` (ending in ``/``) whose items are complete
    once ``<prefix><id>/<manifest>`` exists; returns the keys removed."""
    removed = storage.cleanup_incomplete(prefix, older_than=ABANDONED_AFTER)
    settled = datetime.now(timezone.utc) - ABANDONED_AFTER
    for objects in items_without_manifest(storage, prefix, manifest).values():
        if max(o.modified for o in objects) > settled:
            continue  # maybe a live run between its first object and its manifest
        for info in objects:
            storage.delete(info.key)
            removed.append(info.key)
    return removed


def items_without_manifest(storage: Storage, prefix: str, manifest: str) -> dict[str, list[ObjectInfo]]:
    """The stored objects of each item under ``prefix`` that has no manifest, by item id."""
    by_id: dict[str, list[ObjectInfo]] = {}
    complete: set[str] = set()
    for info in storage.list(prefix):
        item_id, sep, rest = info.key[len(prefix):].partition("/")
        if not sep or not item_id:
            continue  # not inside an item: not ours to judge
        by_id.setdefault(item_id, []).append(info)
        if rest == manifest:
            complete.add(item_id)
    return {item_id: objects for item_id, objects in by_id.items() if item_id not in complete}
