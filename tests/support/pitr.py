"""A WAL archive made by maintainer's real jobs, with marker rows around a known target
time, for the point-in-time restore tests (no tests here).

``archived_scenario`` starts a PostgreSQL server set up for replication, runs the
real ``wal_archive`` job in the background and the real ``pg_basebackup`` job once,
then commits marker rows: ``before-base``, ``before-target`` (each in its own
transaction), waits past the target time, commits ``after-target`` rows and a
``DELETE FROM marker`` without WHERE, and waits (polling storage) until the
segment holding the delete is archived.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from maintainer.config import parse_config
from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.wal import archive
from maintainer.wal.state import STATES

from .docker_resources import docker_labels, unique_name
from .pgdata import db_entry, psql, wait_for
from .scenarios import write_config
from .wal_server import BackgroundRun, drop_slot, start_replication_server, switch_wal

SERVER = "pg"
DBNAME = "app"
BEFORE = list(range(1, 11))  # ids committed before the target (1-5 before the base backup)
AFTER = list(range(11, 16))  # ids committed after it, then every row deleted


@dataclass
class Scenario:
    server: object  # PgServer
    data: dict  # the config document
    config: object
    config_file: Path
    storage: object
    target: datetime  # between the last "before" commit and the first "after" one
    store: Path | None  # the local storage directory (file:// scenarios)


def config_doc(storage_url: str, server, *, storage_extra: dict | None = None, image: str) -> dict:
    """Storage 'main', database 'pg' (dbname app), jobs 'wal', 'base' and a PITR drill 'drill'."""
    labels = docker_labels()  # with this pytest's pid: other sessions' clean-up leaves them alone
    return {
        "storage": {"main": {"url": storage_url, **(storage_extra or {})}},
        "databases": {SERVER: {**db_entry(server, DBNAME), "client": {"image": image}}},
        "jobs": {
            "wal": {"type": "wal_archive", "database": SERVER, "storage": "main", "slot": "maint_pitr",
                    "flush_interval": "1s", "check_interval": "2s", "restart_backoff": "1s"},
            "base": {"type": "pg_basebackup", "database": SERVER, "storage": "main", "schedule": "0 3 * * *"},
            "drill": {"type": "restore_drill", "mode": "pitr", "schedule": "30 5 * * *", "databases": [SERVER],
                      "storage": "main", "image": image, "labels": labels, "memory": "1g"},
        },
    }


def archived_scenario(docker_client, image: str, tmp_path: Path, *, storage_url: str | None = None,
                      storage_extra: dict | None = None) -> Scenario:
    """See the module docstring. The caller removes ``scenario.server``."""
    server = start_replication_server(docker_client, image)
    psql(server, f"CREATE DATABASE {DBNAME}")
    psql(server, "CREATE TABLE marker (id int PRIMARY KEY, note text, committed timestamptz DEFAULT clock_timestamp())",
         dbname=DBNAME)
    url = storage_url or f"file://{tmp_path}/store"
    data = config_doc(url, server, storage_extra=storage_extra, image=image.rsplit(":", 1)[0] + ":{major}")
    config = parse_config(json.dumps(data), "test-config.yaml")
    storage = open_storage(config.storage["main"], "main")
    insert(server, BEFORE[:5], "before-base")
    run = BackgroundRun(config)
    try:
        wait_for(lambda: (STATES.get("wal") or None) and STATES.get("wal").up, 60, "the WAL receiver to start")
        base = run_job(config, "base")
        assert base.ok, base.errors
        insert(server, BEFORE[5:], "before-target")
        switch_wal(server)
        time.sleep(1.5)
        target = datetime.now(timezone.utc)
        time.sleep(1.5)
        insert(server, AFTER, "after-target")
        psql(server, "DELETE FROM marker", dbname=DBNAME)
        last = switch_wal(server)
        wait_for(lambda: _complete(storage, last), 90, f"segment {last} in storage")
    finally:
        result = run.stop()
        drop_slot(server, "maint_pitr")
    assert result.ok, result.errors
    return Scenario(server=server, data=data, config=config, config_file=write_config(tmp_path, data),
                    storage=storage, target=target, store=tmp_path / "store" if storage_url is None else None)


def insert(server, ids, note: str) -> None:
    """Each row in its own transaction, so each has its own commit record and time."""
    for i in ids:
        psql(server, f"INSERT INTO marker (id, note) VALUES ({i}, '{note}')", dbname=DBNAME)


def _complete(storage, name: str) -> bool:
    stored = archive.list_archive(storage, SERVER).find(name)
    return stored is not None and not stored.partial


def marker_ids(server, dbname: str) -> list[int]:
    return [int(x) for x in psql(server, "SELECT id FROM marker ORDER BY id", dbname=dbname).split()]


def start_on_volume(docker_client, image: str, volume: str, like):
    """A server of ``image`` on an existing data volume (the swapped-in recovered cluster),
    with the roles and passwords of ``like``; its port published on 127.0.0.1."""
    from .postgres import PgServer, wait_until_ready

    container = docker_client.containers.run(
        image, name=unique_name("maintainer-test-pg-swapped"), labels=docker_labels(), detach=True,
        volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
        command=["postgres", "-c", "max_wal_size=256MB", "-c", "wal_keep_size=0"],
        ports={"5432/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
        server = PgServer("127.0.0.1", port, like.user, like.password, like.dbname, container, image)
        wait_until_ready(server)
        return server
    except BaseException:
        container.remove(force=True, v=True)
        raise


def archive_more(config, server, ids, note: str) -> None:
    """Run the real wal_archive job while ``ids`` are committed; until their segment is stored."""
    storage = open_storage(config.storage["main"], "main")
    run = BackgroundRun(config)
    try:
        wait_for(lambda: (STATES.get("wal") or None) and STATES.get("wal").up, 60, "the WAL receiver to start")
        insert(server, ids, note)
        last = switch_wal(server)
        wait_for(lambda: _complete(storage, last), 90, f"segment {last} in storage")
    finally:
        result = run.stop()
        drop_slot(server, "maint_pitr")
    assert result.ok, result.errors


def pitr_leftovers(docker_client) -> list[str]:
    """Recovery containers and scratch volumes of this run that still exist."""
    # sparse: no inspect per container, which would race with a container the run
    # under test removes between the listing and the inspect (404).
    listed = docker_client.containers.list(all=True, sparse=True, filters={"name": "maintainer-pitr-"})
    names = [c.attrs["Names"][0].lstrip("/") for c in listed]
    names += [v.name for v in docker_client.volumes.list(filters={"name": "maintainer-pitr-"})]
    return names


__all__ = ["AFTER", "BEFORE", "DBNAME", "SERVER", "Scenario", "archived_scenario", "docker_labels", "marker_ids",
           "pitr_leftovers"]
