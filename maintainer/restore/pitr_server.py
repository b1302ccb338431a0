"""The throwaway recovery server of a point-in-time restore: a Docker volume for the
recovered cluster and a container of the server's major version that runs it.

The container idles (``sleep``) while maintainer streams the base backup's tar
into the volume and prepares recovery; then PostgreSQL is started inside it by
``docker exec``, with every recovery setting on its command line (nothing of
it is written into the cluster, so a volume kept by ``--into-volume`` starts
later as an ordinary server): its own pg_hba (local trust) and socket directory
under /pitr, no TCP listener. Every path removes the container; the volume is
removed too unless the caller keeps it (``keep_volume``).

Container and scratch volume carry the drill's owner labels (host, pid, pid
start, deadline), so ``container.sweep_leftovers`` and ``sweep_volumes`` remove
what crashed runs left, never what a live run uses. A volume named by
``--into-volume`` is never swept: only the operator removes it.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field

from docker.errors import APIError, NotFound

from maintainer.dockerapi import docker_errors
from maintainer.errors import DockerError, JobError
from maintainer.logs import get_logger
from maintainer.postgres.client import copy_into
from maintainer.restore.container import is_abandoned, owner_labels

log = get_logger("restore.pitr")

PGDATA = "/var/lib/postgresql/data"
WORK = "/pitr"
SOCKET_DIR = f"{WORK}/run"
SCRATCH_LABEL = "maintainer.pitr.scratch"
KEPT_LABEL = "maintainer.pitr.restored"
HBA = "local all all trust\n"
# FATAL lines of clients (maintainer's own probes) turned away while the server starts or recovers
_CONNECTION_NOISE = ("the database system is starting up", "not yet accepting connections",
                     "the database system is shutting down")
HBA_TCP = "host all all all scram-sha-256\n"  # the cluster's own roles and passwords


@dataclass
class ServerSettings:
    image: str
    run_id: str
    user: str  # a role of the recovered cluster (the databases entry's user)
    volume: str | None = None  # --into-volume NAME; None: a scratch volume removed at the end
    labels: dict[str, str] = field(default_factory=dict)
    memory: int = 2 * 1024**3
    cpus: float = 2.0
    deadline: float | None = None
    durable: bool = False  # fsync on (a kept volume); off for a scratch cluster
    publish: bool = False  # also listen on a port published on 127.0.0.1 (password auth): the drill's checks


class RecoveryServer:
    """One recovery container and its volume. ``create``, then always ``remove``."""

    def __init__(self, client, settings: ServerSettings, container, volume: str, scratch: bool):
        self.client = client
        self.settings = settings
        self.container = container
        self.volume = volume
        self.scratch = scratch
        self.removed = False
        self._lock = threading.Lock()
        self._owner: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.container.name

    @classmethod
    def create(cls, client, settings: ServerSettings) -> RecoveryServer:
        """Create the volume and start the idle container. DockerError (nothing left) on failure;
        JobError when the --into-volume name exists already (it is never touched)."""
        labels = dict(settings.labels)
        labels.update(owner_labels(settings.run_id, settings.deadline))
        token = secrets.token_hex(3)
        scratch = settings.volume is None
        volume = settings.volume or f"maintainer-pitr-{settings.run_id.lower()}-{token}"
        with docker_errors(f"look for volume {volume}"):
            existing = [v.name for v in client.volumes.list(filters={"name": volume})]
        if volume in existing:
            raise JobError(f"volume {volume} exists already; choose another --into-volume name (it was not touched)")
        vol_labels = dict(settings.labels, **({SCRATCH_LABEL: "1", **owner_labels(settings.run_id, settings.deadline)}
                                              if scratch else {KEPT_LABEL: time.strftime("%Y%m%dT%H%M%SZ",
                                                                                         time.gmtime())}))
        with docker_errors(f"create volume {volume}"):
            client.volumes.create(name=volume, labels=vol_labels)
        try:
            with docker_errors(f"create recovery container from {settings.image}"):
                container = client.containers.create(
                    settings.image, entrypoint=["sleep", "infinity"], command=[],
                    name=f"maintainer-pitr-{settings.run_id.lower()}-{token}", labels=labels,
                    volumes={volume: {"bind": PGDATA, "mode": "rw"}}, mem_limit=int(settings.memory),
                    nano_cpus=int(settings.cpus * 1e9), shm_size="256m", detach=True,
                    **({"ports": {"5432/tcp": ("127.0.0.1", None)}} if settings.publish else {"network_mode": "none"}))
        except BaseException:
            _remove_volume(client, volume)
            raise
        server = cls(client, settings, container, volume, scratch)
        try:
            with docker_errors(f"start recovery container {container.name}"):
                container.start()
            server.run(["sh", "-c", f"mkdir -p {WORK}/wal {SOCKET_DIR} && chown -R postgres:postgres {WORK}"],
                       user="root", what="prepare the recovery container")
        except BaseException:
            server.remove(keep_volume=False)
            raise
        log.info("pitr.server_created", container=container.name, volume=volume, image=settings.image)
        return server

    # -- running things inside -------------------------------------------------
    def exec(self, cmd: list[str], *, user: str = "postgres") -> tuple[int, str]:
        """(exit code, combined output) of a command inside the container."""
        with docker_errors(f"run {cmd[0]} in recovery container {self.name}"):
            result = self.container.exec_run(cmd, user=user)
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def run(self, cmd: list[str], *, user: str = "postgres", what: str) -> str:
        """Its output; JobError naming ``what`` and the last output line when it fails."""
        code, out = self.exec(cmd, user=user)
        if code != 0:
            last = (out.strip().splitlines() or ["no output"])[-1]
            raise JobError(f"{what} failed in recovery container {self.name} (exit {code}): {last}")
        return out

    def put(self, directory: str, name: str, data: bytes) -> None:
        copy_into(self.client, self.container.id, directory, name, len(data), [data],
                  where=f"recovery container {self.name}", make_dir=False)

    def put_files(self, directory: str, files: list[tuple[str, bytes]]) -> None:
        """Several files in one tar, extracted in order, owned by postgres (recovery opens
        a staged segment after renaming it into pg_wal)."""
        if self._owner is None:
            out = self.run(["sh", "-c", "id -u postgres; id -g postgres"], what="look up user postgres")
            uid, gid = (int(x) for x in out.split()[:2])
            self._owner = (uid, gid)
        with docker_errors(f"copy {files[0][0]} into recovery container {self.name}"):
            ok = self.client.api.put_archive(self.container.id, directory, _owned_tar(files, *self._owner))
        if not ok:
            raise DockerError(f"copy {files[0][0]} into recovery container {self.name}: refused by the engine")

    def put_stream(self, directory: str, chunks) -> None:
        """Extract a tar stream (the base backup) into ``directory``."""
        with docker_errors(f"copy the base backup into recovery container {self.name}"):
            ok = self.client.api.put_archive(self.container.id, directory, chunks)
        if not ok:
            raise DockerError(f"copy the base backup into recovery container {self.name}: refused by the engine")

    def read_file(self, path: str) -> str:
        code, out = self.exec(["cat", path])
        return out if code == 0 else ""

    def psql(self, sql: str, dbname: str = "postgres") -> tuple[int, str]:
        return self.exec(["psql", "-X", "-A", "-t", "-q", "-h", SOCKET_DIR, "-U", self.settings.user,
                          "-d", dbname, "-c", sql])

    # -- the server ----------------------------------------------------------
    def start_postgres(self, settings: dict[str, str]) -> None:
        """Start PostgreSQL on the volume, its log in /pitr/server.log, with ``settings``
        and the recovery server's own: socket only, local trust, no archiving."""
        if not self.read_file(f"{WORK}/pg_hba.conf"):
            self.put(WORK, "pg_hba.conf", (HBA + (HBA_TCP if self.settings.publish else "")).encode())
        every = {"listen_addresses": "*" if self.settings.publish else "", "unix_socket_directories": SOCKET_DIR, "hba_file": f"{WORK}/pg_hba.conf",
                 "archive_mode": "off", "logging_collector": "off", "port": "5432"}
        if not self.settings.durable:
            every.update(fsync="off", synchronous_commit="off")
        every.update(settings)
        args = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in every.items())
        command = f"exec postgres -D {PGDATA} {args} >>{WORK}/server.log 2>&1"
        with docker_errors(f"start PostgreSQL in recovery container {self.name}"):
            exec_id = self.client.api.exec_create(self.container.id, ["sh", "-c", command], user="postgres")
            self.client.api.exec_start(exec_id["Id"], detach=True)

    def address(self) -> tuple[str, int]:
        """The published loopback port (``publish`` only)."""
        with docker_errors(f"inspect recovery container {self.name}"):
            self.container.reload()
        ports = self.container.attrs["NetworkSettings"]["Ports"].get("5432/tcp") or []
        if not ports:
            raise JobError(f"recovery container {self.name} has no published port")
        return "127.0.0.1", int(ports[0]["HostPort"])

    def postgres_running(self) -> bool:
        code, _ = self.exec(["pg_ctl", "status", "-D", PGDATA])
        return code == 0

    def stop_postgres(self, mode: str = "fast") -> None:
        self.exec(["pg_ctl", "stop", "-D", PGDATA, "-m", mode, "-w", "-t", "120"])

    def log_lines(self) -> list[str]:
        return self.read_file(f"{WORK}/server.log").splitlines()

    def log_problem(self) -> str:
        """The server log's first FATAL or PANIC line (or its last line)."""
        lines = [line for line in self.log_lines() if not any(noise in line for noise in _CONNECTION_NOISE)]
        for line in lines:
            if "FATAL:" in line or "PANIC:" in line:
                return line.split(":  ", 1)[-1].strip() if ":  " in line else line.strip()
        return lines[-1].strip() if lines else "no server log"

    def remove(self, *, keep_volume: bool | None = None) -> float:
        """Remove the container, and the volume unless kept (default: keep only a
        named --into-volume volume). Idempotent and thread-safe; seconds it took."""
        keep = (not self.scratch) if keep_volume is None else keep_volume
        with self._lock:
            if self.removed:
                return 0.0
            started = time.monotonic()
            _remove_container(self.container)
            if not keep:
                _remove_volume(self.client, self.volume)
            self.removed = True
        log.info("pitr.server_removed", container=self.name, volume=None if keep else self.volume)
        return time.monotonic() - started


