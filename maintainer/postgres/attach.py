"""Docker's attach/exec stream as a byte stream: stdout's bytes in order, stderr to a callback.

The engine multiplexes both onto one socket in frames with an 8-byte header
(stream id, size); this reads them as they come and never buffers a whole
frame of stdout.
"""

from __future__ import annotations

import socket as pysocket
import struct


class AttachStream:
    """Docker's attach/exec stream (8-byte frame headers) as stdout bytes; stderr to a callback."""

    def __init__(self, sock, on_stderr):
        self.sock = sock
        self.on_stderr = on_stderr
        self.remaining = 0
        self.eof = False

    def _raw(self, n: int) -> bytes:
        # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
        from docker.utils.socket import read

        try:
            return read(self.sock, n) or b""
        except (OSError, ValueError):  # ValueError: close() in another thread (a cancel) won the race
            return b""

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            more = self._raw(n - len(data))
            if not more:
                return None
            data += more
        return data

    def read(self, n: int) -> bytes:
        while not self.eof:
            if self.remaining == 0:
                header = self._exactly(8)
                if header is None:
                    self.eof = True
                    break
                stream, size = struct.unpack(">BxxxL", header)
                if stream == 2:
                    data = self._exactly(size)
                    if data is None:
                        self.eof = True
                        break
                    self.on_stderr(data)
                    continue
                self.remaining = size
                if size == 0:
                    continue
            data = self._raw(min(n, self.remaining))
            if not data:
                self.eof = True
                break
            self.remaining -= len(data)
            return data
        return b""

    def close(self) -> None:
        """Shut the connection down (not just drop our reference), so the engine
        stops writing to it and a read blocked in another thread returns."""
        raw = getattr(self.sock, "_sock", self.sock)
        try:
            raw.shutdown(pysocket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass
