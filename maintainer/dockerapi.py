"""The one way maintainer reaches the Docker engine, with errors made clear.

``connect()`` returns a docker SDK client or raises DockerError naming the
socket and what is wrong (missing, no permission, engine down).
``docker_errors(action)`` turns SDK exceptions inside a block into DockerError.

Every docker client maintainer makes comes from ``connect()``, which honours
the standard environment: ``DOCKER_HOST`` (``unix:///path``, or
``tcp://host:port`` for a socket proxy that allows only the API sections
maintainer uses, see docs/daemon.md), ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import time
from typing import Iterable, Iterator
from urllib.parse import urlsplit

from maintainer.errors import DockerError, JobError

# The label Docker Compose puts on every container, volume and network of a project.
COMPOSE_PROJECT = "com.docker.compose.project"


def _socket_path(base_url: str) -> str | None:
    for scheme in ("unix://", "unix:"):
        if base_url.startswith(scheme):
            return base_url[len(scheme):] or None
    return None


DEFAULT_HOST = "unix:///var/run/docker.sock"


def docker_host() -> str:
    """Where the engine is: $DOCKER_HOST, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def connect(base_url: str | None = None, timeout: int = 120):
    """A docker.DockerClient for ``base_url``, else $DOCKER_HOST (with
    $DOCKER_TLS_VERIFY and $DOCKER_CERT_PATH), else the default socket.

    Raises DockerError naming the address when the socket is missing or not
    ours to use, the engine does not answer, or a proxy refuses the ping.
    """
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    import docker
    from docker.errors import APIError, DockerException
    from docker.utils import kwargs_from_env

    tls = False
    if base_url is None:
        try:
            tls = kwargs_from_env().get("tls") or False
        except DockerException as exc:  # DOCKER_CERT_PATH without its files, for example
            raise DockerError(f"the Docker TLS settings are not usable: {_first_line(str(exc))}") from None
    base_url = base_url or docker_host()
    sock = _socket_path(base_url)
    if sock is not None:
        if not os.path.exists(sock):
            raise DockerError(f"Docker socket {sock} does not exist",
                              hint="mount it: -v /var/run/docker.sock:/var/run/docker.sock, or set DOCKER_HOST")
        if not os.access(sock, os.R_OK | os.W_OK):
            raise DockerError(f"no permission to use the Docker socket {sock}",
                              hint="run with the socket's group (docker run --group-add $(stat -c %g /var/run/docker.sock))")
    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout, tls=tls)
        client.ping()
    except APIError as exc:
        raise DockerError(f"connect to the Docker engine: {refused(exc, base_url) or error_line(exc)}") from None
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
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    try:
        yield
    except (ImageNotFound, NotFound) as exc:
        raise DockerError(f"{action}: not found: {error_line(exc)}") from None
    except APIError as exc:
        raise DockerError(f"{action}: {refused(exc) or error_line(exc)}") from None
    except (RequestsConnectionError, ReadTimeout) as exc:
        raise DockerError(f"{action}: lost the Docker engine: {_first_line(str(exc))}") from None
    except DockerException as exc:
        raise DockerError(f"{action}: {_first_line(str(exc))}") from None


def refused(exc: BaseException, host: str | None = None) -> str | None:
    """For an HTTP 403 (what a socket proxy answers for an API section it does not
    allow): one line naming the request and what to change; None otherwise.
    The message is whole by itself, because a job records messages, not hints."""
    if getattr(exc, "status_code", None) != 403:
        return None
    request = getattr(getattr(exc, "response", None), "request", None)
    what = f"{request.method} {urlsplit(request.url).path}" if request is not None else "the request"
    explanation = error_line(exc)
    detail = "" if "<" in explanation else f": {explanation}"
    return (f"the Docker API at {host or docker_host()} refused {what} (HTTP 403{detail}); behind a socket proxy, "
            "allow that API section (docs/daemon.md lists what each job uses)")


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
