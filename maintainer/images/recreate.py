"""Recreate one container on another image, keeping the rest of its spec, through the Engine API.

This is what ``docker compose up -d`` does when a service's image changed: the
container's own Config and HostConfig (name, env, mounts, labels, restart
policy, healthcheck, resources, stop signal and timeout) are sent again with the
new image, and it is attached to the same networks with the same aliases.

What the old image contributed rather than the user (its ENV, labels, CMD,
ENTRYPOINT, healthcheck, working dir, user, exposed ports, volumes) is left out,
so that the new image's defaults apply, as compose would have it. Anonymous
volumes of the old container (an image's VOLUME) are passed on by name, so the
new container mounts the very same data: no volume is ever lost.

Errors are DockerError (from maintainer.dockerapi.docker_errors), one line each.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from maintainer.dockerapi import docker_errors

COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_IMAGE = "com.docker.compose.image"
# The old container of an update, stopped and renamed aside until the new one is
# healthy (prune never removes it: its image is the rollback).
ASIDE_SUFFIX = "-maintainer-previous"
DEFAULT_STOP_TIMEOUT = 10  # seconds, the engine's own default
NO_HEALTHCHECK_SETTLE = 2.0  # a container without a healthcheck must stay running this long
# Config keys an image provides defaults for: dropped when equal to the old image's value.
_IMAGE_DEFAULTS = ("Cmd", "Entrypoint", "Healthcheck", "WorkingDir", "User", "ExposedPorts", "Volumes",
                   "StopSignal", "Shell", "OnBuild")
# Config keys the engine fills in itself for each container.
_PER_CONTAINER = ("Hostname", "Image")


@dataclass
class CreateSpec:
    """The body of POST /containers/create, and the networks to connect after creation
    (API 1.41 attaches one network at creation)."""

    name: str
    body: dict
    extra_networks: dict[str, dict]  # network name -> EndpointConfig


def container_name(attrs: dict) -> str:
    return attrs["Name"].lstrip("/")


def stop_timeout(attrs: dict) -> int:
    """The container's own stop timeout (compose's stop_grace_period), else the engine default."""
    value = (attrs.get("Config") or {}).get("StopTimeout")
    return int(value) if isinstance(value, int) and value >= 0 else DEFAULT_STOP_TIMEOUT


def _strip_image_defaults(config: dict, image_config: dict) -> dict:
    image_config = image_config or {}
    out = {k: v for k, v in config.items() if k not in _PER_CONTAINER}
    for key in _IMAGE_DEFAULTS:
        if key in out and out[key] == image_config.get(key):
            out.pop(key)
    image_env = set(image_config.get("Env") or [])
    out["Env"] = [e for e in config.get("Env") or [] if e not in image_env]
    image_labels = image_config.get("Labels") or {}
    out["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    return out


def _endpoint(settings: dict, container_id: str) -> dict:
    aliases = [a for a in settings.get("Aliases") or [] if a not in (container_id[:12], container_id)]
    endpoint = {"Aliases": aliases or None, "Links": settings.get("Links"),
                "IPAMConfig": settings.get("IPAMConfig"), "DriverOpts": settings.get("DriverOpts")}
    return {k: v for k, v in endpoint.items() if v}


def create_spec(attrs: dict, image_config: dict, image: str, image_id: str | None = None) -> CreateSpec:
    """How to create ``attrs``' container again on ``image`` (pure; ``image_config`` is
    the Config of the image it runs now, to tell the user's settings from the image's;
    ``image_id``, the id ``image`` names now, goes into compose's image label)."""
    body = _strip_image_defaults(copy.deepcopy(attrs.get("Config") or {}), image_config)
    body["Image"] = image
    if image_id and COMPOSE_IMAGE in body["Labels"]:
        # Compose compares this label with the service image's id: kept current, a later
        # `docker compose up -d` sees nothing to change.
        body["Labels"][COMPOSE_IMAGE] = image_id
    host = copy.deepcopy(attrs.get("HostConfig") or {})
    # The old container's anonymous volumes go to the new one by name.
    covered = {b.split(":")[1] for b in host.get("Binds") or [] if b.count(":") >= 1}
    covered |= {m.get("Target") for m in host.get("Mounts") or []}
    for mount in attrs.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in covered and mount.get("Name"):
            mode = "" if mount.get("RW", True) else ":ro"
            host.setdefault("Binds", [])
            host["Binds"] = list(host["Binds"] or []) + [f"{mount['Name']}:{mount['Destination']}{mode}"]
    body["HostConfig"] = host
    mode = host.get("NetworkMode") or "default"
    networks = dict(((attrs.get("NetworkSettings") or {}).get("Networks") or {}))
    extra: dict[str, dict] = {}
    if mode.startswith(("container:", "service:")) or mode in ("host", "none"):
        networks = {}
    if networks:
        first = mode if mode in networks else sorted(networks)[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {first: _endpoint(networks[first], attrs["Id"])}}
        extra = {name: _endpoint(s, attrs["Id"]) for name, s in sorted(networks.items()) if name != first}
    return CreateSpec(container_name(attrs), body, extra)


