"""Carry out a prune plan, re-checking every object right before removing it.

Between planning and applying, another process may start a container on a
volume, re-tag an image or remove something itself. Each removal therefore
looks again first; what has vanished or become used is skipped and reported,
never an error. The engine's own refusals (409 conflict: in use) count the
same way. Only unexpected engine failures are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maintainer.dockerapi import error_line
from maintainer.logs import get_logger
from maintainer.prune.planner import PlanItem, PrunePlan, is_protected

log = get_logger("prune")


@dataclass
class PruneReport:
    removed: list[PlanItem] = field(default_factory=list)
    skipped: list[tuple[PlanItem, str]] = field(default_factory=list)
    failed: list[tuple[PlanItem, str]] = field(default_factory=list)
    reclaimed: int = 0


class _Skip(Exception):
    """The object changed since the plan; the message says how."""


def apply_plan(client, plan: PrunePlan, *, protect_label: str, cancel=None) -> PruneReport:
    """Remove what the plan selects, in the order containers, images, networks, volumes, build cache."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import APIError, NotFound

    report = PruneReport()
    api = client.api
    order = {"container": 0, "image": 1, "network": 2, "volume": 3}
    for item in sorted((i for i in plan.removals if i.kind != "build_cache"), key=lambda i: order[i.kind]):
        if cancel is not None and cancel.is_set():
            report.skipped.append((item, "run was stopped"))
            continue
        try:
            _REMOVERS[item.kind](api, item, protect_label)
        except _Skip as why:
            report.skipped.append((item, str(why)))
            log.info("prune.skipped", kind=item.kind, name=item.name, reason=str(why))
        except NotFound:
            report.skipped.append((item, "gone since the plan"))
            log.info("prune.skipped", kind=item.kind, name=item.name, reason="gone")
        except APIError as exc:
            if exc.status_code == 409:  # the engine says it is in use now
                report.skipped.append((item, f"in use now: {error_line(exc)}"))
                log.info("prune.skipped", kind=item.kind, name=item.name, reason=error_line(exc))
            else:
                report.failed.append((item, error_line(exc)))
                log.error("prune.failed", kind=item.kind, name=item.name, error=error_line(exc))
        else:
            report.removed.append(item)
            report.reclaimed += item.size or 0
            log.info("prune.removed", kind=item.kind, name=item.name, bytes=item.size or 0)
    if plan.build_cache_until is not None and not (cancel is not None and cancel.is_set()):
        _prune_build_cache(api, plan, report)
    return report


def _remove_container(api, item: PlanItem, protect_label: str) -> None:
    info = api.inspect_container(item.id)
    state = info.get("State") or {}
    if state.get("Running") or state.get("Paused") or state.get("Restarting"):
        raise _Skip("running now")
    if is_protected((info.get("Config") or {}).get("Labels"), protect_label):
        raise _Skip(f"protected by label {protect_label}=true now")
    api.remove_container(item.id, v=False, force=False)  # never its volumes


def _remove_image(api, item: PlanItem, protect_label: str) -> None:
    info = api.inspect_image(item.id)
    tags = tuple(t for t in info.get("RepoTags") or [] if t != "<none>:<none>")
    if set(tags) != set(item.tags):
        raise _Skip("its tags changed since the plan")
    if is_protected((info.get("Config") or {}).get("Labels"), protect_label):
        raise _Skip(f"protected by label {protect_label}=true now")
    users = api.containers(all=True, filters={"ancestor": item.id})
    if users:
        raise _Skip(f"used by container {(users[0].get('Names') or ['?'])[0].lstrip('/')} now")
    for tag in tags:
        api.remove_image(tag, force=False, noprune=False)
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import NotFound

    try:
        api.inspect_image(item.id)
    except NotFound:  # removed with its last tag, as expected
        return
    api.remove_image(item.id, force=False, noprune=False)


def _remove_network(api, item: PlanItem, protect_label: str) -> None:
    info = api.inspect_network(item.id)
    if info.get("Containers"):
        raise _Skip("a container is attached now")
    if is_protected(info.get("Labels"), protect_label):
        raise _Skip(f"protected by label {protect_label}=true now")
    if api.containers(all=True, filters={"network": item.id}):
        raise _Skip("a container uses it now")
    api.remove_network(item.id)


def _remove_volume(api, item: PlanItem, protect_label: str) -> None:
    info = api.inspect_volume(item.id)
    if is_protected(info.get("Labels"), protect_label):
        raise _Skip(f"protected by label {protect_label}=true now")
    users = api.containers(all=True, filters={"volume": item.id})
    if users:
        raise _Skip(f"used by container {(users[0].get('Names') or ['?'])[0].lstrip('/')} now")
    api.remove_volume(item.id, force=False)


_REMOVERS = {"container": _remove_container, "image": _remove_image,
             "network": _remove_network, "volume": _remove_volume}


def _prune_build_cache(api, plan: PrunePlan, report: PruneReport) -> None:
    """BuildKit prunes by age only: one call with the same ``until`` the plan used."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import APIError

    items = [i for i in plan.removals if i.kind == "build_cache"]
    seconds = int(plan.build_cache_until.total_seconds())
    try:
        result = api.prune_builds(filters={"until": f"{seconds}s"})
    except APIError as exc:
        for item in items:
            report.failed.append((item, error_line(exc)))
        return
    removed_ids = set((result or {}).get("CachesDeleted") or [])
    for item in items:
        if item.id in removed_ids:
            report.removed.append(item)
        else:
            report.skipped.append((item, "kept by the engine (used again since the plan)"))
    report.reclaimed += int((result or {}).get("SpaceReclaimed") or 0)
