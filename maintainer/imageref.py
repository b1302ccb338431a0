"""Image references as people write them: ``postgres:15``, ``127.0.0.1:5555/base/x:1``,
``nginx:1.27-alpine@sha256:...``. One parser, used by the config (which validates every reference it holds),
image updates and backups, and prune (which never removes an image an
image_update job lists); it sits beside config in the layers for that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maintainer.errors import ConfigError

DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io, 127.0.0.1:5555, ghcr.io
    repository: str  # library/postgres, base/x
    tag: str
    digest: str | None = None  # pinned sha256:..., when given as tag@digest

    @property
    def name(self) -> str:
        """The repository as the engine shows it in RepoTags: postgres, 127.0.0.1:5555/base/x."""
        if self.registry == DEFAULT_REGISTRY:
            repo = self.repository
            return repo[len("library/"):] if repo.startswith("library/") else repo
        return f"{self.registry}/{self.repository}"

    @property
    def tagged(self) -> str:
        return f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        return self.tagged + (f"@{self.digest}" if self.digest else "")


def parse_ref(text: str) -> ImageRef:
    """Parse an image reference; ConfigError naming it when it is not one."""
    raw = text.strip()
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not _DIGEST.match(digest):
            raise ConfigError(f"image reference '{text}': '{digest}' is not a sha256:<64 hex> digest")
    first, _, rest = raw.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, raw
    repo, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if not tag:
        repo, tag = path, "latest"
    if not repo or not _TAG.match(tag) or repo != repo.lower() or " " in repo:
        raise ConfigError(f"'{text}' is not an image reference such as postgres:15 or registry:5000/name:tag")
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    return ImageRef(registry, repo, tag, digest)


def normalize_tag(tag: str) -> str | None:
    """``postgres:15`` and ``docker.io/library/postgres:15`` -> the same string; None if unparsable."""
    try:
        ref = parse_ref(tag)
    except ConfigError:
        return None
    return f"{ref.registry}/{ref.repository}:{ref.tag}"


def repo_of_digest(repo_digest: str) -> tuple[str | None, str]:
    """``postgres@sha256:..`` -> (normalized repository, digest)."""
    name, _, digest = repo_digest.partition("@")
    try:
        ref = parse_ref(name)
    except ConfigError:
        return None, digest
    return f"{ref.registry}/{ref.repository}", digest
