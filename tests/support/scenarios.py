"""Helpers shared by the drill, restore and runner integration tests (no tests here).

``make_backup`` runs the real pg_backup job (job "backup" of ``config_data``)
and returns the manifest it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from maintainer.backup import catalog
from maintainer.backup.manifest import Manifest
from maintainer.config.models import Config
from maintainer.storage import open_storage

from .pgdata import REPO, load_contrivance  # noqa: F401 - re-exported for the tests


def test_labels() -> dict[str, str]:
    return {"maintainer.test": "1", "maintainer.test.pid": str(os.getpid())}


test_labels.__test__ = False  # a helper, not a test


def config_data(s3_server, bucket: str, tmp_path: Path, server, *, database: str = "contrivance",
                dbname: str = "contrivance", jobs: dict | None = None, backup_job: bool = True) -> dict:
    """A schedules.yaml as data: S3 storage "s3", one database entry, a pg_backup job
    "backup" (unless ``backup_job`` is false) and the given jobs."""
    jobs = dict(jobs or {})
    if backup_job:
        jobs["backup"] = {"type": "pg_backup", "schedule": "15 3 * * *", "databases": [database], "storage": "s3"}
    return {
        "storage": {"s3": {"url": f"s3://{bucket}/backups", "endpoint_url": s3_server.endpoint_url,
                           "region": s3_server.region, "path_style": True,
                           "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}},
        "databases": {database: {"host": server.host, "port": server.port, "user": server.user,
                                 "password": server.password, "dbname": dbname, "sslmode": "disable"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": jobs,
    }


def s3_config(s3_server, bucket: str, tmp_path: Path, server, **kwargs) -> Config:
    return Config.model_validate(config_data(s3_server, bucket, tmp_path, server, **kwargs))


def write_config(tmp_path: Path, data: dict) -> Path:
    import yaml

    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(config_file: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m maintainer --config FILE ARGS`` as a user would; never on a terminal."""
    import sys

    return subprocess.run([sys.executable, "-m", "maintainer", "--config", str(config_file), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def make_backup(config: Config, database: str = "contrivance") -> Manifest:
    """Run the real pg_backup job "backup" once; the manifest of the backup it made."""
    from maintainer.runner import run_job

    result = run_job(config, "backup")
    assert result.ok, result.errors
    return catalog.list_backups(storage_of(config), database)[0].manifest


def storage_of(config: Config, name: str = "s3"):
    return open_storage(config.storage[name], name=name)


def drill_containers(docker_client, run_id: str) -> list[str]:
    """Ids of the containers (running or not) labelled with this run id."""
    return [c["Id"] for c in docker_client.api.containers(all=True, filters={"label": f"maintainer.run_id={run_id}"})]


def document(stdout: str) -> dict:
    """The JSON document a --json command printed (log lines may precede it)."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def databases(server) -> set[str]:
    with server.connect() as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def counts(server, dbname) -> dict[str, int]:
    with server.connect(dbname) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("app.accounts", "app.builds", "app.artifacts", "audit.events")}


@contextlib.contextmanager
def hold_lock(server, dbname: str, table: str):
    """An ACCESS EXCLUSIVE lock held by a prepared transaction: no session is connected
    (so --replace's session check passes) and pg_dump, which needs a share lock, waits."""
    with server.connect(dbname) as conn:
        conn.execute("BEGIN")
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        conn.execute("PREPARE TRANSACTION 'maintainer_test_hold'")
    try:
        yield
    finally:
        with server.connect(dbname) as conn:
            conn.execute("ROLLBACK PREPARED 'maintainer_test_hold'")


def drill_job(**overrides) -> dict:
    job = {"type": "restore_drill", "schedule": "30 5 * * 0", "databases": ["contrivance"], "storage": "s3",
           "image": "maintainer-test/postgres:{major}", "checks_dir": str(REPO / "restore" / "checks"),
           "memory": "2g", "cpus": 1, "labels": test_labels()}
    job.update(overrides)
    return job
