"""A plain-data picture of the Docker engine, read once, for the prune planner.

The planner decides on this picture alone (no I/O), so it can be tested over
generated states; ``read_state`` is the only place that fills it from a real
engine. Everything the planner needs to know what is *in use* is here: every
container (running or stopped) with its image, volumes and networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from maintainer.dockerapi import docker_errors

PREDEFINED_NETWORKS = frozenset({"bridge", "host", "none"})


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str  # running | exited | created | paused | restarting | dead
    created: datetime
    finished: datetime | None  # when it last stopped; None if never
    image_id: str
    volumes: tuple[str, ...] = ()  # names of the volumes it mounts
    networks: tuple[str, ...] = ()  # ids of the networks it is attached to
    labels: dict[str, str] = field(default_factory=dict)
    size: int | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")


@dataclass(frozen=True)
class Image:
    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    created: datetime
    size: int
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def dangling(self) -> bool:
        return not self.tags


@dataclass(frozen=True)
class Volume:
    name: str
    driver: str
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    size: int | None = None


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    scope: str
    created: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildCache:
    id: str
    size: int
    created: datetime | None
    last_used: datetime | None
    in_use: bool
    shared: bool


@dataclass
class EngineState:
    containers: list[Container] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    # id -> parent id for every image, intermediate layers included, to find ancestors.
    image_parents: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    build_cache: list[BuildCache] = field(default_factory=list)


def parse_time(value) -> datetime | None:
    """Docker's RFC 3339 strings (nanoseconds, 'Z') or unix seconds -> aware datetime."""
    if value in (None, "", 0, "0001-01-01T00:00:00Z"):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    text = str(value).replace("Z", "+00:00")
    if "." in text:  # trim fractions to microseconds
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.year <= 1:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _tags(repo_tags) -> tuple[str, ...]:
    return tuple(t for t in (repo_tags or []) if t and t != "<none>:<none>")


def read_state(client, *, build_cache: bool = True) -> EngineState:
    """Read containers, images, volumes, networks and build cache from the engine.

    Raises DockerError when the engine refuses or disappears.
    """
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import NotFound

    api = client.api
    state = EngineState()
    with docker_errors("read the Docker engine state"):
        df = api.df()
        volume_sizes = {v["Name"]: (v.get("UsageData") or {}).get("Size") for v in df.get("Volumes") or []}
        container_sizes = {c["Id"]: c.get("SizeRw") for c in df.get("Containers") or []}
        for c in api.containers(all=True):
            finished = None
            if c.get("State") != "running":
                try:
                    finished = parse_time(api.inspect_container(c["Id"])["State"].get("FinishedAt"))
                except NotFound:  # gone meanwhile: the applier re-checks anyway
                    finished = None
            networks = tuple(sorted(n.get("NetworkID") or name
                                    for name, n in ((c.get("NetworkSettings") or {}).get("Networks") or {}).items()))
            volumes = tuple(sorted(m["Name"] for m in c.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")))
            state.containers.append(Container(
                id=c["Id"], name=(c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/"),
                state=c.get("State", ""), created=parse_time(c.get("Created")) or datetime.now(timezone.utc),
                finished=finished, image_id=c.get("ImageID", ""), volumes=volumes, networks=networks,
                labels=c.get("Labels") or {}, size=container_sizes.get(c["Id"])))
        for i in api.images(all=True):
            state.image_parents[i["Id"]] = i.get("ParentId") or ""
        for i in api.images():
            state.images.append(Image(
                id=i["Id"], tags=_tags(i.get("RepoTags")), digests=tuple(i.get("RepoDigests") or ()),
                created=parse_time(i.get("Created")) or datetime.now(timezone.utc), size=i.get("Size") or 0,
                parent=i.get("ParentId") or "", labels=i.get("Labels") or {}))
        for v in (api.volumes().get("Volumes") or []):
            state.volumes.append(Volume(
                name=v["Name"], driver=v.get("Driver", "local"), labels=v.get("Labels") or {},
                created=parse_time(v.get("CreatedAt")), size=_known_size(volume_sizes.get(v["Name"]))))
        for n in api.networks():
            state.networks.append(Network(
                id=n["Id"], name=n["Name"], driver=n.get("Driver", ""), scope=n.get("Scope", "local"),
                created=parse_time(n.get("Created")), labels=n.get("Labels") or {}))
        if build_cache:
            for b in df.get("BuildCache") or []:
                state.build_cache.append(BuildCache(
                    id=b["ID"], size=b.get("Size") or 0, created=parse_time(b.get("CreatedAt")),
                    last_used=parse_time(b.get("LastUsedAt")), in_use=bool(b.get("InUse")),
                    shared=bool(b.get("Shared"))))
    return state


def _known_size(size) -> int | None:
    return size if isinstance(size, int) and size >= 0 else None
