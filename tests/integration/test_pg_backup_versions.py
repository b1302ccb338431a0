"""A server newer than the local pg_dump (17 vs 15) is dumped with a matching client:
a throwaway container on the database's network, or docker exec; never an older one."""

from __future__ import annotations

import threading

import pytest

from maintainer.backup import catalog
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.pgdata import all_files, config_for, db_entry, fill_random, load_contrivance, partial_files, psql, wait_for

pytestmark = pytest.mark.integration

IMAGE_TEMPLATE = "maintainer-test/postgres:{major}"


def _client_containers(docker_client) -> list:
    return docker_client.containers.list(all=True, filters={"label": "maintainer.role=pg-client"})


@pytest.fixture
def pg17_on_network(postgres_factory, pg17_image, docker_network):
    return postgres_factory(pg17_image, network=docker_network, alias="db17")


def test_auto_mode_dumps_a_newer_server_in_a_throwaway_container_on_its_network(
        pg17_on_network, docker_network, docker_client, tmp_path):
    server = pg17_on_network
    load_contrivance(server)
    entry = db_entry(server, "contrivance", client={"mode": "auto", "image": IMAGE_TEMPLATE, "network": docker_network,
                                                     "host": "db17", "port": 5432})
    config = config_for(f"file://{tmp_path}/store", {"contrivance": entry})

    result = run_job(config, "backup")

    assert result.ok, result.errors
    [backup] = catalog.list_backups(open_storage(config.storage["main"], "main"))
    m = backup.manifest
    assert m.server_major == 17
    assert m.client == "container:maintainer-test/postgres:17"
    assert m.pg_dump_version.startswith("17.")
    assert m.total_rows > 0 and m.object("globals") is not None
    assert _client_containers(docker_client) == []


def test_exec_mode_dumps_inside_the_database_container(pg17, docker_client, tmp_path):
    load_contrivance(pg17)
    entry = db_entry(pg17, "contrivance", client={"mode": "exec", "container": pg17.container.name})
    config = config_for(f"file://{tmp_path}/store", {"contrivance": entry})

    result = run_job(config, "backup")

    assert result.ok, result.errors
    [backup] = catalog.list_backups(open_storage(config.storage["main"], "main"))
    assert backup.manifest.client == f"exec:{pg17.container.name}"
    assert backup.manifest.pg_dump_version.startswith("17.")
    assert backup.manifest.object("dump").raw_size > 10_000


def test_local_mode_refuses_a_newer_server_naming_both_versions_and_what_to_configure(pg17, tmp_path):
    config = config_for(f"file://{tmp_path}/store", {"app": db_entry(pg17, "postgres", client={"mode": "local"})})

    result = run_job(config, "backup")

    assert not result.ok
    [error] = result.errors
    assert "\n" not in error
    assert "PostgreSQL 17." in error and "local pg_dump 15." in error
    assert "databases.app.client.mode" in error
    assert all_files(tmp_path / "store") == []


def test_cancelling_a_container_dump_removes_the_container_and_stores_nothing(
        pg17_on_network, docker_network, docker_client, tmp_path):
    server = pg17_on_network
    fill_random(server, "noise", 8)
    entry = db_entry(server, "noise", client={"mode": "container", "image": IMAGE_TEMPLATE, "network": docker_network,
                                              "host": "db17", "port": 5432})
    store = tmp_path / "store"
    config = config_for(f"file://{store}", {"noise": entry}, job={"compression_level": 12})
    cancel = threading.Event()
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_job(config, "backup", cancel=cancel)))
    runner.start()
    wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(store)), what="the dump to stream")
    # The dump's container (pg_dumpall's runs beside it, and may have ended already).
    assert 1 <= len(_client_containers(docker_client)) <= 2
    cancel.set()  # what SIGTERM does through signals.cancel_on_signals
    runner.join(timeout=60)

    result = outcome["result"]
    assert not result.ok and result.errors[0].startswith("interrupted")
    assert _client_containers(docker_client) == []
    assert all_files(store) == []
    assert psql(server, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'maintainer'").strip() == "0"
