"""The processes a dump runs in: a local subprocess, a throwaway container, or docker exec.

Each is a DumpProcess: a byte stream of the tool's stdout, a kill that works from
another thread (a cancel), and ``finish()`` that returns the exit code and removes
whatever was started. Container output is read through the engine's multiplexed
attach stream as it comes, never buffered whole.
"""

from __future__ import annotations

import collections
import os
import secrets
import struct
import subprocess
import threading
from abc import ABC, abstractmethod

from maintainer.dockerapi import docker_errors
from maintainer.errors import DatabaseError

STDERR_KEEP = 64 * 1024
PIPE_SIZE = 1024 * 1024
LABELS = {"maintainer.role": "pg-client"}


class DumpProcess(ABC):
    """A running client tool. ``read`` its stdout until b''; then ``finish``."""

    def __init__(self) -> None:
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_len = 0
        self.killed = False

    def _add_stderr(self, data: bytes) -> None:
        self._stderr.append(data)
        self._stderr_len += len(data)
        while self._stderr_len > STDERR_KEEP and len(self._stderr) > 1:
            self._stderr_len -= len(self._stderr.popleft())

    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode(errors="replace").strip()

    @abstractmethod
    def read(self, n: int) -> bytes: ...

    def readinto(self, buffer: memoryview) -> int:
        """Fill the front of ``buffer`` with the next stdout bytes; 0 at the end."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @abstractmethod
    def kill(self) -> None:
        """Stop the tool now; safe to call from any thread, more than once."""

    @abstractmethod
    def finish(self) -> int:
        """Wait for the exit code and remove what was started (always call this)."""


class LocalProcess(DumpProcess):
    def __init__(self, argv: list[str], env: dict[str, str]):
        super().__init__()
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env={**base, **env}, bufsize=0)
        except OSError as exc:
            raise DatabaseError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        _grow_pipe(self.proc.stdout)
        self._stderr_thread = threading.Thread(target=self._drain, daemon=True)
        self._stderr_thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read(8192):
            self._add_stderr(chunk)

    def read(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read(n)

    def readinto(self, buffer: memoryview) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.readinto(buffer) or 0

    def kill(self) -> None:
        self.killed = True
        try:
            self.proc.kill()
        except OSError:
            pass

    def finish(self) -> int:
        if self.proc.stdout:
            self.proc.stdout.close()
        code = self.proc.wait()
        self._stderr_thread.join(timeout=10)
        return code


def _grow_pipe(stream) -> None:
    """Let pg_dump run ahead of us by 1 MiB instead of 64 KiB (Linux only)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError, ValueError):
        pass


class _Multiplexed:
    """Docker's attach/exec stream (8-byte frame headers) as stdout bytes; stderr to a callback."""

    def __init__(self, sock, on_stderr):
        self.sock = sock
        self.on_stderr = on_stderr
        self.remaining = 0
        self.eof = False

    def _raw(self, n: int) -> bytes:
        from docker.utils.socket import read

        try:
            return read(self.sock, n) or b""
        except OSError:
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
        import socket as pysocket

        raw = getattr(self.sock, "_sock", self.sock)
        try:
            raw.shutdown(pysocket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class ContainerProcess(DumpProcess):
    """A throwaway container running the tool; stdout streamed through the attach socket."""

    def __init__(self, docker_client, image: str, argv: list[str], env: dict[str, str], network: str | None):
        super().__init__()
        self.api = docker_client.api
        self.name = f"maintainer-pgclient-{secrets.token_hex(4)}"
        self.id: str | None = None
        self._remove_lock = threading.Lock()
        with docker_errors(f"start {argv[0]} in a container of {image}"):
            host_config = self.api.create_host_config(network_mode=network) if network else self.api.create_host_config()
            self.id = self.api.create_container(
                image, command=argv[1:], entrypoint=[argv[0]], environment=env, host_config=host_config,
                labels=LABELS, name=self.name, stdin_open=False, tty=False)["Id"]
            try:
                sock = self.api.attach_socket(self.id, params={"stdout": 1, "stderr": 1, "stream": 1})
                self.stream = _Multiplexed(sock, self._add_stderr)
                self.api.start(self.id)
            except BaseException:
                self._remove()
                raise

    def read(self, n: int) -> bytes:
        return self.stream.read(n)

    def kill(self) -> None:
        # Close our end of the attach stream first: the engine cannot remove a
        # container while its output is stuck on a stream nobody reads.
        self.killed = True
        self.stream.close()
        self._remove()

    def _remove(self) -> None:
        """Force-remove the container and wait (bounded) until the engine says it is gone."""
        if self.id is None:
            return
        import docker.errors

        with self._remove_lock:
            for _ in range(100):
                try:
                    self.api.remove_container(self.id, force=True, v=True)
                except docker.errors.NotFound:
                    return
                except Exception:  # noqa: BLE001 - "removal in progress", or the engine is busy
                    pass
                try:
                    self.api.inspect_container(self.id)
                except docker.errors.NotFound:
                    return
                except Exception:  # noqa: BLE001 - the engine is gone: nothing more we can do
                    return
                threading.Event().wait(0.2)

    def finish(self) -> int:
        try:
            self.stream.close()
            if self.killed:
                return -9
            with docker_errors(f"wait for container {self.name}"):
                return int(self.api.wait(self.id, timeout=60).get("StatusCode", -1))
        finally:
            self._remove()


class ExecProcess(DumpProcess):
    """The tool run by ``docker exec`` in the database's own container."""

    MARK = "maintainer-pid:"

    def __init__(self, docker_client, container: str, argv: list[str], env: dict[str, str]):
        super().__init__()
        self.api = docker_client.api
        self.container = container
        self.pid: str | None = None
        self._stderr_head = b""
        script = f'echo "{self.MARK}$$" >&2; exec "$@"'
        with docker_errors(f"docker exec {argv[0]} in container {container}"):
            self.exec_id = self.api.exec_create(container, ["sh", "-c", script, "sh", *argv], environment=env,
                                                stdout=True, stderr=True)["Id"]
            sock = self.api.exec_start(self.exec_id, socket=True)
        self.stream = _Multiplexed(sock, self._on_stderr)

    def _on_stderr(self, data: bytes) -> None:
        if self.pid is None:
            self._stderr_head += data
            if b"\n" in self._stderr_head:
                first, _, rest = self._stderr_head.partition(b"\n")
                text = first.decode(errors="replace")
                self.pid = text[len(self.MARK):] if text.startswith(self.MARK) else "?"
                if not text.startswith(self.MARK):
                    self._add_stderr(first + b"\n")
                if rest:
                    self._add_stderr(rest)
            return
        self._add_stderr(data)

    def read(self, n: int) -> bytes:
        return self.stream.read(n)

    def kill(self) -> None:
        self.killed = True
        if self.pid and self.pid.isdigit():
            try:
                self.api.exec_start(self.api.exec_create(self.container, ["kill", "-KILL", self.pid])["Id"])
            except Exception:  # noqa: BLE001 - the container or process is gone already
                pass
        self.stream.close()

    def finish(self) -> int:
        self.stream.close()
        with docker_errors(f"inspect docker exec in {self.container}"):
            for _ in range(100):  # the exit code lags the stream's end by a moment
                info = self.api.exec_inspect(self.exec_id)
                if not info.get("Running"):
                    code = info.get("ExitCode")
                    return -1 if code is None else int(code)
                threading.Event().wait(0.1)
        return -1
