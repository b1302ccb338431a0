"""`maintainer restore` of a backup from a server newer than the local pg_restore (17 vs 15):
pg_restore runs in a throwaway container of the client image on the database's network,
or by docker exec in the database container; with client.mode local it refuses in one line."""

from __future__ import annotations

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.restore.globals import database_statements
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.scenarios import load_contrivance, run_cli, write_config
from support.scenarios import counts, databases, document

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


def database_level(server, dbname: str) -> tuple:
    """Settings, CONNECT grants and comment of a database: what only pg_restore --create carries."""
    with server.connect() as conn:
        settings = conn.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0", (dbname,)).fetchone()
        grants = conn.execute("SELECT has_database_privilege('contrivance_readonly', %s, 'CONNECT'), "
                              "has_database_privilege('contrivance_app', %s, 'CONNECT')", (dbname, dbname)).fetchone()
        comment = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (dbname,)).fetchone()[0]
    return sorted(settings[0]) if settings else [], tuple(grants), comment


def test_a_newer_backup_is_restored_by_pg_restore_in_a_throwaway_container_on_the_database_network(
        pg17_on_network, docker_network, docker_client, tmp_path):
    with pg17_on_network.connect() as conn:
        conn.execute("ALTER DATABASE contrivance SET work_mem = '8MB'")
        conn.execute("ALTER DATABASE contrivance SET search_path = app, public")
        conn.execute("REVOKE CONNECT ON DATABASE contrivance FROM PUBLIC")
        conn.execute("GRANT CONNECT ON DATABASE contrivance TO contrivance_readonly")
        conn.execute("COMMENT ON DATABASE contrivance IS 'the build service''s data'")
    data = config_data(tmp_path, pg17_on_network, container_client(docker_network))
    manifest = backed_up(tmp_path, data)
    config_file = write_config(tmp_path, data)

    plan = document(run_cli(config_file, "restore", "--latest", "--dry-run", "--json").stdout)
    assert "pg_restore 17." in plan["client"] and "maintainer-test/postgres:17" in plan["client"]
    out = run_cli(config_file, "restore", "--latest", "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    assert summary["row_counts"]["passed"], summary["row_counts"]
    new = summary["restore_into"]
    assert new.startswith("contrivance_restored_")
    restored = counts(pg17_on_network, new)
    assert restored == {t: manifest.row_counts[t].rows for t in restored}
    assert client_containers(docker_client) == []
    assert database_level(pg17_on_network, new) == database_level(pg17_on_network, "contrivance")
    assert database_level(pg17_on_network, new)[1] == (True, False)  # the REVOKE from PUBLIC came along too


def test_a_newer_backup_is_restored_by_docker_exec_in_the_database_container(
        pg17_on_network, docker_client, tmp_path):
    server = pg17_on_network
    data = config_data(tmp_path, server, {"mode": "exec", "container": server.container.name})
    manifest = backed_up(tmp_path, data)

    out = run_cli(write_config(tmp_path, data), "restore", "--latest", "--json", "--jobs", "3")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    restored = counts(server, summary["restore_into"])
    assert restored == {t: manifest.row_counts[t].rows for t in restored}
    left = server.container.exec_run(["sh", "-c", "ls -d /tmp/maintainer-restore-* 2>/dev/null || true"])
    assert left.output.decode().strip() == ""  # the copied dump was deleted


def test_local_mode_refuses_a_newer_backup_in_one_line_naming_both_versions(
        pg17_on_network, docker_network, tmp_path):
    data = config_data(tmp_path, pg17_on_network, container_client(docker_network))
    backed_up(tmp_path, data)
    data["databases"]["contrivance"]["client"] = {"mode": "local"}
    before = databases(pg17_on_network)

    out = run_cli(write_config(tmp_path, data), "restore", "--latest")

    assert out.returncode != 0 and "Traceback" not in out.stderr
    [error] = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert "PostgreSQL 17." in error and "local pg_restore 15." in error
    assert "databases.contrivance.client.mode" in error
    assert databases(pg17_on_network) == before


class CancelAt:
    """Progress that sets the cancel flag (what SIGTERM does) when a phase starts."""

    def __init__(self, phase: str, cancel):
        self.at, self.cancel, self.seen = phase, cancel, []

    def phase(self, name, total=None):
        self.seen.append(name)
        if name == self.at:
            self.cancel.set()

    def advance(self, amount):
        pass

    def done(self):
        pass


@pytest.mark.parametrize("phase", ["download and verify", "pg_restore"])
def test_a_cancel_removes_the_pg_restore_container_and_the_new_database(
        pg17_on_network, docker_network, docker_client, tmp_path, phase):
    """The dump streams straight into the pg_restore container: a cancel while it
    streams, or while pg_restore runs, leaves neither a container nor a database."""
    import threading
    from datetime import datetime, timezone

    from maintainer.errors import Interrupted
    from maintainer.restore.engine import pg_restore_client
    from maintainer.restore.incident import apply_restore, target_from_spec
    from maintainer.restore.plan import plan_restore

    data = config_data(tmp_path, pg17_on_network, container_client(docker_network))
    backed_up(tmp_path, data)
    config = Config.model_validate(data)
    storage = open_storage(config.storage["main"], name="main")
    entry, why = catalog.find_backup(storage, "contrivance")
    spec = config.databases["contrivance"]
    client = pg_restore_client(spec, "contrivance", entry.manifest)
    plan = plan_restore("contrivance", entry, why, target_from_spec(spec, "contrivance"), replace=False,
                        safety_backup=False, terminate_connections=False, parallel_jobs=2,
                        client=client.describe("pg_restore"), now=datetime.now(timezone.utc),
                        placement=client.placement)
    before = databases(pg17_on_network)
    cancel = threading.Event()
    progress = CancelAt(phase, cancel)

    with pytest.raises(Interrupted):
        apply_restore(plan, storage, client=client, progress=progress, cancel=cancel)

    assert phase in progress.seen
    assert client_containers(docker_client) == []
    assert databases(pg17_on_network) == before


def test_database_level_statements_are_renamed_to_the_new_database_and_nothing_else_is_kept():
    dumped = "\n".join([
        "\\restrict abc",
        'CREATE DATABASE "My ""Db""" WITH TEMPLATE = template0 ENCODING = \'UTF8\';',
        'ALTER DATABASE "My ""Db""" OWNER TO app;',
        "\\connect -reuse-previous=on \"dbname='My \"\"Db\"\"'\"",
        "SET statement_timeout = 0;",
        'COMMENT ON DATABASE "My ""Db""" IS \'about DATABASE "My ""Db"""',
        "on two lines\';",
        'ALTER DATABASE "My ""Db""" SET search_path TO \'app\', \'public\';',
        'ALTER ROLE ro IN DATABASE "My ""Db""" SET statement_timeout TO \'5s\';',
        'GRANT CONNECT,TEMPORARY ON DATABASE "My ""Db""" TO ro;',
    ])

    statements = database_statements(dumped, "shop_restored_1")

    assert statements == [
        'ALTER DATABASE "shop_restored_1" OWNER TO app;',
        'COMMENT ON DATABASE "shop_restored_1" IS \'about DATABASE "My ""Db"""\non two lines\';',
        'ALTER DATABASE "shop_restored_1" SET search_path TO \'app\', \'public\';',
        'ALTER ROLE ro IN DATABASE "shop_restored_1" SET statement_timeout TO \'5s\';',
        'GRANT CONNECT,TEMPORARY ON DATABASE "shop_restored_1" TO ro;',
    ]
