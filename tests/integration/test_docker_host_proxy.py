"""maintainer reaches the engine through DOCKER_HOST=tcp://127.0.0.1:PORT: a relay
started by the test that forwards to /var/run/docker.sock and enforces the same
allow-list as the socket proxy in deploy/compose.yaml (tecnativa/docker-socket-proxy:
one regular expression per API section, and POST=0 refuses every method but GET
and HEAD). A prune dry run and a config snapshot pass with only the read-only
sections docs/daemon.md lists for them; a section taken away is one clear line.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from support.docker_resources import docker_labels, unique_name
from support.s3 import free_port

pytestmark = pytest.mark.integration

MAINTAINER = str(Path(sys.executable).parent / "maintainer")
COMPOSE = "com.docker.compose.project"
SECTIONS = ("auth", "build", "commit", "configs", "containers", "distribution", "events", "exec", "grpc", "images",
            "info", "networks", "nodes", "_ping", "plugins", "secrets", "services", "session", "swarm", "system",
            "tasks", "version", "volumes")
# What a prune dry run and a config snapshot need (docs/daemon.md, deploy/compose.yaml).
READ_ONLY = {"_ping", "version", "containers", "images", "networks", "volumes", "system"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def section_of(path: str) -> str | None:
    """The API section of a request path, as the socket proxy's rules read it."""
    for name in SECTIONS:
        if re.match(rf"^(/v[\d.]+)?(/\w+)?/{name}", path, re.IGNORECASE):
            return name
    return None


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=120)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(self.socket_path)


class AllowListRelay:
    """HTTP on 127.0.0.1 -> the engine's unix socket, for the allowed sections only.

    Records (method, path, allowed) for each request. Bodies are read whole: enough
    for the list and inspect calls under test (no attach, no streaming logs).
    """

    def __init__(self, allowed: set[str], post: bool = False, upstream: str = "/var/run/docker.sock"):
        self.allowed, self.post, self.upstream = set(allowed), post, upstream
        self.requests: list[tuple[str, str, bool]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self):
                path = self.path.split("?", 1)[0]
                ok = (self.command in ("GET", "HEAD") or relay.post) and section_of(path) in relay.allowed
                relay.requests.append((self.command, path, ok))
                body = self._body()
                if not ok:
                    deny = b"<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n"
                    self.send_response(403)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(deny)))
                    self.end_headers()
                    self.wfile.write(deny)
                    return
                upstream = UnixConnection(relay.upstream)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _relay  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def denied(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, ok in self.requests if not ok]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay_factory():
    relays: list[AllowListRelay] = []

    def start(allowed=READ_ONLY, post=False) -> AllowListRelay:
        relays.append(AllowListRelay(allowed, post))
        return relays[-1]

    yield start
    for relay in relays:
        relay.close()


@pytest.fixture
def project(docker_client):
    """A compose-labelled container of a unique project; removed afterwards."""
    name = unique_name("maintainer-test-proj")
    container = docker_client.containers.run(
        "maintainer-test/python:3.11", ["sleep", "300"], detach=True, name=f"{name}-api-1",
        labels={**docker_labels(), COMPOSE: name, "com.docker.compose.service": "api"}, mem_limit="64m")
    yield name, container
    container.remove(force=True, v=True)


def maintainer(config: Path, relay: AllowListRelay, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": relay.url, "HOME": str(config.parent)}
    return subprocess.run([MAINTAINER, "-c", str(config), "--log-format", "json", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def write_config(tmp_path: Path, project: str) -> Path:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "compose.yaml").write_text("services:\n  api:\n    image: contrivance/api:1\n")
    config = tmp_path / "schedules.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"local": {"url": f"file://{tmp_path}/store"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {
            "prune": {"type": "docker_prune", "schedule": "0 5 * * *",
                      "volumes": {"enabled": True, "stateful_projects": [project]}},
            "snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *", "storage": "local",
                         "paths": [str(tmp_path / "srv")], "compose_project": project}}}))
    return config


def test_a_prune_dry_run_and_a_snapshot_work_through_the_read_only_allow_list(tmp_path, relay_factory, project):
    name, container = project
    relay = relay_factory()
    config = write_config(tmp_path, name)

    prune = maintainer(config, relay, "run", "prune", "--dry-run")
    assert prune.returncode == 0, prune.stdout + prune.stderr
    assert "dry run: would remove" in prune.stdout

    snapshot = maintainer(config, relay, "run", "snapshot")
    assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
    result = [json.loads(line) for line in snapshot.stdout.splitlines() if '"job.finished"' in line]
    assert result and result[-1]["status"] == "ok", snapshot.stdout

    assert relay.denied() == []
    used = {section_of(path) for _, path, _ in relay.requests}
    assert {"_ping", "containers", "images", "volumes", "networks", "system"} <= used <= READ_ONLY
    assert {method for method, _, _ in relay.requests} <= {"GET", "HEAD"}
    assert any(path.endswith(f"/containers/{container.id}/json") for _, path, _ in relay.requests)


def test_a_section_the_proxy_refuses_is_one_line_naming_the_allow_list(tmp_path, relay_factory, project):
    name, _ = project
    relay = relay_factory(READ_ONLY - {"system"})
    proc = maintainer(write_config(tmp_path, name), relay, "run", "prune", "--dry-run")
    assert proc.returncode == 1
    assert any(path.endswith("/system/df") for _, path in relay.denied())
    assert proc.stderr.count("\n") == 1 and re.search(
        rf"the Docker API at {re.escape(relay.url)} refused GET /v[\d.]+/system/df \(HTTP 403\); behind a socket "
        r"proxy, allow that API section", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_docker_host_where_nothing_listens_is_one_line_naming_it(tmp_path, project):
    name, _ = project
    config = write_config(tmp_path, name)
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.run([MAINTAINER, "-c", str(config), "run", "prune", "--dry-run"], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": url})
    assert proc.returncode == 1
    assert f"cannot reach the Docker engine at {url}" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
