"""Labels every test container, network and volume carries, and the clean-up that
finds them again.

Each resource is labelled ``maintainer.test=1`` plus the pid of the pytest process
that made it, so a run cleans up after itself and after runs that died, but never
removes what a concurrent run on the same machine is still using.
"""

from __future__ import annotations

import os
import uuid

import docker
import docker.errors

TEST_LABEL = "maintainer.test"
PID_LABEL = "maintainer.test.pid"


def docker_labels() -> dict[str, str]:
    """Labels for any Docker resource a test creates (pass them to containers.run)."""
    return {TEST_LABEL: "1", PID_LABEL: str(os.getpid())}


def unique_name(prefix: str) -> str:
    """A name no other test or run uses, e.g. for a network or a bucket."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _is_orphan(labels: dict[str, str] | None) -> bool:
    """True when the resource belongs to this run or to a run that is gone."""
    pid = (labels or {}).get(PID_LABEL)
    if not pid or not pid.isdigit() or int(pid) == os.getpid():
        return True
    return not os.path.exists(f"/proc/{pid}")


def remove_test_resources(client: docker.DockerClient) -> list[str]:
    """Remove labelled containers (with their volumes), networks and volumes that
    belong to this run or to dead runs. Returns what was removed, for the log."""
    removed: list[str] = []
    selector = {"label": f"{TEST_LABEL}=1"}
    for container in client.containers.list(all=True, filters=selector):
        if _is_orphan(container.labels):
            try:
                container.remove(force=True, v=True)
                removed.append(f"container {container.name}")
            except docker.errors.NotFound:
                pass
    for network in client.networks.list(filters=selector):
        if _is_orphan(network.attrs.get("Labels")):
            try:
                network.reload()
                for container in network.containers:
                    network.disconnect(container, force=True)
                network.remove()
                removed.append(f"network {network.name}")
            except docker.errors.NotFound:
                pass
    for volume in client.volumes.list(filters=selector):
        if _is_orphan(volume.attrs.get("Labels")):
            try:
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
            except docker.errors.NotFound:
                pass
    return removed


def run_to_completion(
    client: docker.DockerClient, image: str, command: list[str] | None = None, timeout: float = 120, **kwargs
) -> tuple[int, str]:
    """Run a labelled one-off container, wait for it, and remove it with its volumes
    (``containers.run(remove=True)`` would leave the image's anonymous volumes behind).
    Returns (exit code, combined output)."""
    container = client.containers.run(
        image, command, detach=True, labels=docker_labels(), name=unique_name("maintainer-test-run"), **kwargs
    )
    try:
        status = container.wait(timeout=timeout)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True, v=True)
