"""The multipart upload behind S3Storage.open_writer: two reused part buffers, a
background sender, and the upload's hidden owner record (see maintainer.storage.s3).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from maintainer.errors import StorageError
from maintainer.storage import owner as owners
from maintainer.storage.base import ObjectInfo, Writer, partial_name

if TYPE_CHECKING:
    from maintainer.storage.s3 import S3Storage

MAX_PARTS = 10_000
DOUBLE_EVERY = 2_000  # parts
HEARTBEAT = 300.0  # seconds between rewrites of an upload's record while parts go up


def part_size_for(number: int, base: int) -> int:
    """Size of part ``number`` (from 1): ``base`` for the first 2,000 parts, doubling
    every 2,000 after, so 10,000 parts hold 31 x 2,000 x base (about 300 GiB at 5 MiB)
    while memory stays at two small parts unless an object is that large."""
    return base << ((number - 1) // DOUBLE_EVERY)


class S3Writer(Writer):
    """A multipart upload through two part-sized buffers that are reused.

    The caller fills one buffer while the background sender uploads the
    other, so memory is two parts whatever the object's size. Allocating a
    fresh part for every upload let glibc's heap grow to about three times
    that. Parts go to boto3 as bytearrays (the last one truncated in place):
    botocore joins a ``bytes`` body onto the request headers, one more copy.
    """

    BUFFERS = 2

    def __init__(self, storage: S3Storage, key: str):
        super().__init__(key)
        self.storage = storage
        self.s3_key = storage.full_key(key)
        self.part_size = storage.part_size
        self._part: bytearray | None = None  # the buffer being filled
        self._fill = 0
        self._allocated = 0
        self._free: queue.Queue[bytearray] = queue.Queue()  # buffers the sender is done with
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[int, bytearray] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._next_number = 0
        parent, _, name = self.s3_key.rpartition("/")
        self._record_key = (parent + "/" if parent else "") + partial_name(name, secrets.token_hex(4))
        self._record_written: float | None = None  # time.monotonic() of the last write of the record

    # The background sender: uploads parts in order while the caller fills the next.
    def _sender(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, data = item
            try:
                if self._failure is None:
                    resp = self.storage.client.upload_part(Bucket=self.storage.bucket, Key=self.s3_key,
                                                           PartNumber=number, UploadId=self._upload_id, Body=data)
                    self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            except BaseException as exc:  # noqa: BLE001 - reported to the writing thread
                self._failure = exc
            finally:
                self._free.put(data)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            exc = self._failure
            raise self.storage.error("cannot write", self.key, exc) if isinstance(exc, Exception) else exc

    def _send_part(self, data: bytearray) -> None:
        if self._upload_id is None:
            try:
                resp = self.storage.client.create_multipart_upload(Bucket=self.storage.bucket, Key=self.s3_key)
            except (ClientError, BotoCoreError) as exc:
                raise self.storage.error("cannot write", self.key, exc) from None
            self._upload_id = resp["UploadId"]
            self._write_record()
            self._thread = threading.Thread(target=self._sender, name=f"s3-upload-{self.key}", daemon=True)
            self._thread.start()
        elif time.monotonic() - self._record_written > HEARTBEAT:
            self._write_record()
        self._next_number += 1
        if self._next_number > MAX_PARTS:
            raise StorageError(f"{self.storage.url}: {self.key} is larger than {MAX_PARTS} parts; raise part_size",
                               hint=f"part_size is {self.part_size} bytes; parts double every {DOUBLE_EVERY}")
        self._queue.put((self._next_number, data))

    def _write_record(self) -> None:
        """Say which upload this is and who runs it (again: a heartbeat); see the module docstring."""
        body = json.dumps({"key": self.key, "upload_id": self._upload_id,
                           "owner": owners.this_process().as_dict()}).encode()
        try:
            self.storage.client.put_object(Bucket=self.storage.bucket, Key=self._record_key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise self.storage.error("cannot write", self.key, exc) from None
        self._record_written = time.monotonic()

    def _remove_record(self) -> None:
        """Best effort: a record left behind is removed by a later clean-up."""
        if self._record_written is not None:
            try:
                self.storage.client.delete_object(Bucket=self.storage.bucket, Key=self._record_key)
            except (ClientError, BotoCoreError):
                pass

    def _empty_buffer(self) -> bytearray:
        """A buffer for the next part: a new one while fewer than BUFFERS exist, else
        the next the sender frees (replaced by a larger one when parts grow)."""
        size = part_size_for(self._next_number + 1, self.part_size)
        if self._allocated < self.BUFFERS:
            self._allocated += 1
            return bytearray(size)
        while True:
            self._raise_failure()
            try:
                buffer = self._free.get(timeout=0.5)
            except queue.Empty:
                continue
            return buffer if len(buffer) == size else bytearray(size)

    def write(self, data: bytes) -> None:
        self._raise_failure()
        view = memoryview(data)
        self.size += len(view)
        while len(view):
            if self._part is None:
                self._part, self._fill = self._empty_buffer(), 0
            n = min(len(view), len(self._part) - self._fill)
            self._part[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == len(self._part):
                part, self._part = self._part, None
                self._send_part(part)

    def _take_rest(self) -> bytearray:
        """The part being filled, cut to what was written (its buffer is not reused)."""
        part = self._part if self._part is not None else bytearray()
        del part[self._fill:]
        self._part, self._fill = None, 0
        return part

    def _finish_sender(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _commit(self) -> ObjectInfo:
        client, bucket = self.storage.client, self.storage.bucket
        if self._upload_id is None:
            self.storage.put_whole(self.key, self._take_rest())
        else:
            if self._fill:
                self._send_part(self._take_rest())
            self._finish_sender()
            self._raise_failure()
            parts = sorted(self._parts, key=lambda p: p["PartNumber"])
            try:
                client.complete_multipart_upload(Bucket=bucket, Key=self.s3_key, UploadId=self._upload_id,
                                                 MultipartUpload={"Parts": parts})
            except (ClientError, BotoCoreError) as exc:
                raise self.storage.error("cannot write", self.key, exc) from None
            self._remove_record()
        return ObjectInfo(self.key, self.size, datetime.now(timezone.utc))

    def _abort(self) -> None:
        self._take_rest()
        if self._thread is not None:
            self._failure = self._failure or StorageError("aborted")
            # Drain so the sender sees the stop marker promptly.
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._finish_sender()
        if self._upload_id is not None:
            self.storage.client.abort_multipart_upload(Bucket=self.storage.bucket, Key=self.s3_key,
                                                       UploadId=self._upload_id)
            # Only now: while the upload exists, its record tells a clean-up whose it is.
            self._remove_record()
