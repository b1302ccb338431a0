"""`maintainer restore` of a backup from a server newer than the local pg_restore (17 vs 15):
pg_restore runs in a throwaway container of the client image on the database's network,
or by docker exec in the database container; with client.mode local it refuses in one line."""

from __future__ import annotations

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.runner import run_job
from maintainer.storage import open_storage

from test_drill_support import load_contrivance, run_cli, write_config
from test_restore import counts, databases, document

pytestmark = pytest.mark.integration

IMAGE_TEMPLATE = "maintainer-test/postgres:{major}"


@pytest.fixture
def pg17_on_network(postgres_factory, pg17_image, docker_network):
    server = postgres_factory(pg17_image, network=docker_network, alias="pg17db")
    load_contrivance(server)
    return server


def config_data(tmp_path, server, client: dict) -> dict:
    return {
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"contrivance": {"host": server.host, "port": server.port, "user": server.user,
                                      "password": server.password, "dbname": "contrivance", "sslmode": "disable",
                                      "client": client}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {"backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"],
                            "storage": "main"}},
    }


def backed_up(tmp_path, data: dict):
    """Run the real pg_backup job; the manifest of the backup it made."""
    config = Config.model_validate(data)
    result = run_job(config, "backup")
    assert result.ok, result.errors
    [backup] = catalog.list_backups(open_storage(config.storage["main"], name="main"), "contrivance")
    assert backup.manifest.server_major == 17
    return backup.manifest


def client_containers(docker_client) -> list:
    return docker_client.containers.list(all=True, filters={"label": "maintainer.role=pg-client"})


def container_client(network: str) -> dict:
    return {"mode": "container", "image": IMAGE_TEMPLATE, "network": network, "host": "pg17db", "port": 5432}


def test_a_newer_backup_is_restored_by_pg_restore_in_a_throwaway_container_on_the_database_network(
        pg17_on_network, docker_network, docker_client, tmp_path):
    data = config_data(tmp_path, pg17_on_network, container_client(docker_network))
    manifest = backed_up(tmp_path, data)
    config_file = write_config(tmp_path, data)

    plan = document(run_cli(config_file, "restore", "--latest", "--any", "--dry-run", "--json").stdout)
    assert "pg_restore 17." in plan["client"] and "maintainer-test/postgres:17" in plan["client"]
    out = run_cli(config_file, "restore", "--latest", "--any", "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    assert summary["row_counts"]["passed"], summary["row_counts"]
    new = summary["restored_into"]
    assert new.startswith("contrivance_restored_")
    restored = counts(pg17_on_network, new)
    assert restored == {t: manifest.row_counts[t].rows for t in restored}
    assert client_containers(docker_client) == []


def test_a_newer_backup_is_restored_by_docker_exec_in_the_database_container(
        pg17_on_network, docker_client, tmp_path):
    server = pg17_on_network
    data = config_data(tmp_path, server, {"mode": "exec", "container": server.container.name})
    manifest = backed_up(tmp_path, data)

    out = run_cli(write_config(tmp_path, data), "restore", "--latest", "--any", "--json", "--jobs", "3")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    restored = counts(server, summary["restored_into"])
    assert restored == {t: manifest.row_counts[t].rows for t in restored}
    left = server.container.exec_run(["sh", "-c", "ls -d /tmp/maintainer-restore-* 2>/dev/null || true"])
    assert left.output.decode().strip() == ""  # the copied dump was deleted


def test_local_mode_refuses_a_newer_backup_in_one_line_naming_both_versions(
        pg17_on_network, docker_network, tmp_path):
    data = config_data(tmp_path, pg17_on_network, container_client(docker_network))
    backed_up(tmp_path, data)
    data["databases"]["contrivance"]["client"] = {"mode": "local"}
    before = databases(pg17_on_network)

    out = run_cli(write_config(tmp_path, data), "restore", "--latest", "--any")

    assert out.returncode != 0 and "Traceback" not in out.stderr
    [error] = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert "PostgreSQL 17." in error and "local pg_restore 15." in error
    assert "databases.contrivance.client.mode" in error
    assert databases(pg17_on_network) == before
