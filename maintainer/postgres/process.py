"""The processes a client tool runs in: a local subprocess, a throwaway container, or docker exec.

Each is a DumpProcess: a byte stream of the tool's stdout, its stderr (kept in a
bounded tail, and handed as it comes to an optional listener), a kill that works
from another thread (a cancel), and ``finish()`` that returns the exit code and
removes whatever was started. Container output is read through the engine's
multiplexed attach stream as it comes, never buffered whole. A process given
``close_docker`` closes that Docker connection when it finishes.
"""

from __future__ import annotations

import collections
import fcntl
import os
import secrets
import signal
import subprocess
import threading
from abc import ABC, abstractmethod
from typing import Callable

from maintainer.dockerapi import docker_errors
from maintainer.errors import DatabaseError
from maintainer.postgres.attach import AttachStream

STDERR_KEEP = 64 * 1024
PIPE_SIZE = 1024 * 1024
LABELS = {"maintainer.role": "pg-client"}


class DumpProcess(ABC):
    """A running client tool. ``read`` its stdout until b''; then ``finish``.

    ``on_stderr`` gets every stderr chunk as it arrives (from the reading thread,
    or for a local process from its stderr thread)."""

    def __init__(self, on_stderr: Callable[[bytes], None] | None = None) -> None:
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_len = 0
        self._on_stderr_chunk = on_stderr
        self.killed = False

    def _add_stderr(self, data: bytes) -> None:
        if self._on_stderr_chunk is not None:
            self._on_stderr_chunk(data)
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

    def terminate(self) -> None:
        """Ask the tool to stop (SIGTERM), so it can finish what it holds; ``kill`` if it
        cannot be asked. Safe from any thread."""
        self.kill()

    @abstractmethod
    def finish(self) -> int:
        """Wait for the exit code and remove what was started (always call this)."""


class LocalProcess(DumpProcess):
    """A local subprocess. With ``new_session`` it leads a process group of its own,
    and ``kill``/``terminate`` signal the whole group (a shell and what it started)."""

    def __init__(self, argv: list[str], env: dict[str, str], on_stderr: Callable[[bytes], None] | None = None,
                 *, new_session: bool = False):
        super().__init__(on_stderr)
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.group = new_session
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env={**base, **env}, bufsize=0,
                                         start_new_session=new_session)
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
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        try:
            if self.group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
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
        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError, ValueError):
        pass


