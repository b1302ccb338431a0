"""The config model: every mistake is reported at once, with its line and key path."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import get_args

import pytest

from maintainer import redact
from maintainer.config import load_config, parse_config
from maintainer.config.jobs import JOB_MODELS, JobSpec
from maintainer.config.loader import find_config
from maintainer.config.types import parse_duration, parse_size
from maintainer.errors import ConfigError
from maintainer.jobs import JOB_TYPES
from maintainer.jobs.base import Job

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

GOOD = """
timezone: Europe/Berlin
storage:
  local: {url: "file:///var/backups"}
databases:
  app: {host: db, password: s3cr3t-value}
jobs:
  backup: {type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}
"""


def problems_of(text: str, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env=env or {})
    return info.value.problems


def test_a_good_config_loads_with_defaults_filled_in():
    config = parse_config(GOOD, "test.yaml", env={})
    job = config.jobs["backup"]
    assert job.type == "pg_backup"
    assert job.compression_level == 1
    assert job.retention.keep_last == 7
    assert config.databases["app"].port == 5432
    assert config.timezone == "Europe/Berlin"


def test_five_different_mistakes_are_all_listed_with_their_lines():
    text = """timezone: UTC
storage:
  local: {url: "file:///b", colour: blue}
databases:
  app: {host: db, port: notaport}
jobs:
  backup:
    type: pg_backup
    schedule: "61 3 * * *"
    databases: [app, ghost]
    storage: local
  x: {type: teleport, schedule: "@daily"}
"""
    problems = problems_of(text)
    assert len(problems) == 5
    joined = "\n".join(problems)
    assert "test.yaml:3: at 'storage.local.colour': unknown key" in joined
    assert "test.yaml:5: at 'databases.app.port'" in joined and "integer" in joined
    assert "test.yaml:9: at 'jobs.backup.schedule'" in joined and "61" in joined
    assert "test.yaml:10: at 'jobs.backup.databases[1]': database 'ghost' is not defined" in joined
    assert "test.yaml:12: at 'jobs.x.type': unknown job type 'teleport'" in joined


def test_an_undefined_storage_is_named():
    problems = problems_of(GOOD.replace("storage: local}", "storage: nowhere}"))
    assert problems == ["test.yaml:8: at 'jobs.backup.storage': storage 'nowhere' is not defined (defined: local)"]


def test_a_job_naming_one_undefined_database_is_named():
    text = GOOD + "  base: {type: pg_basebackup, schedule: '@daily', database: ghost, storage: local}\n"
    problems = problems_of(text)
    assert problems == ["test.yaml:9: at 'jobs.base.database': database 'ghost' is not defined (defined: app)"]


@pytest.mark.parametrize("ref, why", [("ghost", "is not defined"), ("update", "is this job itself")])
def test_an_update_may_only_run_other_defined_jobs_first(ref, why):
    text = GOOD + ("  update:\n    type: image_update\n    schedule: '@daily'\n    images: [postgres:15]\n"
                   f"    apply: {{services: [postgres], before: [{ref}]}}\n")
    problems = problems_of(text)
    assert problems == [f"test.yaml:13: at 'jobs.update.apply.before[0]': job '{ref}' {why} (jobs: backup)"]


def test_a_missing_required_key_is_named():
    problems = problems_of(GOOD.replace('schedule: "15 3 * * *", ', ""))
    assert problems == ["test.yaml:8: at 'jobs.backup.schedule': required key is missing"]


@pytest.mark.parametrize("expr", ["* * *", "99 * * * *", "0 25 * * *", "every day"])
def test_bad_cron_expressions_are_rejected(expr):
    problems = problems_of(GOOD.replace("15 3 * * *", expr))
    assert len(problems) == 1 and "jobs.backup.schedule" in problems[0]


def test_yaml_syntax_errors_name_the_line():
    with pytest.raises(ConfigError) as info:
        parse_config("jobs:\n  a: [1, 2\n", "bad.yaml", env={})
    assert "bad.yaml:" in info.value.message and "YAML syntax error" in info.value.message


def test_environment_variables_expand_with_defaults_and_types():
    text = GOOD.replace("host: db", 'host: "${DBHOST}", port: "${DBPORT:-6543}"')
    config = parse_config(text, "test.yaml", env={"DBHOST": "pg.internal"})
    assert config.databases["app"].host == "pg.internal"
    assert config.databases["app"].port == 6543


def test_an_unset_variable_without_default_is_an_error_with_its_line():
    problems = problems_of(GOOD.replace("host: db", 'host: "${DBHOST}"'))
    assert problems == ["test.yaml:6: at 'databases.app.host': environment variable DBHOST is not set "
                        "(use ${DBHOST:-default} for a default)"]


def test_secret_files_are_read_and_registered_for_redaction(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("correct-horse-battery\n")
    text = GOOD.replace("password: s3cr3t-value", f"password_file: {secret}")
    config = parse_config(text, "test.yaml", env={})
    assert config.databases["app"].password.get_secret_value() == "correct-horse-battery"
    assert "correct-horse-battery" not in repr(config)
    assert redact.scrub("login with correct-horse-battery") == "login with ***"


def test_a_missing_secret_file_is_a_warning_then_an_error_where_used(tmp_path):
    text = GOOD.replace("password: s3cr3t-value", f"password_file: {tmp_path}/nope")
    config = parse_config(text, "test.yaml", env={})
    assert len(config.secret_warnings) == 1
    assert "test.yaml:6: at 'databases.app.password_file'" in config.secret_warnings[0]
    with pytest.raises(ConfigError) as info:
        config.databases["app"].password.get_secret_value()
    assert "does not exist" in info.value.message


def test_strict_mode_makes_a_missing_secret_file_an_error(tmp_path):
    text = GOOD.replace("password: s3cr3t-value", f"password_file: {tmp_path}/nope")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env={}, strict_secrets=True)
    assert "secret file" in info.value.problems[0] and "does not exist" in info.value.problems[0]


def test_a_secret_and_its_file_form_together_are_an_error(tmp_path):
    (tmp_path / "pw").write_text("x" * 10)
    text = GOOD.replace("password: s3cr3t-value", f"password: abcd, password_file: {tmp_path}/pw")
    problems = problems_of(text)
    assert "give either password or password_file, not both" in problems[0]


def test_wrong_value_types_never_echo_a_secret():
    problems = problems_of(GOOD.replace("password: s3cr3t-value", "password: [1, 2]"))
    assert "databases.app.password" in problems[0]


def test_the_shipped_schedules_yaml_is_valid(tmp_path, monkeypatch):
    for name in ("S3_ACCESS_KEY_ID_FILE", "S3_SECRET_ACCESS_KEY_FILE", "PGPASSWORD_FILE"):
        path = tmp_path / name
        path.write_text(f"value-of-{name}")
        monkeypatch.setenv(name, str(path))
    config = load_config(REPO / "schedules.yaml", strict_secrets=True)
    assert "prune" in config.jobs
    assert {job.type for job in config.jobs.values()} == set(JOB_MODELS), "one job of each type"
    assert config.databases["contrivance"].host == "postgres"


@pytest.mark.parametrize("path,env", [
    ("deploy/schedules.yaml", {}),
    ("examples/quickstart/schedules.yaml", {"QS_BACKUPS": "/var/tmp/qs-backups", "QS_PGPORT": "5433"}),
])
def test_the_other_shipped_configs_are_valid(path, env, monkeypatch):
    """deploy/ and the quick start's configs load; only their secret files (absent here) are missing."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config(REPO / path)
    assert config.jobs
    assert all("secret file" in warning for warning in config.secret_warnings)


