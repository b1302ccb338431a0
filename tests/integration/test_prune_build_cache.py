"""Build-cache pruning against the real engine.

Build cache carries no labels, so unlike the other prune tests this one cannot be
scoped to its own objects: it runs docker_prune with every other kind switched off,
which prunes the engine's idle BuildKit cache older than a second. The test bed
builds its images with the classic builder, so that cache is what this test makes.
"""

from __future__ import annotations

import os
import subprocess
import time

import docker.errors
import pytest

from maintainer.config.models import Config
from maintainer.runner import run_job
from support.docker_resources import unique_name

pytestmark = pytest.mark.integration

DOCKER_CLI = "/usr/bin/docker"  # docker.io's client, which builds with the engine's own BuildKit
BLOB = 256 * 1024


def cache_records(client) -> dict[str, dict]:
    return {b["ID"]: b for b in client.df().get("BuildCache") or []}


def prune_build_cache(older_than: str, *, dry_run: bool = False):
    config = Config.model_validate({"jobs": {"prune": {
        "type": "docker_prune", "schedule": "0 5 * * *",
        "containers": {"enabled": False}, "dangling_images": {"enabled": False},
        "unused_images": {"enabled": False}, "networks": {"enabled": False},
        "build_cache": {"enabled": True, "older_than": older_than}}}})
    result = run_job(config, "prune", dry_run=dry_run)
    assert result.ok, result.errors
    return result


def planned(result, ids) -> dict[str, tuple[str, str]]:
    return {i["id"]: (i["action"], i["rule"]) for i in result.details["plan"] if i["id"] in ids}


@pytest.fixture
def built(docker_client, tmp_path):
    """A scratch image built with BuildKit from a 256 KiB random file; yields the
    image tag and the ids of the build-cache records the build added."""
    tag = f"{unique_name('maintainer-test-buildcache')}:1"
    (tmp_path / "blob").write_bytes(os.urandom(BLOB))
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
    before = set(cache_records(docker_client))
    done = subprocess.run([DOCKER_CLI, "build", "--quiet", "--tag", tag, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert done.returncode == 0, done.stderr
    records = cache_records(docker_client)
    yield tag, {i: records[i] for i in set(records) - before}
    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.NotFound:
        pass


def test_build_cache_goes_by_age_and_a_layer_shared_with_an_image_stays_until_the_image_is_gone(
        docker_client, built):
    tag, new = built
    shared = {i for i, b in new.items() if b.get("Shared")}
    idle = set(new) - shared
    assert shared and idle, f"expected a layer shared with the image and the build context: {new}"
    assert any(new[i]["Size"] >= BLOB for i in idle)

    # Younger than the limit: planned to stay, and stays.
    young = prune_build_cache("1d")
    assert {i: a for i, (a, _) in planned(young, new).items()} == {i: "keep" for i in new}
    assert all("younger than 1d" in rule for i, (_, rule) in planned(young, idle).items())
    assert set(new) <= set(cache_records(docker_client))

    time.sleep(2)
    # A dry run plans the removal and removes nothing.
    dry = prune_build_cache("1s", dry_run=True)
    assert {i: a for i, (a, _) in planned(dry, idle).items()} == {i: "remove" for i in idle}
    assert set(new) <= set(cache_records(docker_client))

    result = prune_build_cache("1s")
    assert planned(result, shared) == {i: ("keep", "shared with an image") for i in shared}
    removed = {i["id"] for i in result.details["removed"]}
    assert idle <= removed and not removed & shared
    assert result.details["skipped"] == []
    assert result.figures["reclaimed_bytes"] >= BLOB
    left = set(cache_records(docker_client))
    assert not idle & left and shared <= left

    # Once the image is gone its layer is no longer shared, and the next run prunes it.
    docker_client.images.remove(tag, force=True)
    time.sleep(2)
    after = prune_build_cache("1s")
    assert {i: a for i, (a, _) in planned(after, shared).items()} == {i: "remove" for i in shared}
    assert shared <= {i["id"] for i in after.details["removed"]}
    assert not shared & set(cache_records(docker_client))
