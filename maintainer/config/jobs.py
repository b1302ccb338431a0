"""The options of each job type. One model per type; ``type`` picks the model.

Each model's docstring and field descriptions are what the shipped
schedules.yaml comments explain. Adding a job type means adding a model here,
adding it to ``JobSpec`` and registering its implementation in
``maintainer.jobs.JOB_TYPES`` (a test checks the two agree).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from maintainer.config.types import ByteSize, Cron, Duration, ImageTemplate, MaybeEmpty, Name


class Strict(BaseModel):
    # Unknown keys, empty strings and infinite or NaN numbers are mistakes in every
    # section; a field that may be empty says so with MaybeEmpty.
    model_config = ConfigDict(extra="forbid", str_min_length=1, allow_inf_nan=False)


class Retention(Strict):
    """Grandfather-father-son retention, as restic and borg define it.

    A backup is kept when any rule keeps it. The newest backup, and the newest
    backup verified by a restore drill, are always kept.
    """

    keep_last: int = Field(7, ge=0, description="the N newest backups")
    keep_hourly: int = Field(0, ge=0, description="the newest backup of each of the last N hours that have one")
    keep_daily: int = Field(7, ge=0, description="the newest backup of each of the last N days that have one")
    keep_weekly: int = Field(4, ge=0, description="the newest backup of each of the last N ISO weeks that have one")
    keep_monthly: int = Field(6, ge=0, description="the newest backup of each of the last N months that have one")


class JobBase(Strict):
    schedule: Cron = Field(description="when the job runs, a 5-field cron expression in the config's timezone")
    enabled: bool = Field(True, description="a disabled job is validated but never scheduled")
    timeout: Duration | None = Field(None, description="abort the run after this long")
    notify_success: bool | None = Field(None, description="override notify.on_success for this job")


class PgBackupJob(JobBase):
    """Dump PostgreSQL databases (pg_dump custom format, zstd) and their server's roles."""

    type: Literal["pg_backup"]
    databases: list[str] = Field(min_length=1, description="names from the top-level databases section")
    storage: str = Field(description="a name from the top-level storage section")
    compression_level: int = Field(1, ge=1, le=22, description="zstd level (1 is about 3x faster than 3 on dump data and keeps up with pg_dump)")
    compression_threads: int = Field(0, ge=0, le=64, description="zstd worker threads; 0 compresses in the reading thread (least memory); "
                                      "with N threads the dump's zstd frames are 2*N MiB instead of 1 MiB")
    globals: bool = Field(True, description="also store pg_dumpall --globals-only once per server")
    exact_row_counts: bool = Field(True, description="count rows exactly; if false, tables above estimate_rows_above use estimates")
    estimate_rows_above: int = Field(10_000_000, ge=0, description="with exact_row_counts false: estimate tables larger than this")
    suspicious_drop: float = Field(0.5, gt=0, le=1, description="mark a backup suspicious when rows or size fell by more than this fraction")
    retention: Retention = Field(default_factory=Retention)


class PruneContainers(Strict):
    enabled: bool = True
    older_than: Duration = timedelta(hours=24)


class PruneToggle(Strict):
    enabled: bool = True


class PruneAged(Strict):
    enabled: bool = True
    older_than: Duration = timedelta(days=7)


class PruneVolumes(Strict):
    enabled: bool = Field(False, description="volumes are never pruned unless this is true")
    anonymous_only: bool = Field(True, description="only volumes with generated (64-hex) names")
    protect_label: str = Field("maintainer.protect", description="volumes with LABEL=true are never removed")
    protected_patterns: list[str] = Field(default_factory=list, description="glob patterns of volume names never removed")
    stateful_projects: list[str] = Field(default_factory=list, description="compose projects whose volumes and containers are never removed")


