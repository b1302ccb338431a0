"""Which PostgreSQL client tools exist, and their versions: installed locally, in an image, in a container.

``choose_client`` (see ``client``) compares these with the server's version.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from functools import lru_cache

from maintainer.dockerapi import docker_errors
from maintainer.errors import DockerError
from maintainer.postgres.process import LABELS


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


def image_client_version(docker_client, image: str, tool: str = "pg_dump") -> tuple[int, str]:
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
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


def exec_client_version(docker_client, container: str, tool: str = "pg_dump") -> tuple[int, str]:
    with docker_errors(f"docker exec {tool} --version in container {container}"):
        result = docker_client.containers.get(container).exec_run([tool, "--version"])
    parsed = _parse_version(result.output.decode(errors="replace")) if result.exit_code == 0 else None
    if not parsed:
        raise DockerError(f"container {container}: {tool} --version failed: {result.output.decode(errors='replace').strip()[:200]}")
    return parsed
