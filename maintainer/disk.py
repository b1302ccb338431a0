"""Disk watch: free space of the filesystems maintainer cares about, the engine's disk
usage by kind, and the low-space watcher that runs a prune early.

* ``space_checks(config)``: for every docker_prune job with ``when_free_below``,
  the free share of its watched filesystem (``watch_path``, else the engine's
  Docker root directory) against that threshold. ``low_space_conditions`` gives
  the failing ones for /health, each naming the filesystem.
* ``collect_metrics(config)``: Prometheus families for /metrics: the engine's
  disk usage by kind with the reclaimable share, and free/size of the Docker
  root, the watched paths and local (file://) backup storage.
* ``LowSpaceWatcher``: a thread for the daemon that checks every ``interval``
  and, when a watched filesystem goes below its threshold, alerts once and runs
  that prune once (trigger low_space). It does not run it again until the space
  has recovered, and never while that prune job is running already.

Free space is the space available to unprivileged writers (``df``'s Avail).
Reading the engine or a filesystem never raises out of here: an unreadable one
is a failing check (health) or a missing sample (metrics), logged.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from maintainer.dockerapi import connect, docker_errors
from maintainer.errors import MaintainerError
from maintainer.logs import get_logger
from maintainer.notify import notifier_for
from maintainer.units import human_size

if TYPE_CHECKING:
    from maintainer.config.models import Config

log = get_logger("disk")

LOW_SPACE = "low_space"
DF_TTL_SECONDS = 60.0  # the engine's /system/df walks every volume: reused this long


@dataclass(frozen=True)
class Usage:
    path: str
    mount: str  # the mount point the path is on: the filesystem's name in messages
    size: int
    available: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.available / self.size if self.size else 0.0


def mount_point(path: str) -> str:
    p = Path(os.path.realpath(path))
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def usage(path: str) -> Usage:
    """Size and available bytes of the filesystem holding ``path``; MaintainerError if unreadable."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        raise MaintainerError(f"cannot read the free space of {path}: {exc.strerror or exc}") from None
    return Usage(path, mount_point(path), st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


ROOT_RETRY_SECONDS = 600.0  # a refused `docker info` (a socket proxy with INFO=0) is asked again after this
_root_cache: dict[str, tuple[float, str | MaintainerError]] = {}


def docker_root() -> str:
    """The engine's data root (``docker info``'s DockerRootDir); MaintainerError if it cannot
    be read (remembered for a while, so a scrape does not ask a proxy that refuses each time)."""
    key = os.environ.get("DOCKER_HOST", "")
    cached = _root_cache.get(key)
    if cached is None or (isinstance(cached[1], MaintainerError) and time.monotonic() - cached[0] > ROOT_RETRY_SECONDS):
        try:
            client = connect(timeout=30)
            try:
                with docker_errors("read the Docker root directory (docker info)"):
                    value: str | MaintainerError = client.info()["DockerRootDir"]
            finally:
                client.close()
        except MaintainerError as exc:
            value = exc
        _root_cache[key] = cached = (time.monotonic(), value)
    if isinstance(cached[1], MaintainerError):
        raise cached[1]
    return cached[1]


@dataclass(frozen=True)
class SpaceCheck:
    job: str
    path: str
    threshold: float  # percent
    usage: Usage | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.usage is not None and self.usage.free_percent >= self.threshold

    @property
    def message(self) -> str:
        if self.usage is None:
            return f"docker_prune {self.job}: {self.error}"
        u = self.usage
        where = f"filesystem {u.mount}" + (f" (watched path {u.path})" if u.path != u.mount else "")
        state = "below" if not self.ok else "at or above"
        return (f"{where} has {u.free_percent:.1f}% free ({human_size(u.available)} of {human_size(u.size)}), "
                f"{state} {self.threshold:g}% (docker_prune {self.job}.when_free_below)")


def watched(config: "Config") -> list[tuple[str, str | None, float]]:
    """(job, watch_path or None for the Docker root, threshold) of every prune job with when_free_below."""
    return [(name, spec.watch_path, spec.free_below_percent)
            for name, spec in config.jobs_of_type("docker_prune").items()
            if spec.enabled and spec.when_free_below is not None]


def space_checks(config: "Config", read: Callable[[str], Usage] = usage) -> list[SpaceCheck]:
    checks = []
    for job, path, threshold in watched(config):
        try:
            path = path or docker_root()
            checks.append(SpaceCheck(job, path, threshold, read(path)))
        except MaintainerError as exc:
            hint = "" if os.path.exists(path or "/nonexistent") else (
                "; mount that filesystem into maintainer's container and set watch_path")
            checks.append(SpaceCheck(job, path or "(Docker root)", threshold, None, exc.message + hint))
    return checks


def low_space_conditions(config: "Config") -> list[tuple[str, str]]:
    """(job, message naming the filesystem) of every watched filesystem below its threshold."""
    return [(c.job, c.message) for c in space_checks(config) if not c.ok]


# ---------------------------------------------------------------- metrics

_df_cache: dict[str, tuple[float, dict | MaintainerError]] = {}


def engine_disk_usage(ttl: float = DF_TTL_SECONDS) -> dict[str, tuple[int, int]]:
    """kind -> (bytes, reclaimable bytes) for images, containers, volumes, build_cache.
    The engine's answer, or its refusal (MaintainerError), is reused for ``ttl`` seconds."""
    key = os.environ.get("DOCKER_HOST", "")
    cached = _df_cache.get(key)
    if cached is None or time.monotonic() - cached[0] > ttl:
        try:
            client = connect(timeout=60)
            try:
                with docker_errors("read the engine's disk usage"):
                    value: dict | MaintainerError = client.api.df()
            finally:
                client.close()
        except MaintainerError as exc:
            value = exc
        _df_cache[key] = cached = (time.monotonic(), value)
    if isinstance(cached[1], MaintainerError):
        raise cached[1]
    return summarize_df(cached[1])


def summarize_df(df: dict) -> dict[str, tuple[int, int]]:
    """The engine's /system/df answer by kind, as `docker system df` counts it (pure)."""
    images = df.get("Images") or []
    total_images = int(df.get("LayersSize") or sum(i.get("Size") or 0 for i in images))
    used_images = sum((i.get("Size") or 0) - max(i.get("SharedSize") or 0, 0)
                      for i in images if (i.get("Containers") or 0) > 0)
    containers = df.get("Containers") or []
    c_total = sum(c.get("SizeRw") or 0 for c in containers)
    c_free = sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running")
    volumes = df.get("Volumes") or []
    sizes = [((v.get("UsageData") or {}).get("Size") or 0, (v.get("UsageData") or {}).get("RefCount") or 0)
             for v in volumes]
    v_total = sum(max(s, 0) for s, _ in sizes)
    v_free = sum(max(s, 0) for s, refs in sizes if refs == 0)
    cache = df.get("BuildCache") or []
    b_total = sum(b.get("Size") or 0 for b in cache if not b.get("Shared"))
    b_free = sum(b.get("Size") or 0 for b in cache if not b.get("InUse") and not b.get("Shared"))
    return {"images": (total_images, max(total_images - used_images, 0)), "containers": (c_total, c_free),
            "volumes": (v_total, v_free), "build_cache": (b_total, b_free)}


def _metric_paths(config: "Config") -> list[tuple[str, str]]:
    """(role, path): the Docker root, every watched path and every local storage."""
    paths = []
    try:
        paths.append(("docker_root", docker_root()))
    except MaintainerError as exc:
        log.warning("disk.docker_root_unknown", error=exc.message)
    paths += [(f"watch:{job}", path) for job, path, _ in watched(config) if path]
    paths += [(f"storage:{name}", spec.url[len("file://"):]) for name, spec in config.storage.items()
              if spec.url.startswith("file://")]
    return paths


def collect_metrics(config: "Config") -> Iterator[Metric]:
    """maintainer_docker_disk_bytes{kind}, maintainer_docker_disk_reclaimable_bytes{kind},
    maintainer_filesystem_{size,available}_bytes{role,path,mount}, maintainer_filesystem_free_ratio."""
    size = GaugeMetricFamily("maintainer_docker_disk_bytes", "engine disk usage by kind", labels=["kind"])
    free = GaugeMetricFamily("maintainer_docker_disk_reclaimable_bytes",
                             "what a prune could reclaim, by kind (unused images, stopped containers, "
                             "unreferenced volumes, idle build cache)", labels=["kind"])
    try:
        for kind, (total, reclaimable) in engine_disk_usage().items():
            size.add_metric([kind], total)
            free.add_metric([kind], reclaimable)
    except MaintainerError as exc:
        log.warning("disk.df_failed", error=exc.message)
    yield size
    yield free
    labels = ["role", "path", "mount"]
    fs_size = GaugeMetricFamily("maintainer_filesystem_size_bytes", "size of the filesystem", labels=labels)
    fs_avail = GaugeMetricFamily("maintainer_filesystem_available_bytes", "space available on it", labels=labels)
    fs_ratio = GaugeMetricFamily("maintainer_filesystem_free_ratio", "available / size", labels=labels)
    for role, path in _metric_paths(config):
        try:
            u = usage(path)
        except MaintainerError as exc:
            log.warning("disk.unreadable", path=path, error=exc.message)
            continue
        values = [role, path, u.mount]
        fs_size.add_metric(values, u.size)
        fs_avail.add_metric(values, u.available)
        fs_ratio.add_metric(values, round(u.free_percent / 100, 6))
    yield fs_size
    yield fs_avail
    yield fs_ratio


# ---------------------------------------------------------------- watcher


class LowSpaceWatcher:
    """Runs a prune early, once per low-space episode. ``run(job, trigger)`` runs a job
    (the daemon's run path); ``running()`` names the jobs running now."""

    def __init__(self, config_getter: Callable[[], "Config"], run: Callable[[str, str], object],
                 interval: float = 300.0, running: Callable[[], Iterable[str]] = tuple,
                 read: Callable[[str], Usage] = usage):
        self._config = config_getter
        self._run = run
        self._running = running
        self._read = read
        self.interval = interval
        self._low: set[str] = set()  # jobs whose filesystem is in a low-space episode already handled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[str]:
        """One round: returns the prune jobs it ran."""
        config = self._config()
        ran = []
        for c in space_checks(config, self._read):
            if c.usage is None:
                continue  # unreadable: /health says so; nothing to decide on
            if c.ok:
                if c.job in self._low:
                    log.info("disk.space_recovered", job=c.job, message=c.message)
                self._low.discard(c.job)
                continue
            if c.job in self._low:
                continue
            if c.job in set(self._running()):
                log.info("disk.low_space_prune_running", job=c.job)
                continue  # that prune is running now: look again next round
            self._low.add(c.job)
            log.warning("disk.low_space", job=c.job, message=c.message)
            notifier = notifier_for(config.notify)
            if notifier is not None:
                notifier.alert("disk.low_space", f"low disk space: {c.message}; running {c.job} now",
                               severity="warning", job=c.job, filesystem=c.usage.mount,
                               free_percent=round(c.usage.free_percent, 2), threshold_percent=c.threshold)
            self._run(c.job, LOW_SPACE)
            ran.append(c.job)
        return ran

    def _loop(self) -> None:
        """A round at once (a daemon started on a full disk acts now), then every interval."""
        while True:
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive one bad round
                log.error("disk.watch_failed", error=f"{type(exc).__name__}: {exc}")
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="maintainer-diskwatch")
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
