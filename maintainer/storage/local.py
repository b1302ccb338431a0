"""file:///path storage: a directory tree, written through temporary names.

A write goes to ``.<name>.partial-<random>`` beside its final name, is
fsynced, and renamed into place on commit, so a crash never leaves a
complete-looking file. Listings never show partial files.

While a large object is written, every WRITE_BEHIND bytes the kernel is asked
to start writing it out and to drop what is already on disk
(POSIX_FADV_DONTNEED): the fsync at commit then has at most that much left to
wait for (it was 0.6 s after a 1 GB dump), and a backup does not push the
database's own pages out of the page cache. Every 8 MiB was too often: in
eight interleaved pairs each, a 1 GB backup took 1.25x and 1.34x the floor
with 8 MiB, 1.23x and 1.24x with none, 1.17x with 64 MiB.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from maintainer.errors import ObjectNotFound, StorageError
from maintainer.storage.base import ObjectInfo, Storage, Writer, check_key

PARTIAL = ".partial-"
WRITE_BEHIND = 64 * 1024 * 1024


def _is_partial(name: str) -> bool:
    return name.startswith(".") and PARTIAL in name


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, timezone.utc)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class LocalWriter(Writer):
    def __init__(self, storage: "LocalStorage", key: str):
        super().__init__(key)
        self.final = storage.path_of(key)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.temp = self.final.with_name(f".{self.final.name}{PARTIAL}{secrets.token_hex(4)}")
            self._file = open(self.temp, "xb")
        except OSError as exc:
            raise StorageError(f"{storage.url}: cannot write {key}: {_reason(exc)}") from None
        self._url = storage.url
        self._unflushed = 0

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._unflushed += len(data)
            if self._unflushed >= WRITE_BEHIND:
                self._write_behind()
        except OSError as exc:
            raise StorageError(f"{self._url}: cannot write {self.key}: {_reason(exc)}") from None
        self.size += len(data)

    def _write_behind(self) -> None:
        self._file.flush()
        self._unflushed = 0
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None:
            try:
                advise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:  # a file system that does not take advice still works
                pass

    def _commit(self) -> ObjectInfo:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.temp, self.final)
            _fsync_dir(self.final.parent)
            st = self.final.stat()
        except OSError as exc:
            raise StorageError(f"{self._url}: cannot write {self.key}: {_reason(exc)}") from None
        return ObjectInfo(self.key, st.st_size, _mtime(st))

    def _abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.temp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStorage(Storage):
    def __init__(self, name: str, root: str | Path):
        self.root = Path(root)
        super().__init__(name, f"file://{self.root}")

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    def open_writer(self, key: str) -> Writer:
        return LocalWriter(self, key)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: {key} does not exist") from None
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot read {key}: {_reason(exc)}") from None

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self.path_of(key).stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: {key} does not exist") from None
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot stat {key}: {_reason(exc)}") from None
        return ObjectInfo(key, st.st_size, _mtime(st))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return iter(())
        if not self.root.is_dir():
            raise StorageError(f"{self.url}: is not a directory")
        # Walk only below the deepest directory the prefix names.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        found: list[ObjectInfo] = []
        try:
            for dirpath, dirnames, filenames in os.walk(start, onerror=_raise):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for fname in filenames:
                    if _is_partial(fname) or fname.startswith("."):
                        continue
                    full = Path(dirpath) / fname
                    key = full.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        st = full.stat()
                        found.append(ObjectInfo(key, st.st_size, _mtime(st)))
        except FileNotFoundError:
            return iter(())
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot list {prefix or '/'}: {_reason(exc)}") from None
        found.sort(key=lambda o: o.key)
        return iter(found)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot delete {key}: {_reason(exc)}") from None
        # Remove directories left empty, up to the root.
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def cleanup_incomplete(self, prefix: str = "", older_than: timedelta = timedelta(hours=1)) -> list[str]:
        if not self.root.exists():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for fname in filenames:
                if not _is_partial(fname):
                    continue
                full = Path(dirpath) / fname
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix.rsplit("/", 1)[0] if "/" in prefix else ""):
                    continue
                try:
                    if full.stat().st_mtime < cutoff:
                        full.unlink()
                        removed.append(key)
                except FileNotFoundError:
                    continue
        return removed


def _raise(exc: OSError) -> None:
    raise exc
