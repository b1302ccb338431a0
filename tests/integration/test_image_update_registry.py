"""image_update against the real loopback registry and engine."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import docker.errors
import pytest

from maintainer.config.models import Config
from maintainer.runner import run_job
from support.docker_resources import docker_labels, unique_name

pytestmark = pytest.mark.integration


def tiny_image(client, repository: str, tag: str, content: str) -> str:
    """Import a labelled one-file image; returns its id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    changes = [f'LABEL "{k}"="{v}"' for k, v in docker_labels().items()]
    client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag, changes=changes)
    return client.images.get(f"{repository}:{tag}").id


def push(client, repository: str, tag: str) -> None:
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise AssertionError(f"push {repository}:{tag}: {line['error']}")


@pytest.fixture
def repo(docker_client, registry):
    """A fresh repository name on the loopback registry; local images removed afterwards."""
    name = f"{registry}/{unique_name('maintainer-test-base')}"
    made: list[str] = []
    yield name, made
    for image_id in made:
        try:
            docker_client.images.remove(image_id, force=True)
        except docker.errors.APIError:
            pass


def update_config(images: list[str], **job) -> Config:
    return Config.model_validate({"jobs": {"update-images": {
        "type": "image_update", "schedule": "0 2 * * 1", "images": images, **job}}})


def test_a_new_digest_under_the_same_tag_is_pulled_once_and_reported_with_both_digests(docker_client, repo):
    name, made = repo
    ref = f"{name}:1"
    first = tiny_image(docker_client, name, "1", f"first {uuid.uuid4()}")
    made.append(first)
    push(docker_client, name, "1")
    config = update_config([ref])

    nothing = run_job(config, "update-images")
    assert nothing.ok, nothing.errors
    assert nothing.figures == {"updated": 0, "current": 1, "failed": 0}
    old_digest = nothing.details["images"][0]["new_digest"]
    assert old_digest.startswith("sha256:")

    # Someone publishes a new image under the same tag; locally the tag still names the first.
    second = tiny_image(docker_client, name, "1", f"second {uuid.uuid4()}")
    made.append(second)
    push(docker_client, name, "1")
    docker_client.api.tag(first, name, "1", force=True)
    assert docker_client.images.get(ref).id == first

    updated = run_job(config, "update-images")
    assert updated.ok, updated.errors
    assert updated.figures["updated"] == 1
    entry = updated.details["images"][0]
    assert entry["old_digest"] == old_digest
    assert entry["new_digest"].startswith("sha256:") and entry["new_digest"] != old_digest
    assert docker_client.images.get(ref).id == second
    assert f"{name}@{entry['new_digest']}" in docker_client.images.get(ref).attrs["RepoDigests"]
    assert updated.summary == [f"{ref}: updated {old_digest} -> {entry['new_digest']}"]
    # untag_superseded (the default): the old image has no tag left, so prune can reclaim it.
    assert docker_client.images.get(first).tags == []

    again = run_job(config, "update-images")
    assert again.figures == {"updated": 0, "current": 1, "failed": 0}


def test_keeping_the_superseded_image_tags_it_as_previous(docker_client, repo):
    name, made = repo
    made.append(tiny_image(docker_client, name, "2", f"a {uuid.uuid4()}"))
    push(docker_client, name, "2")
    old = made[0]
    made.append(tiny_image(docker_client, name, "2", f"b {uuid.uuid4()}"))
    push(docker_client, name, "2")
    docker_client.api.tag(old, name, "2", force=True)

    result = run_job(update_config([f"{name}:2"], untag_superseded=False), "update-images")
    assert result.ok, result.errors
    assert docker_client.images.get(f"{name}:2-previous").id == old
    assert result.details["images"][0]["kept_as"] == f"{name}:2-previous"


