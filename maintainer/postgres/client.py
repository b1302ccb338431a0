"""Which pg_dump to run, and running it: locally, in a throwaway container, or by docker exec.

A dump is never made with a client older than the server. ``choose_client``
reads the server's major version and picks, per ``client.mode``:

- ``local``: the newest local pg_dump (PATH, /usr/lib/postgresql/*/bin) if it is new enough;
- ``container``: a throwaway container of ``client.image`` ("postgres:{major}") on
  ``client.network``, removed afterwards whatever happens;
- ``exec``: ``docker exec`` into the database container ``client.container``;
- ``auto``: local if new enough, else container, else exec (when a container is named).

Every started process is a DumpProcess: a byte stream of its stdout, a kill
that works from another thread, and ``finish()`` that returns the exit code and
stderr and removes whatever was started. Passwords travel in the environment.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import secrets
import shutil
import struct
import subprocess
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache

from maintainer.config.models import DatabaseSpec
from maintainer.dockerapi import docker_errors
from maintainer.errors import DatabaseError, DockerError, JobError
from maintainer.postgres.connection import ServerVersion

STDERR_KEEP = 64 * 1024
PIPE_SIZE = 1024 * 1024
LABELS = {"maintainer.role": "pg-client"}


def _parse_version(text: str) -> tuple[int, str] | None:
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text) or re.search(r"(\d+)\.(\d+)", text)
    if not m:
        return None
    major = int(m.group(1))
    return major, f"{m.group(1)}.{m.group(2)}" if m.group(2) else m.group(1)


@lru_cache(maxsize=8)
def local_clients(tool: str = "pg_dump") -> tuple[tuple[int, str, str], ...]:
    """(major, version, path) of every local ``tool`` found, newest first."""
    paths = []
    if found := shutil.which(tool):
        paths.append(found)
    paths += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    paths += sorted(glob.glob(f"/usr/pgsql-*/bin/{tool}")) + [f"/usr/local/pgsql/bin/{tool}"]
    seen, out = set(), []
    for path in paths:
        real = os.path.realpath(path)
        if real in seen or not os.access(path, os.X_OK):
            continue
        seen.add(real)
        try:
            text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if parsed := _parse_version(text):
            out.append((parsed[0], parsed[1], path))
    out.sort(key=lambda c: c[0], reverse=True)
    return tuple(out)


# ------------------------------------------------------------------ processes


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


# ------------------------------------------------------------------ clients


@dataclass
class Client:
    """A pg_dump/pg_dumpall of a known version, and where and how it runs."""

    kind: str  # local | container | exec
    version: str
    major: int
    spec: DatabaseSpec
    path_dir: str | None = None  # local: directory of the binaries
    image: str | None = None
    network: str | None = None
    container: str | None = None
    docker_client: object | None = None

    @property
    def description(self) -> str:
        return {"local": "local", "container": f"container:{self.image}", "exec": f"exec:{self.container}"}[self.kind]

    def target(self) -> tuple[str, int]:
        """Host and port of the server as this client sees it."""
        c = self.spec.client
        if self.kind == "exec":
            return c.host or "127.0.0.1", c.port or 5432
        if self.kind == "container":
            return c.host or self.spec.host, c.port or self.spec.port
        return self.spec.host, self.spec.port

    def connection_args(self, dbname: str) -> list[str]:
        host, port = self.target()
        return ["--host", host, "--port", str(port), "--username", self.spec.user, "--no-password", "--dbname", dbname]

    def start(self, tool: str, args: list[str], env: dict[str, str]) -> DumpProcess:
        if self.kind == "local":
            exe = os.path.join(self.path_dir, tool) if self.path_dir else tool
            return LocalProcess([exe, *args], env)
        if self.kind == "container":
            return ContainerProcess(self.docker_client, self.image, [tool, *args], env, self.network)
        return ExecProcess(self.docker_client, self.container, [tool, *args], env)


def _docker():
    from maintainer.dockerapi import connect

    return connect()


def _image_client_version(docker_client, image: str) -> tuple[int, str]:
    import docker.errors

    with docker_errors(f"use image {image}"):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            docker_client.images.pull(image)
        out = docker_client.containers.run(image, ["--version"], entrypoint=["pg_dump"], remove=True,
                                           labels=LABELS, stdout=True, stderr=True)
    parsed = _parse_version(out.decode(errors="replace"))
    if not parsed:
        raise DockerError(f"image {image}: pg_dump --version said nothing usable")
    return parsed


def _exec_client_version(docker_client, container: str) -> tuple[int, str]:
    with docker_errors(f"docker exec pg_dump --version in container {container}"):
        result = docker_client.containers.get(container).exec_run(["pg_dump", "--version"])
    parsed = _parse_version(result.output.decode(errors="replace")) if result.exit_code == 0 else None
    if not parsed:
        raise DockerError(f"container {container}: pg_dump --version failed: {result.output.decode(errors='replace').strip()[:200]}")
    return parsed


def choose_client(spec: DatabaseSpec, name: str, server: ServerVersion) -> Client:
    """A client at least as new as the server, per ``spec.client.mode``; JobError
    naming the versions found and what to configure when there is none."""
    mode = spec.client.mode
    need = server.major
    tried: list[str] = []

    if mode in ("auto", "local"):
        locals_ = local_clients("pg_dump")
        usable = [c for c in locals_ if c[0] >= need]
        if usable:
            exact = [c for c in usable if c[0] == need]
            major, version, path = (exact or usable)[0]
            return Client("local", version, major, spec, path_dir=os.path.dirname(path))
        tried.append("local pg_dump " + (", ".join(v for _, v, _ in locals_) if locals_ else "not installed"))

    if mode in ("auto", "container"):
        image = spec.client.image.replace("{major}", str(need))
        try:
            docker_client = _docker()
            major, version = _image_client_version(docker_client, image)
            if major >= need:
                return Client("container", version, major, spec, image=image, network=spec.client.network,
                              docker_client=docker_client)
            tried.append(f"pg_dump {version} in image {image}")
        except DockerError as exc:
            tried.append(f"container client unavailable ({exc.message})")

    if mode == "exec" or (mode == "auto" and spec.client.container):
        if not spec.client.container:
            raise JobError(f"database {name}: client.mode is exec but client.container is not set",
                           hint=f"set databases.{name}.client.container to the database's container name")
        try:
            docker_client = _docker()
            major, version = _exec_client_version(docker_client, spec.client.container)
            if major >= need:
                return Client("exec", version, major, spec, container=spec.client.container, docker_client=docker_client)
            tried.append(f"pg_dump {version} in container {spec.client.container}")
        except DockerError as exc:
            tried.append(f"exec client unavailable ({exc.message})")

    advice = {
        "local": f"install pg_dump {need} or set databases.{name}.client.mode to container (with client.image and client.network) or exec (with client.container)",
        "container": f"set databases.{name}.client.image to an image with pg_dump {need} or newer",
        "exec": f"set databases.{name}.client.container to a container with pg_dump {need} or newer",
        "auto": f"set databases.{name}.client.image/network (container) or client.container (exec), or install pg_dump {need}",
    }[mode]
    raise JobError(f"database {name}: server is PostgreSQL {server.text} but no pg_dump {need} or newer was found "
                   f"({'; '.join(tried)}): {advice}")
