"""Fixtures for tests that drive real systems: the Docker engine, PostgreSQL servers
in containers, S3 (moto) servers and the loopback registry. scripts/testbed.sh sets
all of them up; scripts/test.sh runs it and then pytest.

Every fixture cleans up after itself, also when the test fails; a session
finalizer removes whatever Docker resources labelled ``maintainer.test=1`` are left
over by this run or by runs that died.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.docker_resources import remove_test_resources, docker_labels, unique_name  # noqa: E402
from support.postgres import PgServer, remove_postgres, start_postgres  # noqa: E402
from support.s3 import (  # noqa: E402
    ProcessS3Server,
    S3Container,
    S3Endpoint,
    ThreadedS3Server,
    delete_bucket,
    start_moto_container,
)

@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory) -> Iterator[None]:
    """Run history from jobs that tests run goes to a temporary directory, not the
    host's /var/lib/maintainer (configs without daemon.state_dir default to this)."""
    previous = os.environ.get("MAINTAINER_STATE_DIR")
    os.environ["MAINTAINER_STATE_DIR"] = str(tmp_path_factory.mktemp("maintainer-state"))
    yield
    if previous is None:
        os.environ.pop("MAINTAINER_STATE_DIR", None)
    else:
        os.environ["MAINTAINER_STATE_DIR"] = previous


SETUP_HINT = "run scripts/testbed.sh (or scripts/test.sh) to set up the test bed"
REGISTRY = "127.0.0.1:5555"

_docker_used = False


# ---------------------------------------------------------------- docker


@pytest.fixture(scope="session")
def docker_client():
    """docker.DockerClient for the local engine; fails (never skips) without one."""
    import docker

    global _docker_used
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means the bed is missing
        pytest.fail(f"Docker engine unreachable ({exc}); {SETUP_HINT}", pytrace=False)
    _docker_used = True
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _remove_leftover_docker_resources():
    """At session end, remove labelled containers, networks and volumes left behind."""
    yield
    if not _docker_used:
        return
    import docker

    client = docker.from_env()
    try:
        remove_test_resources(client)
    finally:
        client.close()


@pytest.fixture
def docker_network(docker_client) -> Iterator[str]:
    """Name of a fresh, labelled bridge network, removed after the test."""
    network = docker_client.networks.create(
        unique_name("maintainer-test-net"), driver="bridge", labels=docker_labels()
    )
    try:
        yield network.name
    finally:
        network.reload()
        for container in network.containers:
            network.disconnect(container, force=True)
        network.remove()


def _require_image(docker_client, image: str) -> str:
    import docker.errors

    try:
        docker_client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {image} not found; {SETUP_HINT}", pytrace=False)
    return image


@pytest.fixture(scope="session")
def pg_image(docker_client) -> str:
    """PostgreSQL 15 image (override with MAINTAINER_TEST_PG_IMAGE, e.g. postgres:15)."""
    return _require_image(
        docker_client, os.environ.get("MAINTAINER_TEST_PG_IMAGE", "maintainer-test/postgres:15")
    )


@pytest.fixture(scope="session")
def pg17_image(docker_client) -> str:
    """PostgreSQL 17 image: a server newer than the local pg_dump 15."""
    return _require_image(
        docker_client, os.environ.get("MAINTAINER_TEST_PG17_IMAGE", "maintainer-test/postgres:17")
    )


# ---------------------------------------------------------------- postgres


@pytest.fixture
def postgres_factory(docker_client, pg_image) -> Iterator[Callable[..., PgServer]]:
    """Start PostgreSQL servers; all are removed (with volumes) after the test.

    ``postgres_factory(image=None, *, user="postgres", password=None, dbname=None,
    network=None, alias=None, env=None, command=(), init_files=None, wait=True)``
    returns a ready PgServer; ``image`` defaults to pg_image. See
    support.postgres.start_postgres.
    """
    servers: list[PgServer] = []

    def start(image: str | None = None, **kwargs) -> PgServer:
        server = start_postgres(docker_client, image or pg_image, **kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            remove_postgres(server)


@pytest.fixture
def postgres(postgres_factory) -> PgServer:
    """A fresh, empty PostgreSQL 15 server on 127.0.0.1 with a random password."""
    return postgres_factory()


@pytest.fixture
def pg17(postgres_factory, pg17_image) -> PgServer:
    """A fresh PostgreSQL 17 server, newer than the local pg_dump."""
    return postgres_factory(pg17_image)


# ---------------------------------------------------------------- s3


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    """The session's shared S3 API (moto, in this process) on 127.0.0.1."""
    server = ThreadedS3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server_factory() -> Iterator[Callable[[], ProcessS3Server]]:
    """Start private S3 servers (moto in a child process, with its own state) that a
    test may ``stop()`` (killed at once) and ``start()`` again; all stopped afterwards."""
    servers: list[ProcessS3Server] = []

    def start() -> ProcessS3Server:
        server = ProcessS3Server()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def _fresh_bucket(s3_server) -> Iterator[str]:
    client = s3_server.client()
    name = unique_name("maintainer-test")
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        delete_bucket(client, name)


@pytest.fixture
def s3_bucket(s3_server) -> Iterator[str]:
    """A fresh, uniquely named bucket on s3_server; emptied and deleted afterwards."""
    yield from _fresh_bucket(s3_server)


@pytest.fixture(scope="module")
def module_s3_bucket(s3_server) -> Iterator[str]:
    """Like s3_bucket, shared by the tests of one module (for module-scoped backups)."""
    yield from _fresh_bucket(s3_server)


@pytest.fixture
def s3_container(docker_client, docker_network) -> Iterator[S3Container]:
    """S3 (maintainer-test/moto:latest) in a container on ``docker_network``, alias
    ``s3``: other containers use ``internal_endpoint_url`` (http://s3:5000), the test
    itself ``endpoint_url``. Removed after the test."""
    image = _require_image(docker_client, "maintainer-test/moto:latest")
    server = start_moto_container(docker_client, image, docker_network, alias="s3")
    try:
        yield server
    finally:
        server.container.remove(force=True, v=True)


# ---------------------------------------------------------------- registry


@pytest.fixture(scope="session")
def registry() -> str:
    """Address of the loopback registry ("127.0.0.1:5555") once /v2/ answers."""
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except (urllib.error.URLError, OSError) as exc:
        pytest.fail(f"registry http://{REGISTRY}/v2/ does not answer ({exc}); {SETUP_HINT}", pytrace=False)
    return REGISTRY
