"""Which PostgreSQL client tools to run, and where: locally, in a throwaway container, or by docker exec.

A dump is never made (nor restored) with a client older than the server.
``choose_client`` reads the server's major version and picks, per ``client.mode``:

- ``local``: the newest local tool (PATH, /usr/lib/postgresql/*/bin) if it is new enough;
- ``container``: a throwaway container of ``client.image`` ("postgres:{major}") on
  ``client.network``, removed afterwards whatever happens;
- ``exec``: ``docker exec`` into the database container ``client.container``;
- ``auto``: local if new enough, else container, else exec (when a container is named).

Each way is one PgClient class with the same few methods: ``start`` a tool (a
DumpProcess, see ``process``), the server's address as the tool sees it, and
``put_file``/``remove_dir`` for files the tool reads (a restore's dump). Passwords
travel in the environment, never on a command line. A client holds no Docker
connection between calls: each process, copy or workspace opens its own and
closes it when done, so nothing is left open whoever forgets ``close``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from maintainer.config.models import DatabaseSpec
from maintainer.dockerapi import connect as docker_connection
from maintainer.dockerapi import docker_errors, tar_stream
from maintainer.errors import DockerError, JobError
from maintainer.logs import get_logger
from maintainer.postgres.connection import ServerVersion
from maintainer.postgres.process import ContainerProcess, DumpProcess, ExecProcess, LocalProcess, Workspace
from maintainer.postgres.versions import exec_client_version, image_client_version, local_clients

log = get_logger("postgres.client")
StderrListener = Callable[[bytes], None] | None


class PgClient(ABC):
    """pg_dump, pg_dumpall and pg_restore of one version, and where and how they run.

    ``host``/``port`` are the server as the tools see it; ``user`` connects.
    Use as a context manager (or call ``close``) to remove what it keeps running.
    """

    def __init__(self, version: str, major: int, host: str, port: int, user: str):
        self.version = version
        self.major = major
        self.host = host
        self.port = port
        self.user = user

    @property
    @abstractmethod
    def description(self) -> str:
        """Short, for the manifest: "local", "container:IMAGE" or "exec:CONTAINER"."""

    @abstractmethod
    def describe(self, tool: str) -> str:
        """How a plan names ``tool`` run through this client."""

    @property
    @abstractmethod
    def placement(self) -> str:
        """Where ``put_file`` puts files, for a plan ("a temporary file", ...)."""

    def target(self) -> tuple[str, int]:
        """Host and port of the server as this client sees it."""
        return self.host, self.port

    def connection_args(self, dbname: str) -> list[str]:
        host, port = self.target()
        return ["--host", host, "--port", str(port), "--username", self.user, "--no-password", "--dbname", dbname]

    @abstractmethod
    def start(self, tool: str, args: list[str], env: dict[str, str], on_stderr: StderrListener = None) -> DumpProcess:
        """Run ``tool args`` with ``env`` (passwords go here); DatabaseError/DockerError if it cannot start."""

    @abstractmethod
    def make_dir(self, parent: str | None = None) -> str:
        """A fresh private directory name for ``put_file`` (``parent``: a local client's
        place for it, default $TMPDIR; containers use their /tmp)."""

    @abstractmethod
    def put_file(self, directory: str, name: str, size: int, chunks: Iterable[bytes]) -> str:
        """Stream exactly ``size`` bytes into ``directory/name`` where this client's tools
        read files, holding one chunk at a time; the path. An exception from ``chunks``
        (a checksum mismatch, a cancel) propagates and leaves no complete file."""

    @abstractmethod
    def remove_dir(self, directory: str) -> None:
        """Delete ``directory`` and what was put there; best effort, logged, never raises."""

    @abstractmethod
    def start_script(self, script: str, tool: str, args: list[str], env: dict[str, str],
                     on_stderr: StderrListener = None) -> DumpProcess:
        """Run ``sh -c script sh TOOL args`` where this client's tools run (a helper that
        supervises a tool, as the WAL receiver does); ``terminate`` reaches the script."""

    @abstractmethod
    def remove_path(self, proc: DumpProcess, path: str) -> None:
        """Delete ``path`` where ``proc`` (from start_script) runs; DockerError/OSError if it fails."""

    def close(self) -> None:
        """Remove whatever this client still keeps running (idempotent)."""

    def __enter__(self) -> "PgClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Client = PgClient  # the name pg_backup's annotations use


class LocalClient(PgClient):
    """The tools installed on this machine, in ``path_dir`` (or on PATH)."""

    def __init__(self, version: str, major: int, host: str, port: int, user: str, path_dir: str | None = None):
        super().__init__(version, major, host, port, user)
        self.path_dir = path_dir

    description = "local"
    placement = "a temporary file"

    def describe(self, tool: str) -> str:
        return f"local {tool} {self.version}"

    def start(self, tool, args, env, on_stderr=None):
        exe = os.path.join(self.path_dir, tool) if self.path_dir else tool
        return LocalProcess([*_stdout_buffer(), exe, *args], env, on_stderr)

    def start_script(self, script, tool, args, env, on_stderr=None):
        exe = os.path.join(self.path_dir, tool) if self.path_dir else tool
        return LocalProcess(["sh", "-c", script, "sh", exe, *args], env, on_stderr, new_session=True)

    def remove_path(self, proc, path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def make_dir(self, parent=None):
        return tempfile.mkdtemp(prefix="maintainer-restore-", dir=parent)

    def put_file(self, directory, name, size, chunks):
        path = os.path.join(directory, name)
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        return path

    def remove_dir(self, directory):
        shutil.rmtree(directory, ignore_errors=True)


class _DockerClient(PgClient):
    """What the container and exec clients share: files copied in as a tar stream."""

    def __init__(self, version: str, major: int, host: str, port: int, user: str, docker_client=None):
        super().__init__(version, major, host, port, user)
        self._borrowed = docker_client  # used as is and left open; else one connection per call

    @contextlib.contextmanager
    def _docker(self) -> Iterator[object]:
        if self._borrowed is not None:
            yield self._borrowed
            return
        docker_client = docker_connection()
        try:
            yield docker_client
        finally:
            docker_client.close()

    def _connection(self) -> tuple[object, bool]:
        """A Docker connection for a new process or workspace, and whether that one closes it."""
        if self._borrowed is not None:
            return self._borrowed, False
        return docker_connection(), True

    def make_dir(self, parent=None):
        return f"/tmp/maintainer-restore-{secrets.token_hex(4)}"

    def _remove_in(self, container: str, path: str) -> None:
        with self._docker() as docker_client, docker_errors(f"remove {path} in container {container}"):
            api = docker_client.api
            api.exec_start(api.exec_create(container, ["rm", "-f", path], user="root")["Id"])

    def _copy_into(self, docker_client, container: str, directory: str, name: str, size: int,
                   chunks: Iterable[bytes]) -> str:
        return copy_into(docker_client, container, directory, name, size, chunks, where=self.placement)


class ContainerClient(_DockerClient):
    """Each tool in a throwaway container of ``image`` on ``network``, removed when it
    ends. Once a file is put, a workspace container holds it and the tools run
    beside it by docker exec until ``remove_dir``/``close`` removes it."""

    def __init__(self, version: str, major: int, host: str, port: int, user: str, image: str,
                 network: str | None, docker_client=None):
        super().__init__(version, major, host, port, user, docker_client)
        self.image = image
        self.network = network
        self._workspace: Workspace | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"container:{self.image}"

    placement = "the pg_restore container (removed afterwards)"

    def start_script(self, script, tool, args, env, on_stderr=None):
        docker_client, owned = self._connection()
        return ContainerProcess(docker_client, self.image, ["sh", "-c", script, "sh", tool, *args], env,
                                self.network, on_stderr, close_docker=owned)

    def remove_path(self, proc, path):
        if getattr(proc, "id", None):
            self._remove_in(proc.id, path)

    def describe(self, tool: str) -> str:
        where = f" on network {self.network}" if self.network else ""
        return f"{tool} {self.version} in a throwaway container of {self.image}{where}"

    def start(self, tool, args, env, on_stderr=None):
        docker_client, owned = self._connection()
        if self._workspace is not None and self._workspace.id is not None:
            return ExecProcess(docker_client, self._workspace.id, [tool, *args], env, on_stderr, close_docker=owned)
        return ContainerProcess(docker_client, self.image, [tool, *args], env, self.network, on_stderr,
                                close_docker=owned)

    def put_file(self, directory, name, size, chunks):
        with self._lock:
            if self._workspace is None:
                docker_client, owned = self._connection()
                self._workspace = Workspace(docker_client, self.image, self.network, close_docker=owned)
            workspace = self._workspace
        if workspace.id is None:
            raise DockerError(f"copy {name} into {self.placement}: the container was removed")
        return self._copy_into(workspace.docker_client, workspace.id, directory, name, size, chunks)

    def remove_dir(self, directory):
        self.close()  # the workspace exists only for its files

    def close(self):
        with self._lock:
            workspace, self._workspace = self._workspace, None
        if workspace is not None:
            workspace.remove()


class ExecClient(_DockerClient):
    """Each tool by docker exec in a running container (the database's own, or a
    drill server), as ``run_as`` (default: the container's user)."""

    def __init__(self, version: str, major: int, host: str, port: int, user: str, container: str,
                 docker_client=None, run_as: str | None = None):
        super().__init__(version, major, host, port, user, docker_client)
        self.container = container
        self.run_as = run_as

    @property
    def description(self) -> str:
        return f"exec:{self.container}"

    @property
    def placement(self) -> str:
        return f"the database container {self.container} (deleted afterwards)"

    def describe(self, tool: str) -> str:
        return f"{tool} {self.version} by docker exec in {self.container}"

    def start(self, tool, args, env, on_stderr=None):
        docker_client, owned = self._connection()
        return ExecProcess(docker_client, self.container, [tool, *args], env, on_stderr, user=self.run_as,
                           close_docker=owned)

    def start_script(self, script, tool, args, env, on_stderr=None):
        docker_client, owned = self._connection()
        return ExecProcess(docker_client, self.container, ["sh", "-c", script, "sh", tool, *args], env, on_stderr,
                           user=self.run_as, close_docker=owned)

    def remove_path(self, proc, path):
        self._remove_in(self.container, path)

    def put_file(self, directory, name, size, chunks):
        with self._docker() as docker_client:
            return self._copy_into(docker_client, self.container, directory, name, size, chunks)

    def remove_dir(self, directory):
        """As root: the copy belongs to root whoever the container's user is."""
        try:
            with self._docker() as docker_client:
                api = docker_client.api
                api.exec_start(api.exec_create(self.container, ["rm", "-rf", directory], user="root")["Id"])
        except Exception as exc:  # noqa: BLE001 - the restore's own outcome matters more
            log.warning("client.cleanup_failed", container=self.container, path=directory, error=str(exc))


def copy_into(docker_client, container: str, directory: str, name: str, size: int, chunks: Iterable[bytes], *,
              where: str, make_dir: bool = True) -> str:
    """Stream exactly ``size`` bytes into ``directory/name`` in ``container`` as one tar
    member, never holding the file whole; the path. With ``make_dir`` the archive
    also creates ``directory`` (a fresh one: an existing directory's mode is reset).
    DockerError (``where`` names the container) when the engine refuses."""
    if make_dir:
        parent, base = posixpath.split(directory.rstrip("/"))
        entries = [(base, 0, None), (f"{base}/{name}", size, chunks)]
    else:
        parent, entries = directory, [(name, size, chunks)]
    with docker_errors(f"copy {name} into {where}"):
        ok = docker_client.api.put_archive(container, parent or "/", tar_stream(entries))
    if not ok:
        raise DockerError(f"copy {name} into {where}: refused by the engine")
    return f"{directory.rstrip('/')}/{name}"


@lru_cache(maxsize=1)
def _stdout_buffer() -> tuple[str, ...]:
    """Run a local tool with a 1 MiB stdout buffer (coreutils' stdbuf) where there is one.

    pg_dump writes through stdio, which on a pipe flushes every 4 KiB: 220,000
    writes and as many wake-ups of the reader per GB. With 1 MiB both sides
    make about 900 calls, which cut the pipeline's CPU time by 0.6 s per GB.
    stdbuf execs the tool, so the pid (and a kill) stays the tool's own.
    """
    found = shutil.which("stdbuf")
    return (found, "--output=1M") if found else ()


def _probe_docker(probe: Callable, *args) -> tuple[int, str]:
    """``probe(docker_client, *args)`` on a Docker connection of its own, closed after."""
    docker_client = docker_connection()
    try:
        return probe(docker_client, *args)
    finally:
        docker_client.close()


def choose_client(spec: DatabaseSpec, name: str, server: ServerVersion, tool: str = "pg_dump") -> PgClient:
    """A client at least as new as the server, per ``spec.client.mode``; JobError
    naming the versions found and what to configure when there is none. ``tool``
    is the binary whose version decides (pg_restore for a restore)."""
    mode = spec.client.mode
    need = server.major
    tried: list[str] = []
    c = spec.client

    if mode in ("auto", "local"):
        locals_ = local_clients(tool)
        usable = [found for found in locals_ if found[0] >= need]
        if usable:
            exact = [found for found in usable if found[0] == need]
            major, version, path = (exact or usable)[0]
            return LocalClient(version, major, spec.host, spec.port, spec.user, path_dir=os.path.dirname(path))
        tried.append(f"local {tool} " + (", ".join(v for _, v, _ in locals_) if locals_ else "not installed"))

    if mode in ("auto", "container"):
        image = c.image.replace("{major}", str(need))
        try:
            major, version = _probe_docker(image_client_version, image, tool)
            if major >= need:
                return ContainerClient(version, major, c.host or spec.host, c.port or spec.port, spec.user,
                                       image=image, network=c.network)
            tried.append(f"{tool} {version} in image {image}")
        except DockerError as exc:
            tried.append(f"container client unavailable ({exc.message})")

    if mode == "exec" or (mode == "auto" and c.container):
        if not c.container:
            raise JobError(f"database {name}: client.mode is exec but client.container is not set",
                           hint=f"set databases.{name}.client.container to the database's container name")
        try:
            major, version = _probe_docker(exec_client_version, c.container, tool)
            if major >= need:
                return ExecClient(version, major, c.host or "127.0.0.1", c.port or 5432, spec.user,
                                  container=c.container)
            tried.append(f"{tool} {version} in container {c.container}")
        except DockerError as exc:
            tried.append(f"exec client unavailable ({exc.message})")

    advice = {
        "local": f"install {tool} {need} or set databases.{name}.client.mode to container (with client.image and client.network) or exec (with client.container)",
        "container": f"set databases.{name}.client.image to an image with {tool} {need} or newer",
        "exec": f"set databases.{name}.client.container to a container with {tool} {need} or newer",
        "auto": f"set databases.{name}.client.image/network (container) or client.container (exec), or install {tool} {need}",
    }[mode]
    raise JobError(f"database {name}: server is PostgreSQL {server.text} but no {tool} {need} or newer was found "
                   f"({'; '.join(tried)}): {advice}")
