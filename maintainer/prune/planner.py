"""The prune planner: a pure function from an engine picture to a plan.

Every object in scope appears in the plan, either to be removed or kept, with
the rule that decided it. The rules that keep things always win: nothing a
container (running or stopped) uses, nothing protected by label, name pattern,
stateful compose project or an image_update job is ever selected, and never
the old container an image update set aside for its rollback. Being
conservative is deliberate: a volume or image used only by a container this
same plan removes stays until the next run.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Literal

from maintainer.config.docker_jobs import DockerPruneJob
from maintainer.config.types import format_duration
from maintainer.dockerapi import COMPOSE_PROJECT
from maintainer.images.recreate import ASIDE_SUFFIX
from maintainer.imageref import normalize_tag
from maintainer.prune.state import PREDEFINED_NETWORKS, EngineState

ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")
TRUE = frozenset({"true", "1", "yes", "on"})

Kind = Literal["container", "image", "volume", "network", "build_cache"]
KINDS: tuple[Kind, ...] = ("container", "image", "network", "volume", "build_cache")


@dataclass(frozen=True)
class PlanItem:
    kind: Kind
    id: str
    name: str
    size: int | None
    remove: bool
    rule: str
    tags: tuple[str, ...] = ()  # images: the tags to remove, one by one

    def to_dict(self) -> dict:
        d = asdict(self)
        d["action"] = "remove" if self.remove else "keep"
        return d


@dataclass
class PrunePlan:
    items: list[PlanItem] = field(default_factory=list)
    out_of_scope: int = 0  # objects skipped because they do not match the label filter
    build_cache_until: timedelta | None = None  # set when build cache is to be pruned

    @property
    def removals(self) -> list[PlanItem]:
        return [i for i in self.items if i.remove]

    @property
    def kept(self) -> list[PlanItem]:
        return [i for i in self.items if not i.remove]

    @property
    def reclaimable(self) -> int:
        return sum(i.size or 0 for i in self.removals)


def matches_labels(labels: dict[str, str] | None, label_filter: Iterable[str]) -> bool:
    """True when ``labels`` carry every KEY or KEY=VALUE of the filter."""
    labels = labels or {}
    for entry in label_filter:
        key, sep, value = entry.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def is_protected(labels: dict[str, str] | None, protect_label: str) -> bool:
    return str((labels or {}).get(protect_label, "")).strip().lower() in TRUE


def protected_image_refs(config) -> set[str]:
    """Every image reference listed by an image_update job, normalized."""
    refs: set[str] = set()
    for spec in getattr(config, "jobs", {}).values():
        if getattr(spec, "type", None) == "image_update":
            for ref in spec.images:
                ref = ref.split("@", 1)[0]
                n = normalize_tag(ref)
                if n:
                    refs.add(n)
    return refs


def _age(now: datetime, then: datetime | None) -> timedelta:
    return now - then if then else timedelta(0)


def _ago(td: timedelta) -> str:
    return format_duration(timedelta(seconds=max(0, int(td.total_seconds()))))


def _ancestors(start: Iterable[str], parents: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    for image_id in start:
        current = parents.get(image_id, "")
        for _ in range(len(parents) + 1):  # bounded walk even on a corrupt (cyclic) map
            if not current or current in seen:
                break
            seen.add(current)
            current = parents.get(current, "")
    return seen


def plan_prune(state: EngineState, options: DockerPruneJob, now: datetime,
               protected_images: set[str] | frozenset[str] = frozenset()) -> PrunePlan:
    """Decide, for every object in scope, whether to remove it and why."""
    plan = PrunePlan()
    scope = options.label_filter
    protect = options.volumes.protect_label
    add = plan.items.append

    used_images: dict[str, str] = {}
    volume_users: dict[str, str] = {}
    network_users: dict[str, str] = {}
    for c in state.containers:
        used_images.setdefault(c.image_id, c.name)
        for v in c.volumes:
            volume_users.setdefault(v, c.name)
        for n in c.networks:
            network_users.setdefault(n, c.name)
    used_ancestors = _ancestors(used_images, state.image_parents)
    has_children = {p for p in state.image_parents.values() if p}

    # Containers
    opt = options.containers
    for c in sorted(state.containers, key=lambda c: c.name):
        if not matches_labels(c.labels, scope):
            plan.out_of_scope += 1
            continue
        stopped = c.finished or c.created
        age = _age(now, stopped)
        if c.running:
            rule, remove = f"{c.state}", False
        elif c.name.endswith(ASIDE_SUFFIX):
            rule, remove = "set aside by an image update: kept with its image for a rollback", False
        elif is_protected(c.labels, protect):
            rule, remove = f"protected by label {protect}=true", False
        elif c.labels.get(COMPOSE_PROJECT) in options.volumes.stateful_projects:
            rule, remove = f"container of stateful compose project {c.labels[COMPOSE_PROJECT]}", False
        elif not opt.enabled:
            rule, remove = "container pruning is off", False
        elif age < opt.older_than:
            rule, remove = f"stopped {_ago(age)} ago, younger than {_ago(opt.older_than)}", False
        else:
            rule, remove = f"stopped {_ago(age)} ago, older than {_ago(opt.older_than)}", True
        add(PlanItem("container", c.id, c.name, c.size, remove, rule))

    # Images
    for img in sorted(state.images, key=lambda i: (i.tags[:1], i.id)):
        if not matches_labels(img.labels, scope):
            plan.out_of_scope += 1
            continue
        name = ", ".join(img.tags) or f"<none> {img.id.removeprefix('sha256:')[:12]}"
        age = _age(now, img.created)
        if img.id in used_images:
            rule, remove = f"used by container {used_images[img.id]}", False
        elif img.id in used_ancestors:
            rule, remove = "parent of an image a container uses", False
        elif img.id in has_children:
            rule, remove = "parent of another image", False
        elif any(normalize_tag(t) in protected_images for t in img.tags):
            rule, remove = "listed in an image_update job", False
        elif is_protected(img.labels, protect):
            rule, remove = f"protected by label {protect}=true", False
        elif img.dangling:
            if options.dangling_images.enabled:
                rule, remove = "dangling (no tag), unused", True
            else:
                rule, remove = "dangling-image pruning is off", False
        elif not options.unused_images.enabled:
            rule, remove = "unused-image pruning is off", False
        elif age < options.unused_images.older_than:
            rule, remove = f"unused, created {_ago(age)} ago, younger than {_ago(options.unused_images.older_than)}", False
        else:
            rule, remove = f"unused, created {_ago(age)} ago, older than {_ago(options.unused_images.older_than)}", True
        add(PlanItem("image", img.id, name, img.size, remove, rule, tags=img.tags))

    # Networks
    for n in sorted(state.networks, key=lambda n: n.name):
        if not matches_labels(n.labels, scope):
            plan.out_of_scope += 1
            continue
        if n.name in PREDEFINED_NETWORKS or n.scope == "swarm":
            rule, remove = "predefined network", False
        elif n.id in network_users or n.name in network_users:
            rule, remove = f"used by container {network_users.get(n.id) or network_users[n.name]}", False
        elif is_protected(n.labels, protect):
            rule, remove = f"protected by label {protect}=true", False
        elif not options.networks.enabled:
            rule, remove = "network pruning is off", False
        else:
            rule, remove = "no container uses it", True
        add(PlanItem("network", n.id, n.name, None, remove, rule))

    # Volumes
    vopt = options.volumes
    for v in sorted(state.volumes, key=lambda v: v.name):
        if not matches_labels(v.labels, scope):
            plan.out_of_scope += 1
            continue
        project = v.labels.get(COMPOSE_PROJECT)
        pattern = next((p for p in vopt.protected_patterns if fnmatch.fnmatchcase(v.name, p)), None)
        if v.name in volume_users:
            rule, remove = f"used by container {volume_users[v.name]}", False
        elif is_protected(v.labels, protect):
            rule, remove = f"protected by label {protect}=true", False
        elif pattern is not None:
            rule, remove = f"name matches protected pattern {pattern}", False
        elif project is not None and project in vopt.stateful_projects:
            rule, remove = f"volume of stateful compose project {project}", False
        elif not vopt.enabled:
            rule, remove = "volume pruning is off", False
        elif vopt.anonymous_only and not ANONYMOUS.match(v.name):
            rule, remove = "named volume (only anonymous volumes are pruned)", False
        else:
            rule, remove = "no container uses it", True
        add(PlanItem("volume", v.name, v.name, v.size, remove, rule))

    # Build cache: no labels, so a label filter leaves it alone.
    bopt = options.build_cache
    for b in sorted(state.build_cache, key=lambda b: b.id):
        if scope:
            plan.out_of_scope += 1
            continue
        last = b.last_used or b.created
        age = _age(now, last)
        if b.in_use:
            rule, remove = "in use by a running build", False
        elif not bopt.enabled:
            rule, remove = "build-cache pruning is off", False
        elif b.shared:
            # Its data is an image's layer too: the engine keeps it while that image
            # exists, and removing it would free nothing.
            rule, remove = "shared with an image", False
        elif age < bopt.older_than:
            rule, remove = f"last used {_ago(age)} ago, younger than {_ago(bopt.older_than)}", False
        else:
            rule, remove = f"last used {_ago(age)} ago, older than {_ago(bopt.older_than)}", True
        add(PlanItem("build_cache", b.id, b.id[:12], b.size, remove, rule))
    if any(i.kind == "build_cache" and i.remove for i in plan.items):
        plan.build_cache_until = bopt.older_than
    return plan
