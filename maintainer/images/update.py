"""Compare an image's registry digest with the local one and pull only when it differs.

Each image is handled on its own: an unknown image, a refused login or an
unreachable registry becomes that image's error (``ImageUpdate.error``), and
the caller goes on with the next image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from maintainer.config.docker_jobs import RegistryAuth
from maintainer.dockerapi import error_line
from maintainer.errors import ConfigError, DockerError
from maintainer.imageref import DEFAULT_REGISTRY, ImageRef, parse_ref, repo_of_digest
from maintainer.logs import get_logger

log = get_logger("images")

PREVIOUS_SUFFIX = "-previous"


@dataclass
class ImageUpdate:
    image: str
    status: str  # current | updated | would_update | failed
    old_digest: str | None = None
    new_digest: str | None = None
    old_id: str | None = None
    new_id: str | None = None
    error: str | None = None
    kept_as: str | None = None  # the tag the superseded image kept (untag_superseded: false)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if self.status == "current":
            return f"{self.image}: up to date ({self.new_digest})"
        if self.status in ("updated", "would_update"):
            verb = "updated" if self.status == "updated" else "would update"
            extra = f"; previous image kept as {self.kept_as}" if self.kept_as else ""
            return f"{self.image}: {verb} {self.old_digest or '(not present locally)'} -> {self.new_digest}{extra}"
        return f"{self.image}: {self.error}"


class Credentials:
    """Registry credentials from the job's ``registries`` section, else from a Docker config file."""

    def __init__(self, registries: Mapping[str, RegistryAuth], docker_config: str | None):
        self._registries = {_host_key(k): v for k, v in registries.items()}
        self._docker_config = None
        if docker_config:
            self._docker_config = _load_docker_config(docker_config)

    def for_ref(self, ref: ImageRef) -> dict | None:
        auth = self._registries.get(_host_key(ref.registry))
        if auth is not None:
            return {"username": auth.username, "password": auth.password.get_secret_value()}
        if self._docker_config is not None:
            # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
            import docker.auth

            found = docker.auth.resolve_authconfig(
                self._docker_config, None if ref.registry == DEFAULT_REGISTRY else ref.registry)
            if found:
                return {k.lower(): v for k, v in found.items() if k.lower() in ("username", "password", "identitytoken")}
        return None


def _host_key(host: str) -> str:
    host = host.removeprefix("https://").removeprefix("http://").split("/")[0]
    return DEFAULT_REGISTRY if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else host


def _load_docker_config(path: str):
    """The Docker config file's auths; an absent file means no credentials (public images)."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    import docker.auth

    p = Path(path)
    if not p.exists():
        log.info("images.no_docker_config", path=path)
        return None
    try:
        json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"docker_config {path}: cannot read it as a Docker config.json "
                          f"({type(exc).__name__})") from None
    return docker.auth.load_config(config_path=str(p))


def _classify(ref: ImageRef, exc: Exception) -> str:
    """One clear line for a registry failure (never credentials)."""
    text = error_line(exc)
    low = text.lower()
    host = ref.registry
    if any(s in low for s in ("connection refused", "no such host", "dial tcp", "i/o timeout", "timeout",
                              "network is unreachable", "tls handshake", "server gave http response")):
        return f"registry {host} unreachable: {text}"
    if any(s in low for s in ("unauthorized", "denied", "authentication required", "forbidden")):
        return f"registry {host} refused access (check its credentials): {text}"
    if any(s in low for s in ("manifest unknown", "not found", "name unknown", "no such", "404")):
        return f"not found in registry {host}: {text}"
    return f"registry {host}: {text}"


def local_image(client, ref: ImageRef) -> tuple[str | None, str | None, list[str]]:
    """(image id, digest in this repository, tags) of the local image ``ref`` names; Nones if absent."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import ImageNotFound, NotFound

    try:
        attrs = client.api.inspect_image(ref.tagged)
    except (ImageNotFound, NotFound):
        return None, None, []
    repo = f"{ref.registry}/{ref.repository}"
    digest = next((d for r, d in map(repo_of_digest, attrs.get("RepoDigests") or []) if r == repo), None)
    return attrs["Id"], digest, list(attrs.get("RepoTags") or [])


def update_image(client, text: str, credentials: Credentials, *, untag_superseded: bool,
                 dry_run: bool = False) -> ImageUpdate:
    """Check one image and pull it when its registry digest differs from the local one."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import APIError, DockerException
    from requests.exceptions import RequestException

    try:
        ref = parse_ref(text)
    except ConfigError as exc:
        return ImageUpdate(text, "failed", error=exc.message)
    update = ImageUpdate(str(ref), "current")
    auth = credentials.for_ref(ref)
    try:
        old_id, old_digest, _ = local_image(client, ref)
        update.old_id, update.old_digest = old_id, old_digest
        if ref.digest:  # pinned: the pin is the wanted digest
            wanted = ref.digest
        else:
            wanted = client.images.get_registry_data(ref.tagged, auth_config=auth).id
        update.new_digest = wanted
        if old_digest == wanted:
            update.new_id = old_id
            return update
        if dry_run:
            update.status = "would_update"
            return update
        if ref.digest:
            client.images.pull(ref.name, tag=ref.digest, auth_config=auth)
            client.api.tag(f"{ref.name}@{ref.digest}", ref.name, ref.tag)
        else:
            client.images.pull(ref.name, tag=ref.tag, auth_config=auth)
        new_id, new_digest, _ = local_image(client, ref)
        update.new_id, update.new_digest = new_id, new_digest or wanted
        update.status = "updated" if new_id != old_id else "current"
        if old_id and new_id != old_id and not untag_superseded:
            update.kept_as = f"{ref.name}:{ref.tag}{PREVIOUS_SUFFIX}"
            client.api.tag(old_id, ref.name, ref.tag + PREVIOUS_SUFFIX, force=True)
        log.info("images.checked", image=str(ref), status=update.status,
                 old_digest=update.old_digest, new_digest=update.new_digest)
        return update
    except (APIError, DockerException, RequestException) as exc:
        update.status, update.error = "failed", _classify(ref, exc)
        log.error("images.failed", image=str(ref), error=update.error)
        return update
    except DockerError as exc:
        update.status, update.error = "failed", exc.message
        return update
