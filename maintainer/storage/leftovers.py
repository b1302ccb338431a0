"""What failed or killed runs leave under a ``<prefix><id>/...`` layout whose items
exist only once their manifest is written. The policy and its code live in
maintainer.storage.objectset (ObjectSet.remove_leftovers); these names remain
for callers that pass a prefix and a manifest name themselves.
"""

from __future__ import annotations

from maintainer.storage.objectset import items_without_manifest, remove_leftovers

__all__ = ["items_without_manifest", "remove_leftovers"]