def test_an_unknown_image_and_an_unreachable_registry_fail_alone_while_others_update(docker_client, repo, registry):
    name, made = repo
    made.append(tiny_image(docker_client, name, "1", f"x {uuid.uuid4()}"))
    push(docker_client, name, "1")
    old = made[0]
    made.append(tiny_image(docker_client, name, "1", f"y {uuid.uuid4()}"))
    push(docker_client, name, "1")
    docker_client.api.tag(old, name, "1", force=True)
    missing = f"{registry}/{unique_name('maintainer-test-missing')}:1"
    unreachable = "127.0.0.1:9/maintainer-test/nothing:1"  # discard port: nothing listens

    result = run_job(update_config([missing, f"{name}:1", unreachable]), "update-images")
    assert not result.ok
    assert result.figures == {"updated": 1, "current": 0, "failed": 2}
    assert docker_client.images.get(f"{name}:1").id == made[1]
    assert len(result.errors) == 2
    assert result.errors[0].startswith(f"{missing}: not found in registry {registry}")
    assert result.errors[1].startswith("127.0.0.1:9/maintainer-test/nothing:1: registry 127.0.0.1:9 unreachable")


def test_credentials_come_from_a_docker_config_file_and_never_reach_the_result(docker_client, repo, tmp_path):
    name, made = repo
    made.append(tiny_image(docker_client, name, "1", f"z {uuid.uuid4()}"))
    push(docker_client, name, "1")
    secret = uuid.uuid4().hex
    import base64

    cfg = tmp_path / "config.json"
    registry_host = name.split("/")[0]
    cfg.write_text(json.dumps({"auths": {registry_host: {"auth": base64.b64encode(f"u:{secret}".encode()).decode()}}}))
    result = run_job(update_config([f"{name}:1"], docker_config=str(cfg)), "update-images")
    assert result.ok, result.errors  # the loopback registry ignores credentials; they are sent, not leaked
    assert secret not in json.dumps(result.to_dict())


def test_a_malformed_docker_config_is_a_clear_error(tmp_path, registry):
    cfg = tmp_path / "config.json"
    cfg.write_text("{not json")
    result = run_job(update_config([f"{registry}/x:1"], docker_config=str(cfg)), "update-images")
    assert not result.ok
    assert result.errors == [f"docker_config {cfg}: cannot read it as a Docker config.json (JSONDecodeError)"]


def _digest(client, image_id: str, repository: str) -> str:
    return next(d.split("@", 1)[1] for d in client.images.get(image_id).attrs["RepoDigests"]
                if d.startswith(repository + "@"))


def test_a_pinned_tag_at_digest_brings_the_tag_back_to_the_pinned_image(docker_client, repo):
    name, made = repo
    made.append(tiny_image(docker_client, name, "1", f"pinned {uuid.uuid4()}"))
    push(docker_client, name, "1")
    pinned = _digest(docker_client, made[0], name)
    made.append(tiny_image(docker_client, name, "1", f"newer {uuid.uuid4()}"))
    push(docker_client, name, "1")

    result = run_job(update_config([f"{name}:1@{pinned}"]), "update-images")
    assert result.ok, result.errors
    entry = result.details["images"][0]
    assert entry["status"] == "updated" and entry["new_digest"] == pinned
    assert entry["old_digest"] == _digest(docker_client, made[1], name)
    assert docker_client.images.get(f"{name}:1").id == made[0]


def test_a_dry_run_reports_the_update_and_pulls_nothing(docker_client, repo):
    name, made = repo
    made.append(tiny_image(docker_client, name, "1", f"p {uuid.uuid4()}"))
    push(docker_client, name, "1")
    made.append(tiny_image(docker_client, name, "1", f"q {uuid.uuid4()}"))
    push(docker_client, name, "1")
    docker_client.api.tag(made[0], name, "1", force=True)

    result = run_job(update_config([f"{name}:1"]), "update-images", dry_run=True)
    assert result.ok, result.errors
    assert result.details["images"][0]["status"] == "would_update"
    assert result.summary[0].startswith(f"{name}:1: would update ")
    assert docker_client.images.get(f"{name}:1").id == made[0]
