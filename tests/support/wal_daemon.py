"""``maintainer daemon`` as a real process for the WAL tests, and a PostgreSQL
container on a fixed published port (so a restarted container keeps its address)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from .docker_resources import docker_labels, unique_name
from .postgres import PgServer, wait_until_ready
from .s3 import free_port
from .wal_server import allow_replication

MAINTAINER = str(Path(sys.executable).parent / "maintainer")


def start_fixed_port_server(docker_client, image: str, password: str = "wal-test-pw-5d1c") -> PgServer:
    port = free_port()
    container = docker_client.containers.create(
        image, command=["-c", "max_wal_size=256MB"], name=unique_name("maintainer-test-walpg"),
        environment={"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "postgres"},
        labels=docker_labels(), ports={"5432/tcp": ("127.0.0.1", port)}, detach=True)
    try:
        container.start()
        server = PgServer("127.0.0.1", port, "postgres", password, "postgres", container, image)
        wait_until_ready(server)
        allow_replication(server)
        return server
    except BaseException:
        container.remove(force=True, v=True)
        raise


def write_daemon_config(path: Path, server, storage_url: str, *, port: int, state_dir: Path,
                        wal: dict | None = None, notify: dict | None = None) -> Path:
    doc = {
        "storage": {"main": {"url": storage_url}},
        "databases": {"pg": {"host": server.host, "port": server.port, "user": server.user,
                             "password": server.password, "dbname": "postgres", "sslmode": "disable"}},
        "daemon": {"state_dir": str(state_dir), "listen": f"127.0.0.1:{port}", "shutdown_grace": "5s"},
        "jobs": {
            "wal": {"type": "wal_archive", "database": "pg", "storage": "main", "slot": "maint_test",
                    "flush_interval": "1s", "check_interval": "2s", "restart_backoff": "1s",
                    "restart_backoff_max": "4s", **(wal or {})},
            "base": {"type": "pg_basebackup", "database": "pg", "storage": "main", "schedule": "0 3 1 1 *"},
        },
    }
    if notify:
        doc["notify"] = notify
    path.write_text(yaml.safe_dump(doc))
    return path


class WalDaemon:
    def __init__(self, config: Path):
        env = {**os.environ, "MAINTAINER_CATALOG_TTL": "1"}
        self.config = config
        self.proc = subprocess.Popen([MAINTAINER, "-c", str(config), "--log-format", "json", "daemon"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def wait_for(self, name: str, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events(name)) < count:
            assert self.proc.poll() is None, "daemon exited:\n" + "".join(self.lines[-50:])
            assert time.monotonic() < deadline, f"no {name} x{count} in:\n" + "".join(self.lines[-80:])
            time.sleep(0.1)
        return self.events(name)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def receiver_pids(slot: str = "maint_test") -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"^[^ ]*pg_receivewal .*--slot {slot}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
