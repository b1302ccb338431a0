"""The storage interface every backend implements: a handful of streaming calls.

Keys are relative ``/``-separated paths below the storage's root (its directory
or bucket prefix). Writes are atomic: a writer's object becomes visible only
when the ``with`` block ends without an exception; otherwise everything it
wrote is removed (the local temporary file, or the S3 multipart upload).

A write that is never finished (its process was killed) leaves a hidden
``.<name>.partial-<token>`` beside the final key: the local temporary file, or
on S3 a small record of who runs the multipart upload. ``cleanup_incomplete``
removes such leftovers only when their writer is certainly gone, so a run never
removes what another run is writing right now.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Iterator

from maintainer.errors import ObjectNotFound, StorageError

COPY_CHUNK = 1024 * 1024
PARTIAL = ".partial-"
# An unfinished write whose writer cannot be checked (another machine, an older
# version, a file system without locks) counts as abandoned after this long
# without a sign of life.
ABANDONED_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


class Writer(ABC):
    """A streaming upload. Use as a context manager; see the module docstring."""

    def __init__(self, key: str):
        self.key = key
        self.size = 0
        self.info: ObjectInfo | None = None
        self._done = False

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def _commit(self) -> ObjectInfo: ...

    @abstractmethod
    def _abort(self) -> None: ...

    def commit(self) -> ObjectInfo:
        if not self._done:
            self._done = True
            try:
                self.info = self._commit()
            except BaseException:
                self._abort_quietly()
                raise
        assert self.info is not None
        return self.info

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort_quietly()

    def _abort_quietly(self) -> None:
        try:
            self._abort()
        except Exception:  # noqa: BLE001 - the original failure matters more
            pass

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Storage(ABC):
    """A backup destination. ``name`` is its config name, ``url`` safe to print."""

    def __init__(self, name: str, url: str):
        self.name = name
        self.url = url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.url}>"

    @abstractmethod
    def open_writer(self, key: str) -> Writer:
        """Start an atomic streaming write of ``key``."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``; ObjectNotFound when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Complete objects whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and time of ``key``; ObjectNotFound when it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abstractmethod
    def cleanup_incomplete(self, prefix: str = "", older_than: timedelta = ABANDONED_AFTER) -> list[str]:
        """Remove leftovers of interrupted writes under ``prefix`` (temporary files,
        multipart uploads, empty directories) and return the keys they were for.

        A write whose writer is certainly gone (its process died) is removed at
        once; one whose writer is alive is never removed, however old. A write
        whose writer cannot be checked counts as gone after ``older_than``
        without a sign of life."""

    def put(self, key: str, source: BinaryIO | bytes) -> ObjectInfo:
        """Store a whole stream (or bytes) under ``key``."""
        with self.open_writer(key) as writer:
            if isinstance(source, (bytes, bytearray, memoryview)):
                writer.write(bytes(source))
            else:
                while chunk := source.read(COPY_CHUNK):
                    writer.write(chunk)
        assert writer.info is not None
        return writer.info

    def get_bytes(self, key: str) -> bytes:
        """The whole content of a small object (manifests, records)."""
        with self.open(key) as stream:
            return stream.read()

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
            return True
        except ObjectNotFound:
            return False


def partial_name(name: str, token: str) -> str:
    """The hidden name an unfinished write of ``name`` uses beside it."""
    return f".{name}{PARTIAL}{token}"


def is_partial(name: str) -> bool:
    """A name (the last part of a key) made by ``partial_name``."""
    return name.startswith(".") and PARTIAL in name


def check_key(key: str) -> str:
    """Reject keys that could escape the storage root or are not plain paths."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"invalid storage key {key!r}")
    norm = posixpath.normpath(key)
    if norm != key.rstrip("/") or norm.startswith("..") or "/../" in f"/{norm}/":
        raise StorageError(f"invalid storage key {key!r}")
    return key