def test_every_job_type_the_schema_allows_is_implemented():
    assert set(JOB_MODELS) == set(JOB_TYPES)
    for name, cls in JOB_TYPES.items():
        assert issubclass(cls, Job) and cls.type_name == name
        assert "not implemented" not in (cls.run.__doc__ or ""), name
        source = Path(__import__(cls.__module__, fromlist=["x"]).__file__).read_text()
        assert "is not implemented yet" not in source, f"{name} is still a placeholder"


def test_each_job_type_is_named_once_in_its_model():
    """JOB_MODELS is the JobSpec union, and each type's name comes from its model's ``type`` Literal."""
    union = get_args(get_args(JobSpec)[0])
    assert tuple(JOB_MODELS.values()) == union
    for name, model in JOB_MODELS.items():
        assert get_args(model.model_fields["type"].annotation) == (name,)
        assert model.type_name == name


def test_the_registry_holds_every_job_class_of_maintainer_jobs():
    """A job class left out of JOB_TYPES would never run; one listed twice would hide another."""
    import maintainer.jobs

    defined = set()
    for info in pkgutil.iter_modules(maintainer.jobs.__path__, "maintainer.jobs."):
        module = importlib.import_module(info.name)
        defined |= {cls for cls in vars(module).values()
                    if isinstance(cls, type) and issubclass(cls, Job) and cls is not Job and cls.__module__ == info.name}
    assert defined == set(JOB_TYPES.values())


def test_config_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(find_config("explicit.yaml", env={"MAINTAINER_CONFIG": "env.yaml"})) == "explicit.yaml"
    assert str(find_config(None, env={"MAINTAINER_CONFIG": "env.yaml"})) == "env.yaml"
    (tmp_path / "schedules.yaml").write_text("jobs: {}\n")
    assert str(find_config(None, env={})) == "schedules.yaml"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800),
                                          ("2w", 1209600), ("1h30m", 5400), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["soon", "5 parsecs", "-3", True])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes():
    assert parse_size("256m") == 256 * 1024**2
    assert parse_size("1g") == 1024**3
    assert parse_size("512MiB") == 512 * 1024**2


def test_validate_reads_weekdays_as_cron_does():
    from datetime import datetime, timezone

    from maintainer.schedule import next_fire

    # 2026-11-26 is a Thursday; "0 is Sunday" as in crontab, not Monday as in APScheduler.
    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    assert next_fire("30 5 * * 0", "UTC", now).strftime("%a %d") == "Sun 29"
    assert next_fire("30 5 * * 7", "UTC", now).strftime("%a %d") == "Sun 29"
    assert next_fire("0 2 * * 1", "UTC", now).strftime("%a %d") == "Mon 30"


def test_the_config_answers_which_jobs_back_up_and_drill_a_database():
    from maintainer.config.loader import parse_config

    config = parse_config("""
storage: {a: {url: "file:///tmp/a"}, b: {url: "file:///tmp/b"}}
databases: {shop: {}, blog: {}}
jobs:
  nightly: {type: pg_backup, schedule: "@daily", databases: [shop, blog], storage: a}
  offsite: {type: pg_backup, schedule: "@weekly", databases: [shop], storage: b}
  drill: {type: restore_drill, schedule: "@daily", databases: [shop], storage: a}
  snap: {type: config_snapshot, schedule: "@daily", storage: b, paths: [/etc/hostname]}
""")
    assert config.jobs_covering("shop", "pg_backup") == ["nightly", "offsite"]
    assert config.jobs_covering("blog", "restore_drill") == []
    assert config.backup_storage_of("shop") == "a" and config.backup_storage_of("none") is None
    assert config.backup_job_into("shop", "b") == "offsite" and config.backup_job_into("blog", "b") is None
    assert config.backup_storages() == ["a", "b"]
    assert list(config.jobs_of_type("config_snapshot")) == ["snap"]
