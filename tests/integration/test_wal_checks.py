"""What a server lacks for WAL archiving is said clearly, before anything runs:
`validate --servers` and the job's own start-up check name wal_level, max_wal_senders
and the REPLICATION attribute, one line each, and store nothing. A role with
REPLICATION and nothing else is enough."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.wal import archive
from maintainer.wal.state import STATES

from support.pgdata import psql, wait_for
from support.wal_daemon import MAINTAINER
from support.wal_server import BackgroundRun, allow_replication, drop_slot, switch_wal, wal_config

pytestmark = pytest.mark.integration


def write(tmp_path, server, user: str, password: str):
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"pg": {"host": server.host, "port": server.port, "user": user, "password": password,
                             "dbname": "postgres", "sslmode": "disable"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {"wal": {"type": "wal_archive", "database": "pg", "storage": "main", "slot": "maint_test"}}}))
    return path


def test_a_server_without_replica_wal_or_senders_is_named_by_validate_and_by_the_job(postgres_factory, tmp_path):
    server = postgres_factory(command=["-c", "wal_level=minimal", "-c", "max_wal_senders=0"])
    path = write(tmp_path, server, server.user, server.password)
    out = subprocess.run([MAINTAINER, "-c", str(path), "validate", "--servers"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Error: 2 server problem(s) for WAL archiving or base backups" in out.stderr
    assert "job wal: database pg: wal_level is minimal; set wal_level = replica" in out.stderr
    assert "job wal: database pg: max_wal_senders is 0" in out.stderr
    assert "Traceback" not in out.stderr and server.password not in out.stderr + out.stdout

    result = run_job(wal_config(f"file://{tmp_path}/store2", server), "wal")
    assert not result.ok
    [error] = result.errors
    assert "wal_level is minimal" in error and "\n" not in error
    assert list(open_storage(wal_config(f"file://{tmp_path}/store2", server).storage["main"], "main").list("")) == []


def test_a_role_without_replication_is_named_and_a_replication_role_passes(postgres_factory, tmp_path):
    server = postgres_factory()
    allow_replication(server)
    psql(server, "CREATE ROLE plain LOGIN PASSWORD 'plain-pw-1'; CREATE ROLE repl LOGIN REPLICATION PASSWORD 'repl-pw-1'")
    out = subprocess.run([MAINTAINER, "-c", str(write(tmp_path, server, "plain", "plain-pw-1")), "validate",
                          "--servers"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "the role has no REPLICATION attribute; run ALTER ROLE <user> REPLICATION" in out.stderr
    ok = subprocess.run([MAINTAINER, "-c", str(write(tmp_path, server, "repl", "repl-pw-1")), "wal", "check"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "wal: server pg (PostgreSQL 15" in ok.stdout and "can be archived" in ok.stdout


def test_a_replication_role_that_is_not_superuser_archives_and_takes_base_backups(postgres_factory, tmp_path):
    server = postgres_factory()
    allow_replication(server)
    psql(server, "CREATE ROLE repl LOGIN REPLICATION PASSWORD 'repl-pw-2'")
    config = wal_config(f"file://{tmp_path}/store", server, database={"user": "repl", "password": "repl-pw-2"})
    run = BackgroundRun(config)
    try:
        wait_for(lambda: STATES.get("wal") is not None and STATES.get("wal").up, 60, "the receiver")
        base = run_job(config, "base")
        assert base.ok, base.errors
        last = switch_wal(server)
        storage = open_storage(config.storage["main"], "main")
        wait_for(lambda: (s := archive.list_archive(storage, "pg").find(last)) is not None and not s.partial, 60,
                 "the segment")
        wait_for(lambda: STATES.get("wal").slot_retained_bytes is not None, 30, "the slot check")
    finally:
        assert run.stop().ok
        drop_slot(server)