class DockerPruneJob(JobBase):
    """Remove unused Docker objects by plan; volumes only when enabled, never a used or protected one."""

    type: Literal["docker_prune"]
    containers: PruneContainers = Field(default_factory=PruneContainers)
    dangling_images: PruneToggle = Field(default_factory=PruneToggle)
    unused_images: PruneAged = Field(default_factory=lambda: PruneAged(older_than=timedelta(days=14)))
    networks: PruneToggle = Field(default_factory=PruneToggle)
    build_cache: PruneAged = Field(default_factory=PruneAged)
    volumes: PruneVolumes = Field(default_factory=PruneVolumes)
    label_filter: list[str] = Field(default_factory=list, description=(
        "only objects carrying all these labels (KEY or KEY=VALUE) are candidates, e.g. "
        "com.docker.compose.project=myapp; build cache has no labels and is skipped when set"))


class RegistryAuth(Strict):
    username: str
    password: SecretStr


class ImageUpdateJob(JobBase):
    """Pull images whose registry digest changed, and report old and new digests."""

    type: Literal["image_update"]
    images: list[str] = Field(min_length=1, description="image references, by tag or tag@digest")
    untag_superseded: bool = Field(True, description="untag the replaced image so the next prune can reclaim it")
    docker_config: str | None = Field(None, description="path of a Docker config.json with registry credentials")
    registries: dict[str, RegistryAuth] = Field(default_factory=dict, description="credentials per registry host")

    @field_validator("images")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        from maintainer.errors import ConfigError
        from maintainer.images.reference import parse_ref

        for ref in v:
            try:
                parse_ref(ref)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return v


DEFAULT_SECRET_PATTERNS = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE", "AUTH", "DSN", "API_KEY"]


class ConfigSnapshotJob(JobBase):
    """Archive compose files, configs and container specs, with secret values masked."""

    type: Literal["config_snapshot"]
    storage: str = Field(description="a name from the top-level storage section")
    paths: list[str] = Field(default_factory=list, description="files and directories to archive")
    exclude: list[str] = Field(default_factory=list, description="glob patterns of paths never archived")
    compose_project: Name | None = Field(None, description="compose project (com.docker.compose.project label) whose containers are described")
    secret_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS),
                                       description="environment names containing any of these are masked")
    retention: Retention = Field(default_factory=Retention)


class RestoreDrillJob(JobBase):
    """Restore the newest backup into a throwaway container and verify it."""

    type: Literal["restore_drill"]
    databases: list[str] = Field(min_length=1, description="names from the top-level databases section")
    storage: str = Field(description="where the backups are (a name from the storage section)")
    backup: str = Field("latest", description="'latest' or a backup id")
    image: ImageTemplate = Field("postgres:{major}", description="image template; {major} is the backup's server major version")
    memory: ByteSize = Field(1024**3, ge=6 * 1024**2, description="memory limit of the drill container (Docker's minimum is 6m)")
    cpus: float = Field(1.0, gt=0, le=1024, description="CPU limit of the drill container")
    parallel_jobs: int = Field(2, ge=1, description="pg_restore --jobs")
    checks_dir: str = Field("restore/checks", description="directory of <database>.sql check files")
    extra_checks: list[str] = Field(default_factory=list, description="more check files run against every database")
    amcheck: bool = Field(False, description="verify all B-tree indexes with amcheck")
    estimate_tolerance: float = Field(0.1, ge=0, le=1, description="allowed relative difference for estimated row counts")
    network: str | None = Field(None, description="docker network for the drill container (default: a private bridge)")
    tmpfs: Literal["auto"] | bool = Field("auto", description=(
        "keep the drill's data directory in memory (counts against memory): true, false, or auto "
        "(when the backup's estimated size fits in the memory limit)"))
    maintenance_work_mem: str = Field("512MB", pattern=r"^\d+(kB|MB|GB)$", description="for index builds during the restore")
    labels: dict[str, MaybeEmpty] = Field(default_factory=dict, description="extra labels on the drill container")


JobSpec = Annotated[
    Union[PgBackupJob, DockerPruneJob, ImageUpdateJob, ConfigSnapshotJob, RestoreDrillJob],
    Field(discriminator="type"),
]

JOB_MODELS = {m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
              for m in (PgBackupJob, DockerPruneJob, ImageUpdateJob, ConfigSnapshotJob, RestoreDrillJob)}
