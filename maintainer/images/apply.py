"""Put running services on their new image, one container at a time, with a rollback.

Plan (``plan_apply``): which containers of the configured compose services run an
image other than the one their tag names now, with old and new digests. A digest
that an earlier run rolled back is not tried again (the job passes those in).

Apply (``apply_container``), for one container:
 1. stop it cleanly (SIGTERM, then its own stop timeout), set its restart policy
    to "no" and rename it aside: it stays, with its image, until the new one is
    healthy (an image a container uses is never pruned);
 2. create the new container with the same name and spec on the new image,
    connect its networks, start it, wait for healthy within ``health_timeout``;
 3. healthy: remove the old container. Not healthy (or the run was cancelled):
    remove the new one, rename the old one back, restore its restart policy and
    start it: the service is back on exactly the previous image.
From the first step on, a signal never leaves the service without a container:
SIGTERM/SIGINT are held back while a rollback runs (bounded by health_timeout).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import asdict, dataclass, field
from typing import Iterator

from maintainer.config.docker_jobs import UpdateApply
from maintainer.dockerapi import COMPOSE_PROJECT, docker_errors
from maintainer.errors import DockerError, MaintainerError
from maintainer.images.recreate import (ASIDE_SUFFIX, COMPOSE_SERVICE, container_name, create_container, create_spec,
                                        remove_container, set_restart_policy, stop_timeout, wait_healthy)
from maintainer.imageref import normalize_tag, parse_ref, repo_of_digest
from maintainer.logs import get_logger

log = get_logger("images.apply")


@dataclass
class ContainerUpdate:
    project: str  # compose project ("" when none)
    service: str
    container: str  # its name
    container_id: str
    image: str  # the reference it was created from (Config.Image)
    old_image_id: str
    old_digest: str  # registry digest when known, else the image id
    new_image_id: str | None
    new_digest: str | None
    outcome: str = "planned"  # planned | updated | rolled_back | rollback_failed | failed | skipped
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def plan_line(self) -> str:
        return (f"service {self.service}: recreate container {self.container} ({self.image}) "
                f"{self.old_digest} -> {self.new_digest or self.new_image_id}")

    def line(self) -> str:
        words = {"updated": "updated", "rolled_back": "ROLLED BACK", "rollback_failed": "ROLLBACK FAILED",
                 "failed": "FAILED", "skipped": "not applied", "planned": "planned"}[self.outcome]
        return (f"service {self.service}: container {self.container} {words} "
                f"{self.old_digest} -> {self.new_digest or self.new_image_id}"
                + (f": {self.detail}" if self.detail else ""))


@dataclass
class Target:
    """What an image_update job's image is now, for the planner."""

    ref: str  # normalized tag: docker.io/library/postgres:15
    image_id: str | None  # local image the tag names (None in a dry run that pulled nothing)
    digest: str | None  # registry digest of that image


