"""Gather what a configuration snapshot holds: configured files (masked) and the
Engine API's description of a compose project's containers, images, volumes and
networks. Everything is returned as archive members (name -> bytes), sorted and
free of run-to-run noise, so identical setups give identical content hashes.

Secret files are never read: anything under /run/secrets (also through a
symlink) is skipped, as is every path matching an ``exclude`` pattern.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from maintainer.dockerapi import COMPOSE_PROJECT, docker_errors
from maintainer.snapshot.mask import Masker

SECRET_DIRS: tuple[str, ...] = ("/run/secrets",)
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # configs are small; more means a wrong path (a data directory)


@dataclass
class Collected:
    members: dict[str, bytes] = field(default_factory=dict)  # archive name -> content
    sources: dict[str, str] = field(default_factory=dict)  # archive name -> original path
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, reason}
    missing: list[str] = field(default_factory=list)  # configured paths that do not exist
    containers: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)  # files archived unmasked: not text


def dumps(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()


def file_member(path: str) -> str:
    return "files/" + os.path.abspath(path).lstrip("/")


def _in_secret_dir(path: str) -> bool:
    for candidate in {os.path.abspath(path), os.path.realpath(path)}:
        for root in SECRET_DIRS:
            if candidate == root or candidate.startswith(root.rstrip("/") + "/"):
                return True
    return False


def _excluded(path: str, patterns: Sequence[str]) -> str | None:
    name = os.path.basename(path)
    for p in patterns:
        if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p):
            return p
    return None


def mask_file(data: bytes, masker: Masker) -> tuple[bytes, bool]:
    """(masked content, is text). Binary files cannot be masked and come back unchanged."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, False
    if "\x00" in text:
        return data, False
    return masker.text(text).encode("utf-8"), True


def collect_files(paths: Sequence[str], exclude: Sequence[str], masker: Masker, out: Collected) -> None:
    """Add each configured file, and every file below each configured directory."""
    for configured in paths:
        if _in_secret_dir(configured):
            out.skipped.append({"path": configured, "reason": "secret files are never read"})
            continue
        if not os.path.lexists(configured):
            out.missing.append(configured)
            continue
        if os.path.isdir(configured):
            for root, dirs, files in os.walk(configured):  # does not follow directory symlinks
                dirs.sort()
                kept = []
                for d in dirs:
                    full = os.path.join(root, d)
                    pattern = _excluded(full, exclude)
                    if pattern or _in_secret_dir(full):
                        out.skipped.append({"path": full, "reason": f"excluded by {pattern}" if pattern
                                            else "secret files are never read"})
                    else:
                        kept.append(d)
                dirs[:] = kept
                for f in sorted(files):
                    _add_file(os.path.join(root, f), exclude, masker, out)
        else:
            _add_file(configured, exclude, masker, out)


def _add_file(path: str, exclude: Sequence[str], masker: Masker, out: Collected) -> None:
    pattern = _excluded(path, exclude)
    if pattern:
        out.skipped.append({"path": path, "reason": f"excluded by {pattern}"})
        return
    if _in_secret_dir(path):
        out.skipped.append({"path": path, "reason": "secret files are never read"})
        return
    if not os.path.isfile(path):  # sockets, fifos, dangling links
        out.skipped.append({"path": path, "reason": "not a regular file"})
        return
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        out.skipped.append({"path": path, "reason": f"larger than {MAX_FILE_BYTES} bytes"})
        return
    if sum(map(len, out.members.values())) + size > MAX_TOTAL_BYTES:
        out.skipped.append({"path": path, "reason": f"the snapshot would exceed {MAX_TOTAL_BYTES} bytes"})
        return
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        out.skipped.append({"path": path, "reason": f"unreadable: {exc.strerror}"})
        return
    masked, is_text = mask_file(data, masker)
    name = file_member(path)
    out.members[name] = masked
    out.sources[name] = os.path.abspath(path)
    if not is_text:
        out.binary.append(os.path.abspath(path))


