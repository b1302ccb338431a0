"""Backup storage: the interface, and the one place that maps a URL scheme to a backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maintainer.errors import StorageError
from maintainer.storage.base import ObjectInfo, Storage, Writer
from maintainer.storage.local import LocalStorage

if TYPE_CHECKING:
    from maintainer.config.models import StorageSpec


def open_storage(spec: "StorageSpec", name: str = "storage") -> Storage:
    """The backend for ``spec.url``: file:///path or s3://bucket/prefix."""
    url = spec.url
    if url.startswith("file://"):
        return LocalStorage(name, url[len("file://"):].rstrip("/") or "/")
    if url.startswith("s3://"):
        from maintainer.storage.s3 import S3Storage  # boto3: 0.3 s, only for an S3 storage

        return S3Storage(name, spec)
    raise StorageError(f"storage '{name}': unsupported URL {url!r} (use file:///path or s3://bucket/prefix)")


__all__ = ["ObjectInfo", "Storage", "StorageError", "Writer", "open_storage"]
