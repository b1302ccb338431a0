"""pg_receivewal and pg_basebackup of a server newer than the local tools (17 vs 15),
run the two other ways: a throwaway container on the database's network, and
docker exec in the database container. Segments arrive complete and verified, and
nothing is left running or lying around afterwards."""

from __future__ import annotations

import pytest

from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.wal import archive, basebackups
from maintainer.wal.state import STATES

from support.pgdata import psql, wait_for
from support.wal_server import BackgroundRun, allow_replication, drop_slot, switch_wal, wal_config

pytestmark = pytest.mark.integration

IMAGE_TEMPLATE = "maintainer-test/postgres:{major}"


def client_containers(docker_client) -> list:
    return docker_client.containers.list(all=True, filters={"label": "maintainer.role=pg-client"})


def archive_two_segments(config, server, storage) -> list[str]:
    run = BackgroundRun(config)
    try:
        wait_for(lambda: STATES.get("wal") is not None and STATES.get("wal").up, 90, "the receiver to start")
        names = []
        for _ in range(2):
            psql(server, "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t SELECT generate_series(1, 20000)")
            names.append(switch_wal(server))
        for name in names:
            wait_for(lambda: (s := archive.list_archive(storage, "pg").find(name)) is not None and not s.partial,
                     90, f"{name} archived")
    finally:
        result = run.stop(90)
        drop_slot(server)
    assert result.ok, result.errors
    return names


def test_a_newer_server_is_archived_and_backed_up_from_a_throwaway_container_on_its_network(
        postgres_factory, pg17_image, docker_network, docker_client, tmp_path):
    server = postgres_factory(pg17_image, network=docker_network, alias="walsrv")
    allow_replication(server)
    client = {"mode": "container", "image": IMAGE_TEMPLATE, "network": docker_network, "host": "walsrv", "port": 5432}
    config = wal_config(f"file://{tmp_path}/store", server, database={"client": client})
    storage = open_storage(config.storage["main"], "main")
    names = archive_two_segments(config, server, storage)
    listing = archive.list_archive(storage, "pg")
    assert listing.record.pg_major == 17
    for name in names:
        assert len(archive.read_segment(storage, listing.find(name))) == listing.segment_size
    assert client_containers(docker_client) == []

    result = run_job(config, "base")
    assert result.ok, result.errors
    [entry] = basebackups.list_base_backups(storage, "pg")
    assert entry.manifest.server_major == 17 and entry.manifest.client == "container:maintainer-test/postgres:17"
    assert sum(len(c) for c in basebackups.read_object(storage, entry.manifest, "base.tar")) == \
        entry.manifest.object("base.tar").raw_size
    assert client_containers(docker_client) == []


def test_exec_mode_archives_inside_the_database_container_and_leaves_nothing_there(pg17, tmp_path):
    config = wal_config(f"file://{tmp_path}/store", pg17,
                        database={"client": {"mode": "exec", "container": pg17.container.name}})
    storage = open_storage(config.storage["main"], "main")
    names = archive_two_segments(config, pg17, storage)
    listing = archive.list_archive(storage, "pg")
    for name in names:
        assert len(archive.read_segment(storage, listing.find(name))) == listing.segment_size
    left = pg17.container.exec_run(["sh", "-c", "ls -d /tmp/maintainer-wal-* 2>/dev/null; "
                                                "grep -l 'pg_receivewa[l]' /proc/[0-9]*/cmdline 2>/dev/null"])
    assert left.output.decode().strip() == ""