def remove_container(api, container_id: str) -> None:
    """Force-remove a container with its volumes and wait (bounded) until the engine
    says it is gone; safe from any thread, for a container that is already gone too."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    import docker.errors

    for _ in range(100):
        try:
            api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            return
        except Exception:  # noqa: BLE001 - "removal in progress", or the engine is busy
            pass
        try:
            api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        except Exception:  # noqa: BLE001 - the engine is gone: nothing more we can do
            return
        threading.Event().wait(0.2)


def _create(api, name: str, image: str, argv: list[str], env: dict[str, str], network: str | None) -> str:
    """Create (not start) a labelled client container running ``argv``; its id."""
    host_config = api.create_host_config(network_mode=network) if network else api.create_host_config()
    return api.create_container(image, command=argv[1:], entrypoint=[argv[0]], environment=env,
                                host_config=host_config, labels=LABELS, name=name, stdin_open=False, tty=False)["Id"]


def _close_quietly(docker_client) -> None:
    try:
        docker_client.close()
    except Exception:  # noqa: BLE001 - a connection that will not close is no reason to fail
        pass


class ContainerProcess(DumpProcess):
    """A throwaway container running the tool; stdout streamed through the attach socket."""

    def __init__(self, docker_client, image: str, argv: list[str], env: dict[str, str], network: str | None,
                 on_stderr: Callable[[bytes], None] | None = None, *, close_docker: bool = False):
        super().__init__(on_stderr)
        self.docker_client = docker_client if close_docker else None
        self.api = docker_client.api
        self.name = f"maintainer-pgclient-{secrets.token_hex(4)}"
        self.id: str | None = None
        self._remove_lock = threading.Lock()
        try:
            with docker_errors(f"start {argv[0]} in a container of {image}"):
                self.id = _create(self.api, self.name, image, argv, env, network)
                sock = self.api.attach_socket(self.id, params={"stdout": 1, "stderr": 1, "stream": 1})
                self.stream = AttachStream(sock, self._add_stderr)
                self.api.start(self.id)
        except BaseException:
            self._remove()
            self._close_docker()
            raise

    def read(self, n: int) -> bytes:
        return self.stream.read(n)

    def kill(self) -> None:
        # Close our end of the attach stream first: the engine cannot remove a
        # container while its output is stuck on a stream nobody reads.
        self.killed = True
        self.stream.close()
        self._remove()

    def terminate(self) -> None:
        try:
            self.api.kill(self.id, signal="SIGTERM")
        except Exception:  # noqa: BLE001 - it ended already; finish() removes it
            pass

    def _remove(self) -> None:
        if self.id is None:
            return
        with self._remove_lock:
            remove_container(self.api, self.id)

    def _close_docker(self) -> None:
        if self.docker_client is not None:
            _close_quietly(self.docker_client)

    def finish(self) -> int:
        try:
            self.stream.close()
            if self.killed:
                return -9
            with docker_errors(f"wait for container {self.name}"):
                return int(self.api.wait(self.id, timeout=60).get("StatusCode", -1))
        finally:
            self._remove()
            self._close_docker()


class ExecProcess(DumpProcess):
    """The tool run by ``docker exec`` in a running container (the database's own,
    or a client's workspace), as ``user`` (default: the container's)."""

    MARK = "maintainer-pid:"

    def __init__(self, docker_client, container: str, argv: list[str], env: dict[str, str],
                 on_stderr: Callable[[bytes], None] | None = None, *, user: str | None = None,
                 close_docker: bool = False):
        super().__init__(on_stderr)
        self.docker_client = docker_client if close_docker else None
        self.api = docker_client.api
        self.container = container
        self.pid: str | None = None
        self._stderr_head = b""
        script = f'echo "{self.MARK}$$" >&2; exec "$@"'
        try:
            with docker_errors(f"docker exec {argv[0]} in container {container}"):
                self.exec_id = self.api.exec_create(container, ["sh", "-c", script, "sh", *argv], environment=env,
                                                    stdout=True, stderr=True, user=user or "")["Id"]
                sock = self.api.exec_start(self.exec_id, socket=True)
        except BaseException:
            self._close_docker()
            raise
        self.stream = AttachStream(sock, self._on_stderr)

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

    def terminate(self) -> None:
        if self.pid and self.pid.isdigit():
            try:
                self.api.exec_start(self.api.exec_create(self.container, ["kill", "-TERM", self.pid])["Id"])
                return
            except Exception:  # noqa: BLE001 - the container or process is gone already
                pass
        self.kill()

    def _close_docker(self) -> None:
        if self.docker_client is not None:
            _close_quietly(self.docker_client)

    def finish(self) -> int:
        self.stream.close()
        try:
            with docker_errors(f"inspect docker exec in {self.container}"):
                pause = 0.01
                for _ in range(150):  # the exit code lags the stream's end by a moment
                    info = self.api.exec_inspect(self.exec_id)
                    if not info.get("Running"):
                        code = info.get("ExitCode")
                        return -1 if code is None else int(code)
                    threading.Event().wait(pause)
                    pause = min(pause * 2, 0.1)
            return -1
        finally:
            self._close_docker()


class Workspace:
    """A throwaway container of a client image that only sleeps, so that files can
    be copied into it and tools run beside them by ``docker exec`` (a container
    client's pg_restore reads its dump there). Labelled like every client
    container; ``remove`` (idempotent, any thread) takes it with its volumes and,
    given ``close_docker``, closes its Docker connection."""

    def __init__(self, docker_client, image: str, network: str | None, *, close_docker: bool = False):
        self.docker_client = docker_client
        self.close_docker = close_docker
        self.api = docker_client.api
        self.name = f"maintainer-pgclient-{secrets.token_hex(4)}"
        self.id: str | None = None
        self._lock = threading.Lock()
        try:
            with docker_errors(f"start a client container of {image}"):
                # Sleeps until removed; a restore may take many hours.
                self.id = _create(self.api, self.name, image, ["sleep", "2147483647"], {}, network)
                self.api.start(self.id)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        with self._lock:
            if self.id is not None:
                remove_container(self.api, self.id)
                self.id = None
            if self.close_docker:
                self.close_docker = False
                _close_quietly(self.docker_client)