def _owned_tar(files: list[tuple[str, bytes]], uid: int, gid: int):
    """A tar stream of ``files`` (mode 0600, owned by uid:gid)."""
    now = int(time.time())
    for name, data in files:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o600, uid, gid, now
        yield info.tobuf(format=tarfile.GNU_FORMAT)
        yield data
        yield b"\0" * ((-len(data)) % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _remove_container(container) -> None:
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise DockerError(f"remove recovery container {container.name}: {exc.explanation}") from None


def _remove_volume(client, name: str) -> None:
    """Remove a volume; retried briefly while the engine still holds it for a removed container."""

    for attempt in range(20):
        try:
            client.api.remove_volume(name, force=True)
            return
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code != 409 or attempt == 19:
                raise DockerError(f"remove volume {name}: {exc.explanation}") from None
            time.sleep(0.25)


def sweep_volumes(client, *, now: float | None = None) -> list[str]:
    """Remove scratch recovery volumes of runs that crashed (their owner is gone or
    their deadline passed) and that no container uses; their names."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed = []
    with docker_errors("list leftover recovery volumes"):
        volumes = client.api.volumes(filters={"label": f"{SCRATCH_LABEL}=1"}).get("Volumes") or []
        used = {m.get("Name") for c in client.api.containers(all=True) for m in (c.get("Mounts") or [])}
    for info in volumes:
        if info["Name"] in used or not is_abandoned(info.get("Labels") or {}, host=host, now=now):
            continue
        _remove_volume(client, info["Name"])
        log.warning("pitr.leftover_volume_removed", volume=info["Name"])
        removed.append(info["Name"])
    return removed
