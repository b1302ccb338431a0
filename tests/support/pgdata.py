"""Helpers shared by the pg_backup integration tests (this module holds no tests).

Configs are built with the real loader (parse_config), databases are filled
with the real Contrivance example through psql, and restores use the standard
tools (psql, pg_restore) exactly as restore/README.md tells a person to.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


from maintainer.backup.pipeline import decompress_frames
from maintainer.config.loader import parse_config
from maintainer.postgres import inventory

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "contrivance"


def pg_env(server) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": server.password, "PGHOST": server.host, "PGPORT": str(server.port),
            "PGUSER": server.user}


def psql(server, sql: str | None = None, *, dbname: str | None = None, file: Path | None = None,
         variables: dict[str, str] | None = None, stop_on_error: bool = True) -> str:
    args = ["psql", "-X", "-q", "-A", "-t", "-d", dbname or server.dbname]
    if stop_on_error:
        args += ["-v", "ON_ERROR_STOP=1"]
    for k, v in (variables or {}).items():
        args += ["-v", f"{k}={v}"]
    args += ["-f", str(file)] if file else ["-c", sql or ""]
    out = subprocess.run(args, env=pg_env(server), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"psql failed: {out.stderr}")
    return out.stdout


def load_contrivance(server, dbname: str = "contrivance", scale: int = 1) -> None:
    """Create ``dbname`` and fill it with the Contrivance-like example."""
    psql(server, f'CREATE DATABASE "{dbname}"')
    psql(server, dbname=dbname, file=EXAMPLE / "schema.sql")
    psql(server, dbname=dbname, file=EXAMPLE / "seed.sql", variables={"scale": str(scale)})


def config_for(storage_url: str, databases: dict, *, job: dict | None = None, storage_extra: dict | None = None):
    """A Config with one storage 'main', the given databases and a job 'backup'."""
    doc = {
        "storage": {"main": {"url": storage_url, **(storage_extra or {})}},
        "databases": databases,
        "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": list(databases),
                            "storage": "main", **(job or {})}},
    }
    return parse_config(json.dumps(doc), "test-config.yaml")


def db_entry(server, dbname: str, **extra) -> dict:
    return {"host": server.host, "port": server.port, "user": server.user, "password": server.password,
            "dbname": dbname, "sslmode": "disable", **extra}


def s3_storage(s3, bucket: str, prefix: str = "backups") -> tuple[str, dict]:
    return f"s3://{bucket}/{prefix}", {"endpoint_url": s3.endpoint_url, "region": s3.region, "path_style": True,
                                       "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
                                       "part_size": 5 * 1024 * 1024}


def snapshot_counts(server, dbname: str) -> tuple[dict, dict]:
    """Exact row counts and object counts of a live database, by the manifest's own queries."""
    with server.connect(dbname) as conn:
        rows = {k: v.rows for k, v in inventory.row_counts(conn).items()}
        objects = inventory.object_counts(conn)
    return rows, objects


def restore_with_standard_tools(backup_dir: Path, target, workdir: Path) -> None:
    """The manual procedure of restore/README.md: zstd -d, psql for globals, pg_restore --create."""
    env = pg_env(target)
    subprocess.run(["zstd", "-q", "-d", "-f", str(backup_dir / "globals.sql.zst"), "-o", str(workdir / "globals.sql")],
                   check=True, timeout=120)
    subprocess.run(["zstd", "-q", "-d", "-f", str(backup_dir / "dump.pgcustom.zst"), "-o", str(workdir / "dump.pgcustom")],
                   check=True, timeout=300)
    subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-f", str(workdir / "globals.sql")], env=env, check=True,
                   capture_output=True, timeout=120)
    out = subprocess.run(["pg_restore", "--create", "--exit-on-error", "-d", "postgres", str(workdir / "dump.pgcustom")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def decompress(data: bytes) -> bytes:
    return b"".join(decompress_frames([data]))


def fill_random(server, dbname: str, megabytes: int) -> None:
    """A database whose dump is ``megabytes`` of incompressible data: slow to compress
    at high zstd levels, so a test can act while the dump is streaming."""
    psql(server, f'CREATE DATABASE "{dbname}"')
    psql(server, dbname=dbname, sql=f"""
        CREATE EXTENSION pgcrypto;
        CREATE TABLE noise (id int PRIMARY KEY, data bytea);
        ALTER TABLE noise ALTER COLUMN data SET STORAGE EXTERNAL;
        INSERT INTO noise SELECT g, gen_random_bytes(1024) FROM generate_series(1, {megabytes * 1024}) g;
    """)


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll ``condition()`` until it returns something truthy (bounded)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pg_dump_pids(port: int) -> list[int]:
    """Local pg_dump processes talking to ``port``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_dump") and str(port).encode() in argv:
            pids.append(int(entry))
    return pids


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".partial-" in p.name]


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
