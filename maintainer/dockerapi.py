"""The one way maintainer reaches the Docker engine, with errors made clear.

``connect()`` returns a docker SDK client or raises DockerError naming the
socket and what is wrong (missing, no permission, engine down).
``docker_errors(action)`` turns SDK exceptions inside a block into DockerError.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import time
from typing import Iterable, Iterator

from maintainer.errors import DockerError

# The label Docker Compose puts on every container, volume and network of a project.
COMPOSE_PROJECT = "com.docker.compose.project"


def _socket_path(base_url: str) -> str | None:
    for scheme in ("unix://", "unix:"):
        if base_url.startswith(scheme):
            return base_url[len(scheme):] or None
    return None


def connect(base_url: str | None = None, timeout: int = 120):
    """A docker.DockerClient for $DOCKER_HOST or the default socket; DockerError otherwise."""
    import docker
    from docker.errors import DockerException

    base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    sock = _socket_path(base_url)
    if sock is not None:
        if not os.path.exists(sock):
            raise DockerError(f"Docker socket {sock} does not exist",
                              hint="mount it: -v /var/run/docker.sock:/var/run/docker.sock, or set DOCKER_HOST")
        if not os.access(sock, os.R_OK | os.W_OK):
            raise DockerError(f"no permission to use the Docker socket {sock}",
                              hint="run with the socket's group (docker run --group-add $(stat -c %g /var/run/docker.sock))")
    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except DockerException as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise DockerError(f"no permission to use the Docker socket {sock or base_url}",
                              hint="run with the socket's group, or as a member of the docker group") from None
        raise DockerError(f"cannot reach the Docker engine at {base_url}: {_first_line(text)}") from None
    return client


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


@contextlib.contextmanager
def docker_errors(action: str) -> Iterator[None]:
    """Raise DockerError("<action>: <reason>") for any docker SDK or connection failure."""
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError, ReadTimeout

    try:
        yield
    except (ImageNotFound, NotFound) as exc:
        raise DockerError(f"{action}: not found: {error_line(exc)}") from None
    except APIError as exc:
        raise DockerError(f"{action}: {error_line(exc)}") from None
    except (RequestsConnectionError, ReadTimeout) as exc:
        raise DockerError(f"{action}: lost the Docker engine: {_first_line(str(exc))}") from None
    except DockerException as exc:
        raise DockerError(f"{action}: {_first_line(str(exc))}") from None


def error_line(exc: BaseException) -> str:
    """The first line of a Docker SDK error's explanation (the engine's own words),
    or of the error itself; the exception's type when both are empty."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return _first_line(str(explanation or exc)) or type(exc).__name__


def tar_stream(entries: Iterable[tuple[str, int, Iterable[bytes] | None]]) -> Iterator[bytes]:
    """A tar archive for ``put_archive``, produced as it is sent, never held whole.

    Each entry is ``(name, size, chunks)``: a file whose chunks add up to exactly
    ``size`` bytes (JobError otherwise), or, with ``chunks`` None, a directory.
    """
    from maintainer.errors import JobError

    now = int(time.time())
    for name, size, chunks in entries:
        info = tarfile.TarInfo(name)
        info.mtime = now
        if chunks is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(format=tarfile.GNU_FORMAT)
            continue
        info.size, info.mode = size, 0o644
        yield info.tobuf(format=tarfile.GNU_FORMAT)
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            if sent > size:
                raise JobError(f"{name}: more data than the {size} bytes announced")
            yield chunk
        if sent != size:
            raise JobError(f"{name}: {sent} bytes instead of the {size} announced")
        yield b"\0" * ((-size) % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)
