"""The test bed works: each real system the other tests rely on answers and behaves
like its production counterpart (the official postgres image, S3, a registry)."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request

import docker.errors
import psycopg
import pytest

from support.docker_resources import run_to_completion, unique_name
from support.s3 import S3Endpoint

pytestmark = pytest.mark.integration


def test_postgres_fixture_runs_real_queries(postgres):
    with postgres.connect() as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 250) g")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (250,)
        version = conn.execute("SHOW server_version_num").fetchone()[0]
    assert 150000 <= int(version) < 160000
    assert postgres.host == "127.0.0.1"
    published = postgres.container.attrs["NetworkSettings"]["Ports"]["5432/tcp"]
    assert [binding["HostIp"] for binding in published] == ["127.0.0.1"]


def test_postgres_image_ships_contrib_extensions(postgres):
    with postgres.connect() as conn:
        for extension in ("pgcrypto", "amcheck", "pg_trgm"):
            conn.execute(f"CREATE EXTENSION {extension}")
        digest = conn.execute("SELECT encode(digest('abc', 'sha256'), 'hex')").fetchone()[0]
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_pg17_server_is_newer_than_local_pg_dump(pg17):
    with pg17.connect() as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])
    assert version >= 170000


def test_image_honours_user_database_and_password(postgres_factory):
    server = postgres_factory(user="app", password="s3cret pass", dbname="shop")
    with server.connect() as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app", "shop")
        method = conn.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' ORDER BY line_number DESC LIMIT 1"
        ).fetchone()[0]
    assert method == "scram-sha-256"
    wrong = f"postgresql://app:wrong@{server.host}:{server.port}/shop"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_image_refuses_to_initialise_without_a_password(docker_client, pg_image):
    status, output = run_to_completion(docker_client, pg_image, timeout=60)
    assert status != 0
    assert "superuser password is not specified" in output


def test_initdb_scripts_run_before_the_server_is_ready(postgres_factory):
    server = postgres_factory(
        dbname="app",
        init_files={
            "01-schema.sql": "CREATE TABLE seeded (n int); INSERT INTO seeded VALUES (1), (2), (3);",
            "02-more.sh": '#!/bin/bash\nset -e\npsql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
            ' -c "INSERT INTO seeded VALUES (4)"\n',
        },
    )
    # The first connection that works must already see everything the scripts did.
    with server.connect() as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM seeded").fetchone() == (4, 10)


def test_extra_server_arguments_take_effect(postgres_factory):
    server = postgres_factory(
        command=["postgres", "-c", "fsync=off", "-c", "wal_level=minimal", "-c", "max_wal_senders=0"]
    )
    with server.connect() as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SHOW wal_level").fetchone() == ("minimal",)
    dashed = postgres_factory(command=["-c", "synchronous_commit=off"])
    with dashed.connect() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)


def test_server_is_reachable_by_alias_on_a_docker_network(postgres_factory, docker_network, docker_client, pg_image):
    server = postgres_factory(network=docker_network, alias="postgres")
    status, output = run_to_completion(
        docker_client, pg_image, ["psql", server.internal_dsn(), "-Atc", "SELECT 40 + 2"], network=docker_network
    )
    assert (status, output.strip()) == (0, "42")


def test_s3_put_and_get(s3_server, s3_bucket):
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="backups/hello.txt", Body=b"hello, bed")
    assert client.get_object(Bucket=s3_bucket, Key="backups/hello.txt")["Body"].read() == b"hello, bed"
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="backups/")
    assert [item["Key"] for item in listed["Contents"]] == ["backups/hello.txt"]


def test_private_s3_server_can_go_down(s3_server_factory):
    server = s3_server_factory()
    client = server.client()
    client.create_bucket(Bucket="private")
    client.put_object(Bucket="private", Key="k", Body=b"v")
    server.stop()
    with pytest.raises(Exception, match="(?i)connect"):
        client.get_object(Bucket="private", Key="k")
    server.start()
    assert server.client().list_buckets()["Buckets"] == []


def _tiny_image_tar(marker: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_registry_push_and_pull(registry, docker_client):
    with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5) as response:
        assert response.status == 200
    repository = f"{registry}/testbed/{unique_name('tiny')}"
    reference = f"{repository}:1"
    docker_client.api.import_image_from_data(_tiny_image_tar(reference), repository=repository, tag="1")
    try:
        result = docker_client.images.push(repository, tag="1", stream=True, decode=True)
        errors = [line["error"] for line in result if "error" in line]
        assert errors == []
        digest = docker_client.images.get_registry_data(reference).id
        assert digest.startswith("sha256:")
        docker_client.images.remove(reference, force=True)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(reference)
        pulled = docker_client.images.pull(repository, tag="1")
        assert reference in pulled.tags
        with urllib.request.urlopen(f"http://{registry}/v2/{repository.split('/', 1)[1]}/tags/list") as response:
            assert json.load(response)["tags"] == ["1"]
    finally:
        try:
            docker_client.images.remove(reference, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_containers_reach_s3_in_a_container(s3_container, docker_client, docker_network):
    s3_container.client().create_bucket(Bucket="shared")
    s3_container.client().put_object(Bucket="shared", Key="from-host", Body=b"hi")
    # Signed for the address other containers use; signing needs no connection.
    inside = S3Endpoint(endpoint_url=s3_container.internal_endpoint_url)
    url = inside.client().generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "from-host"})
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    status, output = run_to_completion(
        docker_client, "maintainer-test/python:3.11", ["python3", "-c", script], network=docker_network
    )
    assert (status, output.strip()) == (0, "hi")
