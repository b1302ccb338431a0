"""PostgreSQL servers in throwaway containers, ready for real queries.

The images honour the official postgres image's interface, so the same helpers
work with ``postgres:15`` as with the locally built ``maintainer-test/postgres:15``.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import docker
import docker.errors
import psycopg
from docker.models.containers import Container

from .docker_resources import docker_labels, unique_name

READY_TIMEOUT_S = 60.0


class PostgresStartError(RuntimeError):
    """The container exited or never answered ``SELECT 1`` in time."""


@dataclass
class PgServer:
    """One running PostgreSQL server, reached from the tests at host:port.

    ``network``/``alias`` are set when the server was also attached to a docker
    network; other containers on it reach the server at ``alias:5432``.
    """

    host: str
    port: int
    user: str
    password: str
    dbname: str
    container: Container
    image: str
    network: str | None = None
    alias: str | None = None
    internal_port: int = field(default=5432)

    def dsn(self, dbname: str | None = None) -> str:
        """libpq URI for clients on this machine (tests, the maintainer code)."""
        return _uri(self.user, self.password, self.host, self.port, dbname or self.dbname)

    def internal_dsn(self, dbname: str | None = None) -> str:
        """libpq URI for containers on ``network``, through the alias."""
        if not self.alias:
            raise ValueError("server was started without a network alias")
        return _uri(self.user, self.password, self.alias, self.internal_port, dbname or self.dbname)

    def connect(self, dbname: str | None = None, **kwargs) -> psycopg.Connection:
        """A psycopg connection in autocommit mode (close it, or use ``with``)."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kwargs)

    def exec(self, *cmd: str) -> str:
        """Run a command in the container as user postgres; return its output.

        Raises RuntimeError with the output when it exits non-zero."""
        result = self.container.exec_run(list(cmd), user="postgres")
        output = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise RuntimeError(f"{cmd!r} exited {result.exit_code}: {output}")
        return output

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")


def _uri(user: str, password: str, host: str, port: int, dbname: str) -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(dbname, safe='')}"


def _tar_of(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def start_postgres(
    client: docker.DockerClient,
    image: str,
    *,
    user: str = "postgres",
    password: str | None = None,
    dbname: str | None = None,
    network: str | None = None,
    alias: str | None = None,
    env: dict[str, str] | None = None,
    command: list[str] | tuple[str, ...] = (),
    init_files: dict[str, str | bytes] | None = None,
    wait: bool = True,
) -> PgServer:
    """Start a PostgreSQL container with port 5432 published on 127.0.0.1 only.

    ``init_files`` go into /docker-entrypoint-initdb.d before the first start;
    ``command`` is passed like ``docker run IMAGE -c fsync=off``. With ``wait``
    (the default) it returns once ``SELECT 1`` works over TCP, and raises
    PostgresStartError (with the container's log) otherwise; on any error the
    container is removed again.
    """
    password = password if password is not None else secrets.token_urlsafe(16)
    dbname = dbname or user
    environment = {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": dbname}
    environment.update(env or {})
    create_kwargs: dict = {}
    if network:
        create_kwargs["network"] = network
        if alias:
            create_kwargs["networking_config"] = {
                network: client.api.create_endpoint_config(aliases=[alias])
            }
    container = client.containers.create(
        image,
        command=list(command) or None,
        name=unique_name("maintainer-test-pg"),
        environment=environment,
        labels=docker_labels(),
        ports={"5432/tcp": ("127.0.0.1", None)},
        detach=True,
        **create_kwargs,
    )
    try:
        if init_files:
            container.put_archive("/docker-entrypoint-initdb.d", _tar_of(init_files))
        container.start()
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
        server = PgServer("127.0.0.1", port, user, password, dbname, container, image, network, alias)
        if wait:
            wait_until_ready(server)
        return server
    except BaseException:
        container.remove(force=True, v=True)
        raise


def wait_until_ready(server: PgServer, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll until ``SELECT 1`` works over TCP; fail early when the container exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with server.connect(connect_timeout=2) as conn:
                conn.execute("SELECT 1").fetchone()
            return
        except psycopg.OperationalError as exc:
            last_error = exc
        server.container.reload()
        if server.container.status in ("exited", "dead"):
            raise PostgresStartError(
                f"{server.image} exited during start-up:\n{server.logs()[-3000:]}"
            )
        time.sleep(0.2)
    raise PostgresStartError(
        f"{server.image} did not answer SELECT 1 within {timeout:.0f} s ({last_error}):\n"
        f"{server.logs()[-3000:]}"
    )


def remove_postgres(server: PgServer) -> None:
    """Remove the container and its anonymous data volume; already gone is fine."""
    try:
        server.container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