@dataclass
class ApplyPlan:
    updates: list[ContainerUpdate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # containers left alone, and why


def _digest_in(image_attrs: dict, ref: str) -> str | None:
    repo = ref.rsplit(":", 1)[0]
    return next((d for r, d in map(repo_of_digest, image_attrs.get("RepoDigests") or []) if r == repo), None)


def read_service_containers(api, options: UpdateApply) -> list[dict]:
    """The full attrs of the running containers of the configured services."""
    found = []
    with docker_errors("list the containers of the services to update"):
        for service in options.services:
            labels = [f"{COMPOSE_SERVICE}={service}"]
            if options.project:
                labels.append(f"{COMPOSE_PROJECT}={options.project}")
            for c in api.containers(filters={"label": labels}):
                found.append(api.inspect_container(c["Id"]))
    return found


def plan_apply(containers: list[dict], targets: dict[str, Target], image_attrs: dict[str, dict],
               rejected: set[tuple[str, str, str]], failed: frozenset[str] | set[str] = frozenset()) -> ApplyPlan:
    """Decide which containers to recreate (pure). ``image_attrs``: image id -> inspect
    attrs of the images the containers run; ``rejected``: (project, service, new digest
    or id) that an earlier run rolled back; ``failed``: normalized refs whose check failed."""
    plan = ApplyPlan()
    for attrs in sorted(containers, key=container_name):
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        service, project = labels.get(COMPOSE_SERVICE, "?"), labels.get(COMPOSE_PROJECT, "")
        name, image = container_name(attrs), (attrs.get("Config") or {}).get("Image", "")
        ref = normalize_tag(image.split("@", 1)[0]) or ""
        target = targets.get(ref)
        if ref in failed:
            plan.notes.append(f"service {service}: container {name} left alone: its image {image} could not be checked")
            continue
        if target is None:
            plan.notes.append(f"service {service}: container {name} runs {image}, which this job does not update")
            continue
        if (attrs.get("HostConfig") or {}).get("AutoRemove"):
            plan.notes.append(f"service {service}: container {name} left alone: it was started with --rm and "
                              "would be gone once stopped, leaving nothing to roll back to")
            continue
        old_id = attrs.get("Image", "")
        old_digest = _digest_in(image_attrs.get(old_id) or {}, target.ref) or old_id
        current = (target.image_id == old_id) if target.image_id else (target.digest == old_digest)
        if current:
            continue
        wanted = target.digest or target.image_id or "?"
        update = ContainerUpdate(project, service, name, attrs["Id"], image, old_id, old_digest, target.image_id,
                                 target.digest)
        if (project, service, wanted) in rejected:
            update.outcome = "skipped"
            update.detail = "this image was rolled back by an earlier run; waiting for a newer one"
        plan.updates.append(update)
    return plan


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM/SIGINT back (they arrive afterwards) while a rollback must finish.
    Only the main thread receives signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def apply_container(api, update: ContainerUpdate, options: UpdateApply, cancel: threading.Event) -> ContainerUpdate:
    """Recreate one container on its new image; roll back when it does not become healthy.

    Sets ``update.outcome`` and ``detail``; raises only when nothing was changed yet
    (DockerError) or, after a completed rollback, a second signal's KeyboardInterrupt.
    """
    with docker_errors(f"inspect container {update.container}"):
        attrs = api.inspect_container(update.container_id)
        old_image = api.inspect_image(attrs["Image"])
    spec = create_spec(attrs, old_image.get("Config") or {}, update.image, update.new_image_id)
    policy = (attrs.get("HostConfig") or {}).get("RestartPolicy")
    aside = f"{update.container}{ASIDE_SUFFIX}"
    new_id = None
    try:
        log.info("update.stopping", container=update.container, timeout=stop_timeout(attrs))
        with docker_errors(f"stop container {update.container}"):
            api.stop(update.container_id, timeout=stop_timeout(attrs))
        set_restart_policy(api, update.container_id, {"Name": "no"})
        with docker_errors(f"rename container {update.container} aside"):
            api.rename(update.container_id, aside)
        new_id = create_container(api, spec)
        with docker_errors(f"start the new container {update.container}"):
            api.start(new_id)
        health = wait_healthy(api, new_id, options.health_timeout, cancel)
    except (DockerError, KeyboardInterrupt) as exc:
        reason = exc.message if isinstance(exc, DockerError) else "interrupted"
        _roll_back(api, update, options, new_id, aside, policy, f"the update failed: {reason}")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return update
    if health.ok:
        remove_container(api, update.container_id)
        update.outcome, update.detail = "updated", health.state
        with docker_errors(f"inspect container {update.container}"):
            update.new_image_id = api.inspect_container(new_id)["Image"]
        log.info("update.applied", container=update.container, new=update.new_digest)
        return update
    if not options.rollback:
        update.outcome = "failed"
        update.detail = (f"new container {health.state}; rollback is off: it stays, the previous container "
                         f"is kept stopped as {aside}")
        return update
    _roll_back(api, update, options, new_id, aside, policy, f"new container {health.state}")
    return update


def _roll_back(api, update: ContainerUpdate, options: UpdateApply, new_id: str | None, aside: str,
               policy: dict | None, why: str) -> None:
    """Bring back the previous container (with signals held); records the outcome and
    the exact state when that fails."""
    with signals_held():
        log.warning("update.rolling_back", container=update.container, reason=why)
        try:
            if new_id is not None:
                remove_container(api, new_id)
            _remove_impostor(api, update)
            with docker_errors(f"rename {aside} back to {update.container}"):
                if container_name(api.inspect_container(update.container_id)) != update.container:
                    api.rename(update.container_id, update.container)
            set_restart_policy(api, update.container_id, policy)
            with docker_errors(f"start the previous container {update.container}"):
                api.start(update.container_id)
            health = wait_healthy(api, update.container_id, options.health_timeout)
        except DockerError as exc:
            update.outcome = "rollback_failed"
            update.detail = f"{why}; rollback failed: {exc.message}; now: {describe_state(api, update, aside)}"
            return
        point_tag(api, update.image, update.old_image_id)
        if health.ok:
            update.outcome = "rolled_back"
            update.detail = f"{why}; back on the previous image, {health.state}"
        else:
            update.outcome = "rollback_failed"
            update.detail = (f"{why}; the previous container is {health.state} after the rollback; "
                             f"now: {describe_state(api, update, aside)}")


def _remove_impostor(api, update: ContainerUpdate) -> None:
    """A new container the engine created under the name while the run was interrupted
    (before its id came back) is removed, so the previous one can have its name again."""
    try:
        with docker_errors(f"inspect container {update.container}"):
            found = api.inspect_container(update.container)
    except DockerError as exc:
        if ": not found: " in exc.message:
            return
        raise
    if found["Id"] != update.container_id:
        remove_container(api, found["Id"])


def point_tag(api, image: str, image_id: str) -> None:
    """Make the service's tag name the image it runs again, so that a later
    ``docker compose up`` does not start the image that was rolled back.
    Best effort: a failure is logged, the service runs either way."""
    try:
        ref = parse_ref(image)
        with docker_errors(f"tag {image}"):
            api.tag(image_id, ref.name, ref.tag, force=True)
    except MaintainerError as exc:
        log.warning("update.retag_failed", image=image, error=exc.message)


def describe_state(api, update: ContainerUpdate, aside: str) -> str:
    """The containers of this service as they are now, for a critical alert."""
    parts = []
    for name in (update.container, aside):
        try:
            attrs = api.inspect_container(name)
        except Exception as exc:  # noqa: BLE001 - an alert must be sent whatever the engine says
            parts.append(f"{name}: {type(exc).__name__}")
            continue
        state = attrs.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        parts.append(f"{name} ({attrs['Id'][:12]}) {state.get('Status')}"
                     + (f"/{health}" if health else "") + f" on image {attrs.get('Image', '')[:19]}")
    return "; ".join(parts)
