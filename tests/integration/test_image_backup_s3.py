"""image_backup into S3 (a real S3 API server): the same blobs, sets and restore as
on local storage, and a dry run that stores nothing."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import docker.errors
import pytest

from maintainer.config.loader import parse_config
from maintainer.images.backup_store import BLOBS, find_set
from maintainer.images.load import restore_image
from maintainer.crypto.keyring import Keyring
from maintainer.runner import run_job
from maintainer.storage import open_storage
from support.docker_resources import docker_labels
from support.pgdata import s3_storage

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny(docker_client):
    """A one-file image, imported here; removed afterwards."""
    tag = f"maintainer-test/imgbak-s3-{uuid.uuid4().hex[:12]}:1"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = uuid.uuid4().bytes * 1000
        info = tarfile.TarInfo("payload")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    changes = [f'LABEL "{k}"="{v}"' for k, v in docker_labels().items()]
    repository, _, name = tag.rpartition(":")
    docker_client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=name, changes=changes)
    yield tag
    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


def test_images_saved_to_s3_restore_with_the_same_id(docker_client, tiny, s3_server, s3_bucket):
    url, extra = s3_storage(s3_server, s3_bucket)
    config = parse_config(json.dumps({"storage": {"s3": {"url": url, **extra}}, "jobs": {"images": {
        "type": "image_backup", "schedule": "0 2 * * *", "storage": "s3", "images": [tiny]}}}), "s3.yaml")
    storage = open_storage(config.storage["s3"], "s3")
    image_id = docker_client.images.get(tiny).id

    plan = run_job(config, "images", dry_run=True)
    assert plan.ok, plan.errors
    assert plan.summary[0] == f"would save {tiny} ({image_id[:19]}): 2 of 2 blobs not stored yet"
    assert list(storage.list("")) == []

    first = run_job(config, "images")
    assert first.ok, first.errors
    assert first.figures["new_blobs"] == 2
    assert len([i for i in storage.list(BLOBS)]) == 4  # two blobs and their records
    second = run_job(config, "images")
    assert second.figures["new_blobs"] == 0 and second.figures["bytes_stored"] == 0

    docker_client.images.remove(tiny, force=True)
    entry = find_set(storage, "images", None)
    [image] = entry.manifest.images
    client = docker.from_env()
    try:
        loaded = restore_image(client.api, image, entry.manifest, storage, Keyring("s3"))
    finally:
        client.close()
    assert loaded.action == "loaded"
    assert docker_client.images.get(tiny).id == image_id
