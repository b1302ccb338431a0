"""What every job model shares: strict parsing, the keys every job has, retention.

The models of each area (backups and drills in ``config.jobs``, Docker in
``config.docker_jobs``, continuous archiving in ``config.wal_jobs``) build on
these; ``config.jobs.JobSpec`` joins them.
"""

from __future__ import annotations

from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field

from maintainer.config.types import Cron, Duration


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
    """Keys every job has, whatever its type."""

    # The job type as schedules.yaml spells it, read from the subclass's ``type``
    # Literal so that the name is written once; job implementations refer to it.
    type_name: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        (cls.type_name,) = get_args(cls.model_fields["type"].annotation)

    schedule: Cron = Field(description="when the job runs, a 5-field cron expression in the config's timezone")
    enabled: bool = Field(True, description="a disabled job is validated but never scheduled")
    timeout: Duration | None = Field(None, description="abort the run after this long (not set: no limit)")
    notify_success: bool | None = Field(None, description="override notify.on_success for this job")
