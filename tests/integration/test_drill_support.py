"""Helpers shared by the drill and restore integration tests (no tests here).

``make_backup`` writes a backup in the layout pg_backup writes (pg_dump -Fc -Z0
through zstd, pg_dumpall --globals-only, a manifest with the same inventory
queries), with the real client tools against a real server. It stands in for
the pg_backup job until that job can be driven from these tests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import zstandard

from maintainer import __version__
from maintainer.backup import catalog, layout
from maintainer.backup.manifest import Manifest, StoredObject, TableCount
from maintainer.config.models import Config
from maintainer.storage import open_storage

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "examples" / "contrivance" / "schema.sql"
SEED = REPO / "examples" / "contrivance" / "seed.sql"


def test_labels() -> dict[str, str]:
    return {"maintainer.test": "1", "maintainer.test.pid": str(os.getpid())}


test_labels.__test__ = False  # a helper, not a test


def client_env(server) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": server.password, "PGHOST": server.host, "PGPORT": str(server.port),
            "PGUSER": server.user}


def load_contrivance(server, dbname: str = "contrivance", scale: int = 1) -> None:
    """Create ``dbname`` on the server and fill it with the Contrivance schema and seed."""
    with server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={scale}", "-d", dbname,
                    "-f", str(SCHEMA), "-f", str(SEED)], env=client_env(server), check=True,
                   capture_output=True, timeout=600)


def config_data(s3_server, bucket: str, tmp_path: Path, server, *, database: str = "contrivance",
                dbname: str = "contrivance", jobs: dict | None = None) -> dict:
    """A schedules.yaml as data: S3 storage "s3", one database entry, the given jobs."""
    return {
        "storage": {"s3": {"url": f"s3://{bucket}/backups", "endpoint_url": s3_server.endpoint_url,
                           "region": s3_server.region, "path_style": True,
                           "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}},
        "databases": {database: {"host": server.host, "port": server.port, "user": server.user,
                                 "password": server.password, "dbname": dbname, "sslmode": "disable"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": jobs or {},
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


def make_backup(server, storage, database: str, dbname: str, *, when: datetime | None = None,
                level: int = 3) -> Manifest:
    """Back up ``dbname`` of ``server`` into ``storage`` under entry ``database``."""
    import psycopg

    from maintainer.postgres.inventory import object_counts, row_counts

    when = when or datetime.now(timezone.utc).replace(microsecond=0)
    backup_id = layout.new_backup_id(when)
    env = client_env(server)
    dump = subprocess.run(["pg_dump", "-Fc", "-Z0", "-d", dbname], env=env, check=True, capture_output=True,
                          timeout=600).stdout
    globals_sql = subprocess.run(["pg_dumpall", "--globals-only"], env=env, check=True, capture_output=True,
                                 timeout=120).stdout
    objects = []
    for name, fname, fmt, raw in (("dump", layout.DUMP, "pg_dump-custom", dump),
                                  ("globals", layout.GLOBALS, "sql", globals_sql)):
        stored = zstandard.ZstdCompressor(level=level, write_checksum=True).compress(raw)
        key = layout.object_key(database, backup_id, fname)
        storage.put(key, stored)
        objects.append(StoredObject(name=name, key=key, format=fmt, raw_size=len(raw), stored_size=len(stored),
                                    sha256=hashlib.sha256(stored).hexdigest(),
                                    raw_sha256=hashlib.sha256(raw).hexdigest()))
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        rows = {k: TableCount(rows=v.rows, exact=v.exact) for k, v in row_counts(conn).items()}
        counts = object_counts(conn)
        version, num = conn.execute("SELECT current_setting('server_version'), "
                                    "current_setting('server_version_num')::int").fetchone()
    manifest = Manifest(
        id=backup_id, database=database, dbname=dbname, server_version=version.split()[0],
        server_version_num=num, server_major=num // 10000, pg_dump_version="15", client="local",
        started=when, finished=when + timedelta(seconds=1), duration=1.0,
        compression={"algorithm": "zstd", "level": level}, maintainer_version=__version__, objects=objects,
        row_counts=rows, object_counts=counts, total_rows=sum(r.rows for r in rows.values()),
        raw_size=sum(o.raw_size for o in objects), stored_size=sum(o.stored_size for o in objects))
    catalog.write_manifest(storage, manifest)
    return manifest


def storage_of(config: Config, name: str = "s3"):
    return open_storage(config.storage[name], name=name)


def drill_containers(docker_client, run_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"maintainer.run_id={run_id}"})