def create_container(api, spec: CreateSpec) -> str:
    """Create the container of ``spec`` and attach its other networks; returns its id.
    DockerError on failure (a half-made container is removed first)."""
    with docker_errors(f"create container {spec.name}"):
        created = api.create_container_from_config(spec.body, name=spec.name)["Id"]
    try:
        for network, endpoint in spec.extra_networks.items():
            with docker_errors(f"connect {spec.name} to network {network}"):
                api.connect_container_to_network(
                    created, network, aliases=endpoint.get("Aliases"), links=endpoint.get("Links"),
                    ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address"),
                    driver_opt=endpoint.get("DriverOpts"))
    except BaseException:
        remove_container(api, created)
        raise
    return created


def remove_container(api, container_id: str) -> None:
    """Remove a container we created, never its named volumes; gone already is fine."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import NotFound

    try:
        api.remove_container(container_id, force=True, v=False)
    except NotFound:
        pass


def set_restart_policy(api, container_id: str, policy: dict | None) -> None:
    """Change a stopped container's restart policy (``{"Name": "no"}`` keeps the engine
    from starting an old container aside at its next start)."""
    with docker_errors(f"set the restart policy of {container_id[:12]}"):
        api.update_container(container_id, restart_policy=policy or {"Name": "no"})


@dataclass
class Health:
    ok: bool
    state: str  # healthy | running | unhealthy | exited ... | timed out ... | stopped ...


def wait_healthy(api, container_id: str, timeout: timedelta, cancel: threading.Event | None = None,
                 poll: float = 0.5) -> Health:
    """Wait until the container's healthcheck says healthy (or, without one, until it
    has stayed running a moment), at most ``timeout``. "unhealthy" is not final (a slow
    start without a start_period passes through it); an exit or ``cancel`` is."""
    deadline = time.monotonic() + timeout.total_seconds()
    running_since = None
    while True:
        with docker_errors(f"inspect container {container_id[:12]}"):
            state = api.inspect_container(container_id).get("State") or {}
        health = state.get("Health")
        if state.get("Restarting") or not state.get("Running"):
            return Health(False, f"exited with code {state.get('ExitCode')}"
                          + (f": {state['Error']}" if state.get("Error") else ""))
        if health is None:
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since >= NO_HEALTHCHECK_SETTLE:
                return Health(True, "running (no healthcheck)")
        elif health.get("Status") == "healthy":
            return Health(True, "healthy")
        if cancel is not None and cancel.is_set():
            return Health(False, "stopped before it became healthy (the run was cancelled)")
        if time.monotonic() >= deadline:
            return Health(False, f"not healthy within {int(timeout.total_seconds())} s (still {_status(health)})")
        if cancel is not None:
            cancel.wait(poll)
        else:
            time.sleep(poll)


def _status(health: dict | None) -> str:
    """``running``, ``starting`` or ``unhealthy (healthcheck exit 1: <its last output line>)``."""
    if health is None:
        return "running"
    status = health.get("Status") or "starting"
    last = (health.get("Log") or [None])[-1]
    if status != "unhealthy" or not last:
        return status
    output = (last.get("Output") or "").strip().splitlines()
    return f"unhealthy: healthcheck exit {last.get('ExitCode')}" + (f": {output[-1]}" if output else "")
