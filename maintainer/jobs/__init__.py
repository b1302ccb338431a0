"""The registry from job type (as written in schedules.yaml) to its implementation.

A job type's name is written once, in its config model's ``type`` Literal
(``maintainer.config.jobs.JobSpec`` lists the models). Each class here takes
its ``type_name`` from the model it runs, so a name cannot be mistyped; a unit
test checks that every type the schema allows has its implementation here.
"""

from __future__ import annotations

from maintainer.jobs.base import Job
from maintainer.jobs.config_snapshot import ConfigSnapshotJob
from maintainer.jobs.docker_prune import DockerPruneJob
from maintainer.jobs.image_backup import ImageBackupJob
from maintainer.jobs.image_update import ImageUpdateJob
from maintainer.jobs.pg_backup import PgBackupJob
from maintainer.jobs.pg_basebackup import PgBasebackupJob
from maintainer.jobs.restore_drill import RestoreDrillJob
from maintainer.jobs.wal_archive import WalArchiveJob

JOB_TYPES: dict[str, type[Job]] = {
    cls.type_name: cls
    for cls in (PgBackupJob, ConfigSnapshotJob, DockerPruneJob, ImageUpdateJob, RestoreDrillJob,
                ImageBackupJob, WalArchiveJob, PgBasebackupJob)
}

__all__ = ["JOB_TYPES", "Job"]
