"""A PostgreSQL container set up for WAL archiving as docs/pitr.md tells a user to:
a pg_hba line for replication from outside the container, and a role with
REPLICATION (the test bed's superuser has it). Plus configs and load (no tests here)."""

from __future__ import annotations

import json
import subprocess
import threading

from maintainer.config import parse_config
from maintainer.runner import run_job

from .pgdata import db_entry, pg_env, psql
from .postgres import start_postgres

HBA_LINE = "host replication all all scram-sha-256"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def allow_replication(server) -> None:
    """Add the replication line to pg_hba.conf and reload, as a user would."""
    hba = psql(server, "SHOW hba_file").strip()
    server.container.exec_run(["sh", "-c", f"echo '{HBA_LINE}' >> {hba}"], user="postgres")
    psql(server, "SELECT pg_reload_conf()")


def start_replication_server(docker_client, image: str, **kwargs):
    server = start_postgres(docker_client, image, command=["-c", "max_wal_size=256MB", "-c", "wal_keep_size=0"],
                            **kwargs)
    allow_replication(server)
    return server


def wal_config(storage_url: str, server, *, storage_extra: dict | None = None, wal: dict | None = None,
               base: dict | None = None, dbname: str = "postgres", database: dict | None = None):
    """A Config with storage 'main', database 'pg', a wal_archive job 'wal' and a pg_basebackup job 'base'."""
    doc = {
        "storage": {"main": {"url": storage_url, **(storage_extra or {})}},
        "databases": {"pg": {**db_entry(server, dbname), **(database or {})}},
        "jobs": {
            "wal": {"type": "wal_archive", "database": "pg", "storage": "main", "slot": "maint_test",
                    "flush_interval": "1s", "check_interval": "2s", "restart_backoff": "1s", **(wal or {})},
            "base": {"type": "pg_basebackup", "database": "pg", "storage": "main", "schedule": "0 3 * * *",
                     **(base or {})},
        },
    }
    return parse_config(json.dumps(doc), "test-config.yaml")


class BackgroundRun:
    """``run_job(config, name)`` in a thread, stopped by ``stop()`` (the cancel flag)."""

    def __init__(self, config, name: str = "wal"):
        self.cancel = threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(config, name), daemon=True)
        self.thread.start()

    def _run(self, config, name):
        self.result = run_job(config, name, cancel=self.cancel)

    def stop(self, timeout: float = 60):
        self.cancel.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the wal_archive run did not stop"
        return self.result


def pgbench(server, *args: str, dbname: str = "postgres", timeout: float = 300) -> str:
    out = subprocess.run([PGBENCH, "-h", server.host, "-p", str(server.port), "-U", server.user, *args, dbname],
                         env=pg_env(server), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {out.stderr[-2000:]}")
    return out.stdout


def flush_lsn(server) -> int:
    from maintainer.wal.lsn import parse_lsn

    return parse_lsn(psql(server, "SELECT pg_current_wal_flush_lsn()").strip())


def switch_wal(server) -> str:
    """Close the current segment (it then gets archived); its name."""
    return psql(server, "SELECT pg_walfile_name(pg_switch_wal())").strip()


def drop_slot(server, slot: str = "maint_test") -> None:
    psql(server, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")