def container_spec(info: dict, image: dict | None, masker: Masker) -> dict:
    """What a person needs to recreate a container, without state, times or secrets."""
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    short_id = info.get("Id", "")[:12]
    networks = {}
    for name, n in sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).items()):
        aliases = sorted(a for a in (n.get("Aliases") or []) if a != short_id and not info.get("Id", "").startswith(a))
        networks[name] = {"aliases": aliases, "ipam": (n.get("IPAMConfig") or None)}
    health = config.get("Healthcheck")
    if health:
        health = {**health, "Test": masker.args(health.get("Test"))}
    resources_keys = ("Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota",
                      "CpuPeriod", "CpusetCpus", "PidsLimit", "Ulimits", "ShmSize", "BlkioWeight")
    return {
        "name": info.get("Name", "").lstrip("/"),
        "image": config.get("Image"),
        "image_id": info.get("Image"),
        "image_digests": sorted((image or {}).get("RepoDigests") or []),
        "entrypoint": masker.args(config.get("Entrypoint")),
        "command": masker.args(config.get("Cmd")),
        "working_dir": config.get("WorkingDir") or None,
        "user": config.get("User") or None,
        "environment": masker.env_list(config.get("Env") or []),
        "mounts": sorted(({"type": m.get("Type"), "source": m.get("Source"), "destination": m.get("Destination"),
                           "name": m.get("Name"), "read_write": m.get("RW")} for m in info.get("Mounts") or []),
                         key=lambda m: m["destination"] or ""),
        "networks": networks,
        "network_mode": host.get("NetworkMode"),
        "ports": host.get("PortBindings") or {},
        "exposed_ports": sorted((config.get("ExposedPorts") or {}).keys()),
        "labels": masker.mapping(config.get("Labels")),
        "restart_policy": host.get("RestartPolicy"),
        "healthcheck": health,
        "resources": {k: host.get(k) for k in resources_keys if host.get(k) not in (None, 0, "", [])},
        "read_only": host.get("ReadonlyRootfs") or False,
        "cap_add": host.get("CapAdd"),
        "cap_drop": host.get("CapDrop"),
    }


def collect_engine(client, project: str, masker: Masker, out: Collected) -> None:
    """Add engine/containers/<name>.json for each container of the compose project,
    and engine/images.json, volumes.json, networks.json for what they use."""
    # Lazy: the docker SDK costs ~55 ms at start-up, and only a snapshot of an engine needs it.
    from docker.errors import NotFound

    api = client.api
    with docker_errors(f"describe compose project {project}"):
        listed = api.containers(all=True, filters={"label": f"{COMPOSE_PROJECT}={project}"})
        infos = [api.inspect_container(c["Id"]) for c in listed]
        images: dict[str, dict] = {}
        for info in infos:
            if info["Image"] not in images:
                try:
                    images[info["Image"]] = api.inspect_image(info["Image"])
                except NotFound:  # the image was removed; the spec still names it
                    images[info["Image"]] = {"Id": info["Image"]}
        for info in sorted(infos, key=lambda i: i["Name"]):
            spec = container_spec(info, images.get(info["Image"]), masker)
            out.members[f"engine/containers/{spec['name']}.json"] = dumps(spec)
            out.containers.append(spec["name"])
        out.members["engine/images.json"] = dumps(sorted(
            ({"id": i.get("Id"), "tags": sorted(i.get("RepoTags") or []), "digests": sorted(i.get("RepoDigests") or [])}
             for i in images.values()), key=lambda i: i["id"]))
        used_volumes = {m.get("Name") for info in infos for m in info.get("Mounts") or [] if m.get("Name")}
        volumes = []
        for v in api.volumes().get("Volumes") or []:
            if v["Name"] in used_volumes or (v.get("Labels") or {}).get(COMPOSE_PROJECT) == project:
                volumes.append({"name": v["Name"], "driver": v.get("Driver"), "labels": masker.mapping(v.get("Labels")),
                                "options": v.get("Options") or None})
        out.members["engine/volumes.json"] = dumps(sorted(volumes, key=lambda v: v["name"]))
        used_networks = {n for info in infos for n in ((info.get("NetworkSettings") or {}).get("Networks") or {})}
        networks = []
        for n in api.networks():
            if n["Name"] in used_networks or (n.get("Labels") or {}).get(COMPOSE_PROJECT) == project:
                networks.append({"name": n["Name"], "driver": n.get("Driver"), "internal": n.get("Internal", False),
                                 "labels": masker.mapping(n.get("Labels")),
                                 "subnets": sorted(c.get("Subnet", "") for c in (n.get("IPAM") or {}).get("Config") or [])})
        out.members["engine/networks.json"] = dumps(sorted(networks, key=lambda n: n["name"]))
