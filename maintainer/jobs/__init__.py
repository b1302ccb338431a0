"""The registry from job type (as written in schedules.yaml) to its implementation."""

from __future__ import annotations

from maintainer.jobs.base import Job
from maintainer.jobs.config_snapshot import ConfigSnapshotJob
from maintainer.jobs.docker_prune import DockerPruneJob
from maintainer.jobs.image_update import ImageUpdateJob
from maintainer.jobs.pg_backup import PgBackupJob
from maintainer.jobs.restore_drill import RestoreDrillJob

JOB_TYPES: dict[str, type[Job]] = {
    cls.type_name: cls
    for cls in (PgBackupJob, ConfigSnapshotJob, DockerPruneJob, ImageUpdateJob, RestoreDrillJob)
}

__all__ = ["JOB_TYPES", "Job"]
