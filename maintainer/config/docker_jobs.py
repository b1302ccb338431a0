"""The options of the Docker job types: prune, image updates, image backups."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from maintainer.config.jobbase import JobBase, Retention, Strict
from maintainer.config.types import Duration, Name
from maintainer.errors import ConfigError
from maintainer.imageref import parse_ref


def parse_percent(value) -> float:
    """``15%`` or ``15`` -> 15.0; ValueError outside (0, 100)."""
    text = str(value).strip()
    try:
        number = float(text.removesuffix("%").strip())
    except ValueError:
        raise ValueError(f"'{value}' is not a percentage such as 15%") from None
    if not 0 < number < 100:
        raise ValueError(f"'{value}' must be between 0% and 100%")
    return number


class PruneContainers(Strict):
    enabled: bool = Field(True, description="remove stopped containers")
    older_than: Duration = Field(timedelta(hours=24), description="only containers stopped at least this long")


class PruneToggle(Strict):
    enabled: bool = Field(True, description="remove this kind of object")


class PruneAged(Strict):
    enabled: bool = Field(True, description="remove this kind of object")
    older_than: Duration = Field(timedelta(days=7), description=(
        "only objects at least this old: images since they were created, build cache since it was last used"))


class PruneVolumes(Strict):
    enabled: bool = Field(False, description="volumes are never pruned unless this is true")
    anonymous_only: bool = Field(True, description="only volumes with generated (64-hex) names")
    protect_label: str = Field("maintainer.protect", description=(
        "objects (volumes, and containers, images and networks too) labelled LABEL=true are never removed"))
    protected_patterns: list[str] = Field(default_factory=list, description="glob patterns of volume names never removed")
    stateful_projects: list[str] = Field(default_factory=list, description="compose projects whose volumes and containers are never removed")


class DockerPruneJob(JobBase):
    """Remove unused Docker objects by plan; volumes only when enabled, never a used or protected one."""

    type: Literal["docker_prune"]
    containers: PruneContainers = Field(default_factory=PruneContainers, description="stopped containers")
    dangling_images: PruneToggle = Field(default_factory=PruneToggle, description="images without a tag that no container uses")
    unused_images: PruneAged = Field(default_factory=lambda: PruneAged(older_than=timedelta(days=14)), description=(
        "tagged images that no container uses and no image_update job lists"))
    networks: PruneToggle = Field(default_factory=PruneToggle,
                                  description="networks no container (running or stopped) is attached to")
    build_cache: PruneAged = Field(default_factory=PruneAged, description="build cache no running build uses")
    volumes: PruneVolumes = Field(default_factory=PruneVolumes, description=(
        "volumes no container uses; pruned only when enabled, never a protected one"))
    label_filter: list[str] = Field(default_factory=list, description=(
        "only objects carrying all these labels (KEY or KEY=VALUE) are candidates, e.g. "
        "com.docker.compose.project=myapp; build cache has no labels and is skipped when set"))
    when_free_below: str | None = Field(None, description=(
        "the daemon also runs this prune early, once per episode, when the watched filesystem has less "
        "free space than this (e.g. 15%); /health fails while it is below"))
    watch_path: str | None = Field(None, description=(
        "the filesystem to watch for when_free_below (default: the engine's Docker root directory, "
        "which must then be visible at the same path here)"))

    @field_validator("when_free_below", mode="before")
    @classmethod
    def _percent(cls, v):
        return None if v is None else f"{parse_percent(v):g}%"

    @property
    def free_below_percent(self) -> float | None:
        """when_free_below as a number of percent (15.0), None when not set."""
        return None if self.when_free_below is None else parse_percent(self.when_free_below)


class RegistryAuth(Strict):
    """A login to one registry, for pulls and digest checks."""

    username: str = Field(description="the registry user name")
    password: SecretStr = Field(description="the registry password or access token")


class UpdateApply(Strict):
    """Recreate the containers of running services on the new image, safely."""

    services: list[Name] = Field(min_length=1, description=(
        "compose services (label com.docker.compose.service) whose containers are recreated on the new image"))
    project: Name | None = Field(None, description="only containers of this compose project")
    before: list[Name] = Field(default_factory=list, description=(
        "jobs run first, in order (a pg_backup, a restore_drill); if one fails nothing is updated"))
    health_timeout: Duration = Field(timedelta(minutes=2), description=(
        "how long a new container has to become healthy (running, when it has no healthcheck)"))
    rollback: bool = Field(True, description="bring back the previous image when the new one does not become healthy")


class ImageUpdateJob(JobBase):
    """Pull images whose registry digest changed, and report old and new digests."""

    type: Literal["image_update"]
    images: list[str] = Field(min_length=1, description="image references, by tag or tag@digest")
    untag_superseded: bool = Field(True, description="untag the replaced image so the next prune can reclaim it")
    docker_config: str | None = Field(None, description="path of a Docker config.json with registry credentials")
    registries: dict[str, RegistryAuth] = Field(default_factory=dict, description="credentials per registry host")
    apply: UpdateApply | None = Field(None, description=(
        "recreate these services' containers on the new image (not set: only pull and report)"))

    @field_validator("images")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            try:
                parse_ref(ref)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return v


class ImageBackupJob(JobBase):
    """Save the images the deployment runs, by digest, to storage (layers stored once)."""

    type: Literal["image_backup"]
    storage: str = Field(description="a name from the top-level storage section")
    compose_project: Name | None = Field(None, description="save the images of this compose project's containers")
    images: list[str] = Field(default_factory=list, description="image references to save as well")
    retention: Retention = Field(default_factory=Retention, description="which saved sets to keep")
    compression_level: int = Field(3, ge=1, le=19, description="zstd level of stored layers")

    @field_validator("images")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        return ImageUpdateJob._refs(v)

    @model_validator(mode="after")
    def _something_to_save(self) -> "ImageBackupJob":
        if self.compose_project is None and not self.images:
            raise ValueError("set compose_project, images, or both: there is nothing to save")
        return self
