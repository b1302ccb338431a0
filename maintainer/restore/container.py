"""The throwaway PostgreSQL container a drill restores into, and its clean-up.

A drill container carries maintainer's labels (``maintainer.drill=1``, the run
id, and who owns it: host, pid and pid start time, plus a deadline), memory
and CPU limits, server settings for a disposable restore, and publishes its
port on 127.0.0.1 only (or none at all when it joins a configured network).

It is removed with its volumes on every path: success, failure, timeout and
SIGTERM (the drill's ``engine.Watchdog`` calls ``remove`` from a second thread
while the main thread is blocked in a restore), and ``sweep_leftovers`` removes
drill containers of crashed runs, never those of drills still running elsewhere
on the engine. The restore into it runs through the same engine as an incident
restore, by docker exec (see maintainer.restore.drill).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

import psycopg
from docker.errors import APIError, NotFound

from maintainer.dockerapi import docker_errors
from maintainer.errors import DockerError, Interrupted, JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import copy_into

log = get_logger("restore.container")

DRILL_LABEL = "maintainer.drill"
RUN_LABEL = "maintainer.run_id"
HOST_LABEL = "maintainer.drill.host"
PID_LABEL = "maintainer.drill.pid"
PID_START_LABEL = "maintainer.drill.pid_start"
DEADLINE_LABEL = "maintainer.drill.deadline"

# Settings for a server whose data may be lost at any time: nothing is flushed
# or logged beyond what a crash-free run needs.
DISPOSABLE_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
    "autovacuum": "off",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
}

READY_TIMEOUT_S = 120.0


@dataclass
class DrillSettings:
    image: str
    run_id: str
    memory: int = 1024**3
    cpus: float = 1.0
    tmpfs: bool = False  # PGDATA in memory (counts against the memory limit)
    network: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None  # epoch seconds after which a sweep may remove it
    maintenance_work_mem: str = "512MB"

    def server_args(self) -> list[str]:
        # shared_buffers stays at its default: a restore streams through the OS cache, and
        # bigger buffers only compete with a tmpfs data directory for the memory limit.
        settings = dict(DISPOSABLE_SETTINGS, maintenance_work_mem=self.maintenance_work_mem)
        args = ["postgres"]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args


def owner_labels(run_id: str, deadline: float | None) -> dict[str, str]:
    """Who started a drill container, so a sweep can tell a crashed run from a live one."""
    pid = os.getpid()
    labels = {DRILL_LABEL: "1", RUN_LABEL: run_id, HOST_LABEL: socket.gethostname(), PID_LABEL: str(pid)}
    start = process_start(pid)
    if start:
        labels[PID_START_LABEL] = start
    if deadline is not None:
        labels[DEADLINE_LABEL] = str(int(deadline))
    return labels


def process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (tells pid reuse apart)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def is_abandoned(labels: dict[str, str], *, host: str, now: float) -> bool:
    """True for a drill container whose run is certainly over.

    Its deadline passed, or it was started on this host by a process that no
    longer exists (or whose pid now belongs to a newer process). Containers of
    other hosts are only judged by their deadline.
    """
    deadline = labels.get(DEADLINE_LABEL, "")
    if deadline.isdigit() and now > int(deadline):
        return True
    if labels.get(HOST_LABEL) != host:
        return False
    pid = labels.get(PID_LABEL, "")
    if not pid.isdigit():
        return False
    start = process_start(int(pid))
    if start is None:
        return True
    wanted = labels.get(PID_START_LABEL)
    return wanted is not None and wanted != start


def sweep_leftovers(client, *, now: float | None = None) -> list[str]:
    """Remove (with volumes) the drill containers of runs that crashed; returns their names.

    Uses the engine's plain listing (no per-container inspect), so containers
    that other runs remove meanwhile do not make the sweep fail.
    """

    now = time.time() if now is None else now
    host = socket.gethostname()
    removed = []
    with docker_errors("list leftover drill containers"):
        containers = client.api.containers(all=True, filters={"label": f"{DRILL_LABEL}=1"})
    for info in containers:
        labels = info.get("Labels") or {}
        name = (info.get("Names") or [info["Id"][:12]])[0].lstrip("/")
        if not is_abandoned(labels, host=host, now=now):
            continue
        try:
            client.api.remove_container(info["Id"], force=True, v=True)
        except NotFound:
            continue
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                continue
            raise DockerError(f"remove leftover drill container {name}: {exc.explanation}") from None
        log.warning("drill.leftover_removed", container=name, run_id=labels.get(RUN_LABEL))
        removed.append(name)
    return removed


def _remove(container) -> bool:
    try:
        container.remove(force=True, v=True)
        return True
    except NotFound:
        return False
    except APIError as exc:
        if exc.status_code == 409:  # removal already in progress
            return False
        raise DockerError(f"remove drill container {container.name}: {exc.explanation}") from None


class DrillContainer:
    """One running drill server. Create with ``start``; always ``remove``."""

    def __init__(self, client, container, password: str, settings: DrillSettings):
        self.client = client
        self.container = container
        self.password = password
        self.settings = settings
        self.removed = False
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.container.name

    @classmethod
    def start(cls, client, settings: DrillSettings) -> "DrillContainer":
        """Create and start the container; DockerError (and nothing left behind) on failure."""
        password = secrets.token_urlsafe(24)
        labels = dict(settings.labels)
        labels.update(owner_labels(settings.run_id, settings.deadline))
        kwargs: dict = {
            "name": f"maintainer-drill-{settings.run_id.lower()}-{secrets.token_hex(3)}",
            "command": settings.server_args(),
            # initdb --no-sync: the cluster is thrown away, so nothing needs to reach the disk.
            "environment": {"POSTGRES_PASSWORD": password, "POSTGRES_INITDB_ARGS": "--no-sync"},
            "labels": labels,
            "mem_limit": int(settings.memory),
            "nano_cpus": int(settings.cpus * 1e9),
            "shm_size": "256m",
            "detach": True,
        }
        if settings.tmpfs:
            kwargs["tmpfs"] = {"/var/lib/postgresql/data": "rw,uid=0,mode=0700"}
        if settings.network:
            kwargs["network"] = settings.network
        else:
            kwargs["ports"] = {"5432/tcp": ("127.0.0.1", None)}
        with docker_errors(f"create drill container from {settings.image}"):
            container = client.containers.create(settings.image, **kwargs)
        drill = cls(client, container, password, settings)
        try:
            with docker_errors(f"start drill container {container.name}"):
                container.start()
        except BaseException:
            drill.remove()
            raise
        log.info("drill.container_started", container=container.name, image=settings.image)
        return drill

    def address(self) -> tuple[str, int]:
        """Where this process reaches the server: the published loopback port, or
        the container's address on the configured network."""
        with docker_errors(f"inspect drill container {self.name}"):
            self.container.reload()
        attrs = self.container.attrs["NetworkSettings"]
        if self.settings.network:
            ip = attrs["Networks"][self.settings.network]["IPAddress"]
            return ip, 5432
        ports = attrs["Ports"].get("5432/tcp") or []
        if not ports:
            raise JobError(f"drill container {self.name} has no published port (did it exit?)")
        return "127.0.0.1", int(ports[0]["HostPort"])

    def conninfo(self, dbname: str = "postgres") -> str:
        host, port = self.address()
        return f"host={host} port={port} user=postgres dbname={dbname} connect_timeout=5 application_name=maintainer-drill"

    def connect(self, dbname: str = "postgres"):
        return psycopg.connect(self.conninfo(dbname), password=self.password, autocommit=True)

    def wait_ready(self, cancel: threading.Event | None = None, timeout: float = READY_TIMEOUT_S) -> None:
        """Until ``SELECT 1`` works over TCP; JobError with the server log if it exits or never answers."""

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise Interrupted("drill stopped while its server was starting")
            with docker_errors(f"inspect drill container {self.name}"):
                self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise JobError(f"drill server {self.settings.image} exited during start-up: {self.log_tail()}")
            if self.container.status == "running":
                try:
                    with self.connect() as conn:
                        conn.execute("SELECT 1")
                    return
                except (psycopg.OperationalError, JobError) as exc:
                    last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            time.sleep(0.1)
        raise JobError(f"drill server {self.settings.image} did not answer within {timeout:.0f} s ({last})")

    def out_of_memory(self) -> bool:
        """True when the kernel killed a process of the container for its memory limit."""
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - only for a message
            return False
        state = self.container.attrs.get("State", {})
        return bool(state.get("OOMKilled"))

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.container.logs(tail=lines).decode(errors="replace")
        except Exception:  # noqa: BLE001 - only for a message
            return ""
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def put_file(self, directory: str, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Stream ``size`` bytes into ``directory/name`` as one tar member, without
        holding the file in memory. The stream must yield exactly ``size`` bytes."""
        copy_into(self.client, self.container.id, directory, name, size, chunks,
                  where=f"drill container {self.name}", make_dir=False)

    def exec(self, cmd: list[str], *, user: str = "postgres") -> tuple[int, str]:
        """Run a command inside the container; (exit code, combined output)."""
        with docker_errors(f"run {cmd[0]} in drill container {self.name}"):
            result = self.container.exec_run(cmd, user=user, environment={"PGPASSWORD": self.password})
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def remove(self) -> float:
        """Remove the container and its volumes (idempotent, thread-safe); seconds it took."""
        with self._lock:
            if self.removed:
                return 0.0
            started = time.monotonic()
            _remove(self.container)
            self.removed = True
        log.info("drill.container_removed", container=self.name)
        return time.monotonic() - started
