"""Extract a snapshot for a person to read or reapply, and summarise how the
current state differs from it. Nothing here changes the running setup.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from maintainer.dockerapi import connect
from maintainer.errors import MaintainerError
from maintainer.snapshot.collect import Collected, _in_secret_dir, collect_engine, mask_file
from maintainer.snapshot.manifest import SnapshotManifest
from maintainer.snapshot.mask import Masker


def extract(members: Iterable[tuple[str, bytes]], to: Path) -> dict[str, bytes]:
    """Write every member below ``to`` (which must be empty or absent); returns them.

    Nothing is written until every member is read, so a snapshot whose archive
    fails its checksum (read_members raises after the last member) or holds a
    member that would land outside ``to`` leaves ``to`` as it was."""
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise MaintainerError(f"{to} is not an empty directory; extract into a new one")
    out: dict[str, bytes] = {}
    for name, data in members:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise MaintainerError(f"snapshot member {name!r} would land outside {to}; refusing to extract")
        out[name] = data
    to.mkdir(parents=True, exist_ok=True)
    for name, data in out.items():
        target = to.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, 0o600)
    return out


@dataclass
class Diff:
    files_same: int = 0
    files_changed: list[str] = field(default_factory=list)
    files_missing: list[str] = field(default_factory=list)
    containers_changed: dict[str, list[str]] = field(default_factory=dict)
    containers_missing: list[str] = field(default_factory=list)
    containers_new: list[str] = field(default_factory=list)
    engine_note: str | None = None

    def lines(self, limit: int = 10) -> list[str]:
        out = [f"files: {self.files_same} unchanged, {len(self.files_changed)} changed, "
               f"{len(self.files_missing)} missing now"]
        out += [f"  changed: {p}" for p in self.files_changed[:limit]]
        out += [f"  missing: {p}" for p in self.files_missing[:limit]]
        if self.engine_note:
            out.append(f"containers: {self.engine_note}")
        else:
            out.append(f"containers: {len(self.containers_changed)} changed, {len(self.containers_missing)} gone, "
                       f"{len(self.containers_new)} new")
            out += [f"  changed: {n} ({', '.join(fields)})" for n, fields in sorted(self.containers_changed.items())]
            out += [f"  gone: {n}" for n in self.containers_missing]
            out += [f"  new: {n}" for n in self.containers_new]
        return out

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def diff_against_current(members: dict[str, bytes], manifest: SnapshotManifest, client_factory=None) -> Diff:
    """Compare a snapshot with the files on disk now (masked the same way) and, when the
    snapshot describes a compose project, with its containers now."""
    masker = Masker(manifest.secret_patterns)
    diff = Diff()
    for name, data in sorted(members.items()):
        if not name.startswith("files/"):
            continue
        path = "/" + name[len("files/"):]
        if _in_secret_dir(path) or not os.path.isfile(path):
            diff.files_missing.append(path)
            continue
        try:
            current, _ = mask_file(Path(path).read_bytes(), masker)
        except OSError:
            diff.files_missing.append(path)
            continue
        if current == data:
            diff.files_same += 1
        else:
            diff.files_changed.append(path)
    project = manifest.compose_project
    if not project:
        diff.engine_note = "not part of this snapshot"
        return diff
    try:
        client = (client_factory or connect)()
    except MaintainerError as exc:
        diff.engine_note = f"not compared: {exc.message}"
        return diff
    try:
        now = Collected()
        collect_engine(client, project, masker, now)
    except MaintainerError as exc:
        diff.engine_note = f"not compared: {exc.message}"
        return diff
    finally:
        client.close()
    old = {n: json.loads(d) for n, d in members.items() if n.startswith("engine/containers/")}
    new = {n: json.loads(d) for n, d in now.members.items() if n.startswith("engine/containers/")}
    for name in sorted(old):
        label = name.rsplit("/", 1)[-1].removesuffix(".json")
        if name not in new:
            diff.containers_missing.append(label)
            continue
        changed = sorted(k for k in set(old[name]) | set(new[name]) if old[name].get(k) != new[name].get(k))
        if changed:
            diff.containers_changed[label] = changed
    diff.containers_new = sorted(n.rsplit("/", 1)[-1].removesuffix(".json") for n in new if n not in old)
    return diff
