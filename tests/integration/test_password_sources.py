"""Child tools get the password from every source libpq honours, in every client mode.

maintainer connects through libpq itself, then runs pg_dump, pg_dumpall and
pg_restore with a cleaned environment, locally, in a throwaway container or by
docker exec in the database container. Whether the password came from the
config, the DSN, PGPASSWORD, PGPASSFILE, ~/.pgpass or ``passfile=``, the child
tools must authenticate exactly as maintainer did. Each test runs the real
``maintainer`` command with the password in one source only, against a server
that requires it (scram-sha-256 over TCP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from support.docker_resources import docker_labels, unique_name
from support.postgres import remove_postgres, start_postgres
from support.scenarios import REPO, write_config

pytestmark = pytest.mark.integration

ALIAS = "pwdb"
IMAGE_TEMPLATE = "maintainer-test/postgres:{major}"


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    """One PostgreSQL 15 server on a network of its own, with a small database "shop"."""
    network = docker_client.networks.create(unique_name("maintainer-test-net"), driver="bridge",
                                            labels=docker_labels())
    srv = start_postgres(docker_client, pg_image, network=network.name, alias=ALIAS)
    try:
        with srv.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with srv.connect("shop") as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 500) g")
        yield srv
    finally:
        remove_postgres(srv)
        network.remove()


def client_for(mode: str, server) -> dict:
    if mode == "container":
        return {"mode": "container", "image": IMAGE_TEMPLATE, "network": server.network, "host": ALIAS, "port": 5432}
    if mode == "exec":  # through the network alias, so the server's scram-sha-256 line applies, not local trust
        return {"mode": "exec", "container": server.container.name, "host": ALIAS, "port": 5432}
    return {"mode": "local"}


def config_file(tmp_path: Path, server, *, mode: str = "local", password: bool = False) -> Path:
    db = {"host": server.host, "port": server.port, "user": server.user, "dbname": "shop", "sslmode": "disable",
          "client": client_for(mode, server)}
    if password:
        db["password"] = server.password
    return write_config(tmp_path, {
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"shop": db},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {"backup": {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["shop"],
                            "storage": "main"}},
    })


def run_maintainer(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real command, with no PG* variable but those given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run([sys.executable, "-m", "maintainer", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL,
                          env={**base, "PYTHONPATH": str(REPO), **env})


def passfile(tmp_path: Path, server, name: str = "pgpass") -> Path:
    path = tmp_path / name
    path.write_text(f"*:*:*:{server.user}:{server.password}\n")
    path.chmod(0o600)
    return path


def sources(tmp_path: Path, server) -> dict[str, dict[str, str]]:
    """Environment for each password source, the config holding none."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    passfile(home, server, ".pgpass")
    return {
        "PGPASSWORD": {"PGPASSWORD": server.password},
        "PGPASSFILE": {"PGPASSFILE": str(passfile(tmp_path, server))},
        "~/.pgpass": {"HOME": str(home)},
    }


def backed_up(tmp_path: Path, server) -> Path:
    """A backup of shop in tmp_path/store, made with the password in the config."""
    result = run_maintainer(config_file(tmp_path, server, password=True), "run", "backup", env={})
    assert result.returncode == 0, result.stderr
    return tmp_path / "store"


def restored_rows(server, summary: dict) -> int:
    new = summary["restore_into"]
    try:
        with server.connect(new) as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    finally:
        with server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{new}" WITH (FORCE)')


# ------------------------------------------------------------------ backup


@pytest.mark.parametrize("mode,source", [("local", "PGPASSWORD"), ("local", "~/.pgpass"), ("local", "PGPASSFILE"),
                                         ("container", "PGPASSFILE"), ("exec", "PGPASSWORD")])
def test_a_backup_without_a_password_in_the_config_uses_the_one_libpq_finds(server, tmp_path, mode, source):
    env = sources(tmp_path, server)[source]

    result = run_maintainer(config_file(tmp_path, server, mode=mode), "run", "backup", "--json", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    [backup] = json.loads(result.stdout)["details"]["backups"]
    assert backup["total_rows"] == 500
    assert server.password not in result.stdout + result.stderr


# ------------------------------------------------------------------ restore


@pytest.mark.parametrize("source", ["PGPASSWORD", "PGPASSFILE", "~/.pgpass"])
def test_restore_to_a_target_dsn_without_a_password_uses_the_one_libpq_finds(server, tmp_path, source):
    backed_up(tmp_path, server)
    dsn = f"postgresql://{server.user}@{server.host}:{server.port}/shop"

    result = run_maintainer(config_file(tmp_path, server), "restore", "--latest", "--target-dsn", dsn, "--json",
                            env=sources(tmp_path, server)[source])

    assert result.returncode == 0, result.stdout + result.stderr
    assert restored_rows(server, json.loads(result.stdout)) == 500
    assert server.password not in result.stdout + result.stderr


def test_restore_to_a_target_dsn_with_the_password_or_a_passfile_in_it(server, tmp_path):
    backed_up(tmp_path, server)
    base = f"{server.host}:{server.port}/shop"
    with_password = f"postgresql://{server.user}:{quote(server.password, safe='')}@{base}"
    with_passfile = f"postgresql://{server.user}@{base}?passfile={passfile(tmp_path, server)}"

    for dsn in (with_password, with_passfile):
        result = run_maintainer(config_file(tmp_path, server), "restore", "--latest", "--target-dsn", dsn,
                                "--json", env={})

        assert result.returncode == 0, result.stdout + result.stderr
        assert restored_rows(server, json.loads(result.stdout)) == 500
        assert server.password not in result.stdout + result.stderr


@pytest.mark.parametrize("mode,source", [("container", "PGPASSFILE"), ("exec", "PGPASSWORD")])
def test_restore_through_a_container_or_exec_client_gets_the_password_too(server, tmp_path, mode, source):
    """The passfile exists only on this host: the container's pg_restore gets the value."""
    backed_up(tmp_path, server)

    result = run_maintainer(config_file(tmp_path, server, mode=mode), "restore", "--latest", "--json",
                            env=sources(tmp_path, server)[source])

    assert result.returncode == 0, result.stdout + result.stderr
    assert restored_rows(server, json.loads(result.stdout)) == 500


def test_without_any_password_source_the_restore_fails_in_one_line(server, tmp_path):
    backed_up(tmp_path, server)
    dsn = f"postgresql://{server.user}@{server.host}:{server.port}/shop"

    result = run_maintainer(config_file(tmp_path, server), "restore", "--latest", "--target-dsn", dsn,
                            env={"HOME": str(tmp_path)})

    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "password" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host={server.host} port={server.port} user={server.user} dbname=shop "
                        f"passfile={tmp_path}/none", connect_timeout=5).close()
