"""Stream bytes from a producer through zstd and SHA-256 straight into a storage writer.

No temporary file, and memory bounded by the chunk size (plus the S3 writer's
parts), whatever the size of the stream. The caller owns the writer: it commits
on success and aborts on any exception raised here.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

import zstandard

from maintainer.errors import Interrupted
from maintainer.storage.base import Writer

CHUNK = 1024 * 1024


@dataclass
class StreamResult:
    raw_size: int
    stored_size: int
    sha256: str  # of the stored (compressed) bytes
    raw_sha256: str  # of the bytes the producer gave
    head: bytes  # the first bytes of the raw stream, to check a format's magic


def compressor(level: int, threads: int = 0) -> zstandard.ZstdCompressor:
    """zstd with a frame checksum, so ``zstd -d``/``zstd -t`` detect corruption on their own."""
    return zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)


def store_stream(read: Callable[[int], bytes], writer: Writer, *, level: int = 3, threads: int = 0,
                 cancel: threading.Event | None = None, chunk: int = CHUNK) -> StreamResult:
    """Copy ``read(chunk)`` until it returns b'' into ``writer``, compressed.

    Raises Interrupted when ``cancel`` is set (checked between chunks; whoever
    sets it should also stop the producer so a blocked read returns), and
    whatever the writer raises (StorageError).
    """
    cobj = compressor(level, threads).compressobj()
    raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    raw_size = stored_size = 0
    head = b""
    while True:
        if cancel is not None and cancel.is_set():
            raise Interrupted("stopped while streaming")
        data = read(chunk)
        if not data:
            break
        if len(head) < 16:
            head += data[: 16 - len(head)]
        raw_size += len(data)
        raw_hash.update(data)
        out = cobj.compress(data)
        if out:
            stored_hash.update(out)
            stored_size += len(out)
            writer.write(out)
    if cancel is not None and cancel.is_set():
        raise Interrupted("stopped while streaming")
    out = cobj.flush()
    if out:
        stored_hash.update(out)
        stored_size += len(out)
        writer.write(out)
    return StreamResult(raw_size, stored_size, stored_hash.hexdigest(), raw_hash.hexdigest(), head)


def compress_bytes(data: bytes, level: int = 3) -> bytes:
    return compressor(level).compress(data)
