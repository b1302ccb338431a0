"""The prune, update-images and snapshot entries of the shipped schedules.yaml load and
run on the real engine, with only what must point at the test bed changed: the
prune's scope (never an unscoped prune here), the image list (no internet) and
the storage and paths."""

from __future__ import annotations

import io
import tarfile
import uuid
from pathlib import Path

import pytest

from maintainer.config import load_config
from maintainer.config.models import StorageSpec
from maintainer.runner import run_job
from support.docker_resources import docker_labels, unique_name

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[2] / "schedules.yaml"


@pytest.fixture
def shipped(tmp_path):
    config = load_config(SHIPPED, env={})
    config.storage["local"] = StorageSpec(url=f"file://{tmp_path / 'store'}")
    config.daemon.state_dir = str(tmp_path / "state")  # not the host's /var/lib/maintainer/state
    return config


def test_the_shipped_prune_runs_scoped_and_removes_an_old_dangling_image(shipped, docker_client):
    run = uuid.uuid4().hex
    labels = {**docker_labels(), "maintainer.test.run": run}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    docker_client.api.import_image_from_data(buf.getvalue(), changes=[f'LABEL "{k}"="{v}"' for k, v in labels.items()])
    image_id = docker_client.images.list(filters={"label": f"maintainer.test.run={run}"})[0].id
    try:
        spec = shipped.jobs["prune"]
        assert spec.volumes.enabled is False and spec.volumes.stateful_projects == ["contrivance"]
        shipped.jobs["prune"] = spec.model_copy(update={"label_filter": [f"maintainer.test.run={run}"]})
        outcome = run_job(shipped, "prune")
        assert outcome.ok, outcome.errors
        assert [i["id"] for i in outcome.details["removed"]] == [image_id]
    finally:
        for img in docker_client.images.list(filters={"label": f"maintainer.test.run={run}"}):
            docker_client.images.remove(img.id, force=True)


def test_the_shipped_update_images_job_runs_against_the_loopback_registry(shipped, docker_client, registry):
    repo = f"{registry}/{unique_name('maintainer-test-shipped')}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    docker_client.api.import_image_from_data(buf.getvalue(), repository=repo, tag="1",
                                             changes=[f'LABEL "{k}"="{v}"' for k, v in docker_labels().items()])
    try:
        for line in docker_client.api.push(repo, tag="1", stream=True, decode=True):
            assert "error" not in line, line
        shipped.jobs["update-images"] = shipped.jobs["update-images"].model_copy(update={"images": [f"{repo}:1"]})
        outcome = run_job(shipped, "update-images")
        assert outcome.ok, outcome.errors
        assert outcome.figures == {"updated": 0, "current": 1, "failed": 0}
    finally:
        docker_client.images.remove(f"{repo}:1", force=True)


def test_the_shipped_snapshot_job_runs(shipped, tmp_path):
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    shipped.jobs["snapshot"] = shipped.jobs["snapshot"].model_copy(update={
        "storage": "local", "paths": [str(tmp_path / "compose.yaml")],
        "compose_project": unique_name("maintainer-test-none")})
    outcome = run_job(shipped, "snapshot")
    assert outcome.ok, outcome.errors
    assert outcome.figures["stored"] == 1 and outcome.figures["files"] == 1
