"""image_backup and `maintainer images restore` on the real engine: save a compose
project's images, remove them, restore them under their names and ids, start a
container from them; a second save of unchanged images stores no new bytes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import uuid
from datetime import timedelta
from pathlib import Path

import docker.errors
import pytest

from maintainer.config.loader import parse_config
from maintainer.images.backup_store import BLOBS, delete_unreferenced_blobs, list_sets, stored_blobs
from maintainer.jobs.base import utcnow
from maintainer.runner import run_job
from maintainer.storage import open_storage
from support.docker_resources import docker_labels, unique_name
from support.encryption import encryption, make_key
from support.registry_images import BASE

pytestmark = pytest.mark.integration


def build_app(client, marker: str) -> str:
    """A small image on the test bed's Python image, whose own layer holds ``marker``; its tag."""
    tag = f"maintainer-test/imgbak-{marker[:12]}:1"
    dockerfile = f"FROM {BASE}\nCOPY marker /marker\nCMD [\"python3\", \"-c\", \"print(open('/marker').read())\"]\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("marker", marker.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, labels=docker_labels(), rm=True, forcerm=True)
    return tag


@pytest.fixture
def project(docker_client):
    """A compose project with one (created, not started) container on its own new image."""
    marker = uuid.uuid4().hex
    tag = build_app(docker_client, marker)
    name = unique_name("maintainer-test-imgproj")
    container = docker_client.containers.create(tag, name=f"{name}-app-1", labels={
        **docker_labels(), "com.docker.compose.project": name, "com.docker.compose.service": "app"})
    yield name, tag, marker, container
    for c in docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"}):
        c.remove(force=True)
    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


def write_config(tmp_path: Path, project_name: str, storage_extra: dict | None = None, **job) -> Path:
    doc = {"storage": {"main": {"url": f"file://{tmp_path}/store", **(storage_extra or {})}},
           "jobs": {"images": {"type": "image_backup", "schedule": "0 2 * * *", "storage": "main",
                               "compose_project": project_name, **job}}}
    (tmp_path / "store").mkdir(exist_ok=True)
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps(doc))
    return path


def maintainer(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "maintainer"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)


def test_saved_images_come_back_under_their_names_and_ids_and_run(docker_client, project, tmp_path):
    name, tag, marker, container = project
    key, recipient = make_key(tmp_path, "key.txt")
    path = write_config(tmp_path, name, {"encryption": encryption([recipient], [key])})
    config = parse_config(path.read_text(), str(path))
    image = docker_client.images.get(tag)
    layers = image.attrs["RootFS"]["Layers"]

    first = run_job(config, "images")
    assert first.ok, first.errors
    assert first.figures["images"] == 1
    assert first.figures["new_blobs"] == 1 + len(set(layers))
    storage = open_storage(config.storage["main"], "main")
    blobs = {i.key: i.size for i in storage.list(BLOBS)}
    assert all(k.endswith((".zst.age", ".json")) for k in blobs)
    for record in stored_blobs(storage).values():
        assert storage.get_bytes(record.key)[:21] == b"age-encryption.org/v1"  # no plaintext layer in storage

    second = run_job(config, "images")
    assert second.ok, second.errors
    assert second.figures["new_blobs"] == 0 and second.figures["bytes_stored"] == 0
    assert {i.key: i.size for i in storage.list(BLOBS)} == blobs  # no new layer bytes at all
    sets = list_sets(storage, name)
    assert len(sets) == 2 and sets[-1].manifest.images[0].id == image.id

    listed = maintainer("-c", str(path), "images", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [s.id for s in sets]

    container.remove(force=True)
    docker_client.images.remove(image.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)

    restored = maintainer("-c", str(path), "images", "restore", "--latest")
    assert restored.returncode == 0, restored.stderr
    assert f"{tag}: loaded ({image.id[:19]})" in restored.stdout
    assert docker_client.images.get(tag).id == image.id
    output = docker_client.containers.run(tag, remove=True, labels=docker_labels())
    assert output.decode().strip() == marker

    again = maintainer("-c", str(path), "images", "restore", "--set", sets[0].id, tag)
    assert again.returncode == 0, again.stderr
    assert "already present, tags set" in again.stdout


def test_an_altered_blob_is_refused_and_no_image_is_tagged(docker_client, project, tmp_path):
    name, tag, _, container = project
    path = write_config(tmp_path, name)
    config = parse_config(path.read_text(), str(path))
    assert run_job(config, "images").ok
    storage = open_storage(config.storage["main"], "main")
    image_id = docker_client.images.get(tag).id
    top = docker_client.images.get(tag).attrs["RootFS"]["Layers"][-1]
    record = stored_blobs(storage)[top]
    stored = tmp_path / "store" / record.key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    container.remove(force=True)
    docker_client.images.remove(image_id, force=True)

    restored = maintainer("-c", str(path), "images", "restore")
    assert restored.returncode == 1
    assert restored.stderr.startswith("Error: ") and "SHA-256 mismatch" in restored.stderr
    assert "Traceback" not in restored.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_retention_deletes_sets_and_only_blobs_no_kept_set_references(docker_client, project, tmp_path):
    name, tag, _, container = project
    path = write_config(tmp_path, name, retention={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0,
                                                   "keep_monthly": 0})
    config = parse_config(path.read_text(), str(path))
    assert run_job(config, "images").ok
    storage = open_storage(config.storage["main"], "main")
    old_top = docker_client.images.get(tag).attrs["RootFS"]["Layers"][-1]
    old_id = docker_client.images.get(tag).id

    # The project moves to a new image: its base layer is shared, its own layer is new.
    container.remove(force=True)
    new_tag = build_app(docker_client, uuid.uuid4().hex)
    try:
        docker_client.containers.create(new_tag, name=f"{name}-app-2", labels={
            **docker_labels(), "com.docker.compose.project": name, "com.docker.compose.service": "app"})
        result = run_job(config, "images")
        assert result.ok, result.errors
        assert result.figures["sets_deleted"] == 1
        [kept] = list_sets(storage, name)
        assert old_top not in kept.manifest.blobs
        # Unreferenced blobs stay while a live run might still be writing the set that needs them...
        assert old_top in stored_blobs(storage)
        # ...and go once that cannot be so; what the kept set needs stays.
        deleted = delete_unreferenced_blobs(storage, now=utcnow() + timedelta(hours=2))
        assert set(deleted) == {old_top, old_id}
        assert set(stored_blobs(storage)) == set(kept.manifest.blobs)
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"}):
            c.remove(force=True)
        docker_client.images.remove(new_tag, force=True)
