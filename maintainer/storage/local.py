"""file:///path storage: a directory tree, written through temporary names.

A write goes to ``.<name>.partial-<random>`` beside its final name, is
fsynced, and renamed into place on commit, so a crash never leaves a
complete-looking file. Listings never show partial files.

The writer holds an exclusive flock on its partial file from before the file
gets that name until it is renamed or removed. The kernel drops the lock when
the process dies (SIGKILL included), so a clean-up that can take the lock knows
the writer is gone and removes the file at once, and one that cannot leaves it
alone: it may be another run's dump in progress. Directories left empty by an
aborted, removed or deleted write are removed up to the root.

While a large object is written, every WRITE_BEHIND bytes the kernel is asked
to start writing it out and to drop what is already on disk
(POSIX_FADV_DONTNEED): the fsync at commit then has at most that much left to
wait for (it was 0.6 s after a 1 GB dump), and a backup does not push the
database's own pages out of the page cache. Every 8 MiB was too often: in
eight interleaved pairs each, a 1 GB backup took 1.25x and 1.34x the floor
with 8 MiB, 1.23x and 1.24x with none, 1.17x with 64 MiB.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from maintainer.errors import ObjectNotFound, StorageError
from maintainer.storage.base import (ABANDONED_AFTER, PARTIAL, ObjectInfo, Storage, Writer, check_key, is_partial,
                                     partial_name)

WRITE_BEHIND = 64 * 1024 * 1024
# A partial file is created under this suffix and renamed once it is locked: a
# clean-up never mistakes a file in that instant for one whose writer died.
UNLOCKED = ".new"
OPEN_ATTEMPTS = 5  # a clean-up may remove a directory between our mkdir and open

# Partial files this process writes. A file system whose flock is emulated with
# per-process POSIX locks (NFS) would let this process take its own lock.
_writing: set[Path] = set()
_writing_lock = threading.Lock()


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, timezone.utc)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class LocalWriter(Writer):
    def __init__(self, storage: "LocalStorage", key: str):
        super().__init__(key)
        self.final = storage.path_of(key)
        self.temp = self.final.with_name(partial_name(self.final.name, secrets.token_hex(4)))
        self._root = storage.root
        try:
            self._file = _open_locked(self.temp)
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
        finally:
            _forget(self.temp)
        return ObjectInfo(self.key, st.st_size, _mtime(st))

    def _abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.temp.unlink(missing_ok=True)
            _forget(self.temp)
            _remove_empty_dirs(self.final.parent, self._root)


def _open_locked(temp: Path):
    """Create ``temp`` for writing, flocked before it has that name (see the module docstring)."""
    unlocked = temp.with_name(temp.name + UNLOCKED)
    for attempt in range(OPEN_ATTEMPTS):
        try:
            temp.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(unlocked, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileNotFoundError:
            if attempt == OPEN_ATTEMPTS - 1:
                raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # No locks here: a clean-up judges this file by its age alone.
        with _writing_lock:
            _writing.add(temp)
        os.rename(unlocked, temp)
        return os.fdopen(fd, "wb")
    except BaseException:
        _forget(temp)
        os.close(fd)
        unlocked.unlink(missing_ok=True)
        raise


def _forget(temp: Path) -> None:
    with _writing_lock:
        _writing.discard(temp)


def _remove_empty_dirs(directory: Path, root: Path) -> None:
    """Remove ``directory`` and its parents while they are empty, never ``root``."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


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
                    if fname.startswith("."):  # partial files among them
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
        _remove_empty_dirs(path.parent, self.root)

    def cleanup_incomplete(self, prefix: str = "", older_than: timedelta = ABANDONED_AFTER) -> list[str]:
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        removed: list[str] = []
        directories: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "lost+found"]
            here = Path(dirpath)
            directories.append(here)
            for fname in filenames:
                full = here / fname
                key = full.relative_to(self.root).as_posix()
                if is_partial(fname) and key.startswith(prefix) and _remove_if_abandoned(full, cutoff):
                    name = fname[1:fname.rindex(PARTIAL)]
                    removed.append(full.with_name(name).relative_to(self.root).as_posix())
        # Deepest first, so a directory that holds only empty ones goes too.
        for directory in reversed(directories):
            rel = directory.relative_to(self.root).as_posix() + "/"
            if directory != self.root and rel.startswith(prefix):
                _remove_empty_dirs(directory, self.root)
        return removed


def _remove_if_abandoned(path: Path, cutoff: float) -> bool:
    """Remove a partial file whose writer is gone (its lock is free); True if removed.

    Where the file system has no locks, and for a file caught in the instant
    before its writer locked it, only age (the last write before ``cutoff``) counts.
    """
    with _writing_lock:
        if path in _writing:
            return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, or not a plain file
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            writer_gone = not path.name.endswith(UNLOCKED)
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError:
            writer_gone = False
        if not writer_gone and os.fstat(fd).st_mtime >= cutoff:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _raise(exc: OSError) -> None:
    raise exc
