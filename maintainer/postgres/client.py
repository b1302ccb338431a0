"""Which pg_dump to run, and running it: locally, in a throwaway container, or by docker exec.

A dump is never made with a client older than the server. ``choose_client``
reads the server's major version and picks, per ``client.mode``:

- ``local``: the newest local pg_dump (PATH, /usr/lib/postgresql/*/bin) if it is new enough;
- ``container``: a throwaway container of ``client.image`` ("postgres:{major}") on
  ``client.network``, removed afterwards whatever happens;
- ``exec``: ``docker exec`` into the database container ``client.container``;
- ``auto``: local if new enough, else container, else exec (when a container is named).

Every started process is a DumpProcess (see ``process``). Passwords travel in
the environment.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from maintainer.config.models import DatabaseSpec
from maintainer.dockerapi import docker_errors
from maintainer.errors import DockerError, JobError
from maintainer.postgres.connection import ServerVersion
from maintainer.postgres.process import LABELS, ContainerProcess, DumpProcess, ExecProcess, LocalProcess


def _parse_version(text: str) -> tuple[int, str] | None:
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text) or re.search(r"(\d+)\.(\d+)", text)
    if not m:
        return None
    major = int(m.group(1))
    return major, f"{m.group(1)}.{m.group(2)}" if m.group(2) else m.group(1)


@lru_cache(maxsize=8)
def local_clients(tool: str = "pg_dump") -> tuple[tuple[int, str, str], ...]:
    """(major, version, path) of every local ``tool`` found, newest first.

    Versioned installs come before PATH, and Debian's pg_wrapper (the perl
    script /usr/bin/pg_dump points to) is used only when nothing else is
    installed: starting perl first cost 0.15 s per tool run, and the real
    binary's directory also holds the matching pg_dumpall.
    """
    paths = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    paths += sorted(glob.glob(f"/usr/pgsql-*/bin/{tool}")) + [f"/usr/local/pgsql/bin/{tool}"]
    found = shutil.which(tool)
    wrapper = found is not None and os.path.basename(os.path.realpath(found)) == "pg_wrapper"
    out = _probe(paths + ([found] if found and not wrapper else []))
    if not out and found and wrapper:
        out = _probe([found])
    return tuple(sorted(out, key=lambda c: c[0], reverse=True))


def _probe(paths: list[str]) -> list[tuple[int, str, str]]:
    """(major, version, path) of each runnable binary, by its ``--version``."""
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
    return out


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
            return LocalProcess([*_stdout_buffer(), exe, *args], env)
        if self.kind == "container":
            return ContainerProcess(self.docker_client, self.image, [tool, *args], env, self.network)
        return ExecProcess(self.docker_client, self.container, [tool, *args], env)


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


def _docker():
    from maintainer.dockerapi import connect

    return connect()


def _image_client_version(docker_client, image: str, tool: str = "pg_dump") -> tuple[int, str]:
    import docker.errors

    with docker_errors(f"use image {image}"):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            docker_client.images.pull(image)
        out = docker_client.containers.run(image, ["--version"], entrypoint=[tool], remove=True,
                                           labels=LABELS, stdout=True, stderr=True)
    parsed = _parse_version(out.decode(errors="replace"))
    if not parsed:
        raise DockerError(f"image {image}: {tool} --version said nothing usable")
    return parsed


def _exec_client_version(docker_client, container: str, tool: str = "pg_dump") -> tuple[int, str]:
    with docker_errors(f"docker exec {tool} --version in container {container}"):
        result = docker_client.containers.get(container).exec_run([tool, "--version"])
    parsed = _parse_version(result.output.decode(errors="replace")) if result.exit_code == 0 else None
    if not parsed:
        raise DockerError(f"container {container}: {tool} --version failed: {result.output.decode(errors='replace').strip()[:200]}")
    return parsed


def choose_client(spec: DatabaseSpec, name: str, server: ServerVersion, tool: str = "pg_dump") -> Client:
    """A client at least as new as the server, per ``spec.client.mode``; JobError
    naming the versions found and what to configure when there is none. ``tool``
    is the binary whose version decides (pg_restore for a restore)."""
    mode = spec.client.mode
    need = server.major
    tried: list[str] = []

    if mode in ("auto", "local"):
        locals_ = local_clients(tool)
        usable = [c for c in locals_ if c[0] >= need]
        if usable:
            exact = [c for c in usable if c[0] == need]
            major, version, path = (exact or usable)[0]
            return Client("local", version, major, spec, path_dir=os.path.dirname(path))
        tried.append(f"local {tool} " + (", ".join(v for _, v, _ in locals_) if locals_ else "not installed"))

    if mode in ("auto", "container"):
        image = spec.client.image.replace("{major}", str(need))
        try:
            docker_client = _docker()
            major, version = _image_client_version(docker_client, image, tool)
            if major >= need:
                return Client("container", version, major, spec, image=image, network=spec.client.network,
                              docker_client=docker_client)
            tried.append(f"{tool} {version} in image {image}")
        except DockerError as exc:
            tried.append(f"container client unavailable ({exc.message})")

    if mode == "exec" or (mode == "auto" and spec.client.container):
        if not spec.client.container:
            raise JobError(f"database {name}: client.mode is exec but client.container is not set",
                           hint=f"set databases.{name}.client.container to the database's container name")
        try:
            docker_client = _docker()
            major, version = _exec_client_version(docker_client, spec.client.container, tool)
            if major >= need:
                return Client("exec", version, major, spec, container=spec.client.container, docker_client=docker_client)
            tried.append(f"{tool} {version} in container {spec.client.container}")
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
