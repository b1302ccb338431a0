"""docker_prune against the real engine, always scoped to this test's own objects
(label_filter maintainer.test.run=<uuid>), since other tests share the engine."""

from __future__ import annotations

import io
import tarfile
import time
import uuid

import docker.errors
import pytest

from maintainer.config.models import Config
from maintainer.jobs.base import utcnow
from maintainer.prune.apply import apply_plan
from maintainer.prune.planner import plan_prune
from maintainer.prune.state import read_state
from maintainer.runner import run_job
from support.docker_resources import docker_labels, unique_name

pytestmark = pytest.mark.integration

RUN_LABEL = "maintainer.test.run"


@pytest.fixture
def scope(docker_client):
    """Labels for this test's objects, and removal of whatever the prune left."""
    run = uuid.uuid4().hex
    labels = {**docker_labels(), RUN_LABEL: run}
    yield labels
    selector = {"label": f"{RUN_LABEL}={run}"}
    for c in docker_client.containers.list(all=True, filters=selector):
        c.remove(force=True, v=True)
    for v in docker_client.volumes.list(filters=selector):
        v.remove(force=True)
    for n in docker_client.networks.list(filters=selector):
        n.remove()
    for img in docker_client.images.list(all=True, filters=selector):
        try:
            docker_client.images.remove(img.id, force=True)
        except docker.errors.APIError:
            pass


def tiny_image(client, repository: str, tag: str, labels: dict[str, str], content: str) -> str:
    """Import a one-file image carrying ``labels``; returns its id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    changes = [f'LABEL "{k}"="{v}"' for k, v in labels.items()]
    client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag, changes=changes)
    return client.images.get(f"{repository}:{tag}").id


def prune_config(labels: dict[str, str], **job) -> Config:
    spec = {"type": "docker_prune", "schedule": "0 5 * * *",
            "label_filter": [f"{RUN_LABEL}={labels[RUN_LABEL]}"], **job}
    return Config.model_validate({"jobs": {"prune": spec}})


def exists(fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except docker.errors.NotFound:
        return False


def test_prune_keeps_a_stopped_postgres_volume_and_a_protected_one_and_removes_dangling_images(
        docker_client, pg_image, scope):
    pgdata = docker_client.volumes.create(unique_name("maintainer-test-pgdata"), labels=scope)
    protected = docker_client.volumes.create(unique_name("maintainer-test-keep"),
                                             labels={**scope, "maintainer.protect": "true"})
    unused = docker_client.volumes.create(unique_name("maintainer-test-unused"), labels=scope)
    pg = docker_client.containers.run(
        pg_image, detach=True, name=unique_name("maintainer-test-pg"), labels=scope,
        environment={"POSTGRES_PASSWORD": uuid.uuid4().hex},
        volumes={pgdata.name: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
    pg.stop(timeout=10)
    repo = unique_name("maintainer-test-prune")
    first = tiny_image(docker_client, repo, "1", scope, "one")
    second = tiny_image(docker_client, repo, "1", scope, "two")  # the tag moves: first is dangling now

    config = prune_config(scope, containers={"enabled": True, "older_than": "30d"},
                          volumes={"enabled": True, "anonymous_only": False})
    dry = run_job(config, "prune", dry_run=True)
    assert dry.ok, dry.errors
    planned = {(i["kind"], i["name"]): i for i in dry.details["plan"]}
    assert planned[("volume", pgdata.name)]["action"] == "keep"
    assert planned[("volume", pgdata.name)]["rule"] == f"used by container {pg.name}"
    assert planned[("volume", protected.name)]["rule"] == "protected by label maintainer.protect=true"
    assert planned[("volume", unused.name)]["action"] == "remove"
    assert exists(docker_client.images.get, first)  # a dry run removes nothing
    assert exists(docker_client.volumes.get, unused.name)
    assert dry.summary[-1].startswith("dry run: would remove 2 objects, reclaiming up to ")
    assert f"remove volume      {unused.name}  (" in "\n".join(dry.summary)

    result = run_job(config, "prune")
    assert result.ok, result.errors
    assert exists(docker_client.volumes.get, pgdata.name)
    assert exists(docker_client.volumes.get, protected.name)
    assert exists(docker_client.containers.get, pg.id)
    assert not exists(docker_client.volumes.get, unused.name)
    assert not exists(docker_client.images.get, first)
    assert exists(docker_client.images.get, second)  # tagged and young
    assert {i["name"] for i in result.details["removed"]} == {unused.name, f"<none> {first[7:19]}"}
    assert result.figures["reclaimed_bytes"] > 0
    assert any(line.startswith("removed 2 objects, reclaimed") for line in result.summary)


def test_old_stopped_containers_go_but_their_volumes_and_running_containers_stay(
        docker_client, pg_image, scope):
    pgdata = docker_client.volumes.create(unique_name("maintainer-test-pgdata"), labels=scope)
    stopped = docker_client.containers.run(
        pg_image, detach=True, name=unique_name("maintainer-test-pg"), labels=scope,
        environment={"POSTGRES_PASSWORD": uuid.uuid4().hex},
        volumes={pgdata.name: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
    running = docker_client.containers.run(
        "maintainer-test/python:3.11", ["sleep", "120"], detach=True,
        name=unique_name("maintainer-test-sleep"), labels=scope)
    stopped.stop(timeout=10)
    time.sleep(2)

    config = prune_config(scope, containers={"enabled": True, "older_than": "1s"},
                          volumes={"enabled": True, "anonymous_only": False})
    result = run_job(config, "prune")
    assert result.ok, result.errors
    assert not exists(docker_client.containers.get, stopped.id)
    assert exists(docker_client.containers.get, running.id)
    # Its container was removed in this very run, yet the volume stays until a later run.
    assert exists(docker_client.volumes.get, pgdata.name)
    assert [i["name"] for i in result.details["removed"]] == [stopped.name]


def test_objects_that_change_between_plan_and_apply_are_skipped_not_errors(docker_client, scope):
    becomes_used = docker_client.volumes.create(unique_name("maintainer-test-vol"), labels=scope)
    vanishes = docker_client.volumes.create(unique_name("maintainer-test-vol"), labels=scope)
    config = prune_config(scope, volumes={"enabled": True, "anonymous_only": False})
    spec = config.jobs["prune"]
    plan = plan_prune(read_state(docker_client, build_cache=False), spec, utcnow())
    assert {i.name for i in plan.removals} == {becomes_used.name, vanishes.name}

    user = docker_client.containers.create("maintainer-test/python:3.11", ["true"], labels=scope,
                                           name=unique_name("maintainer-test-user"),
                                           volumes={becomes_used.name: {"bind": "/data", "mode": "rw"}})
    vanishes.remove()
    report = apply_plan(docker_client, plan, protect_label="maintainer.protect")
    assert report.removed == [] and report.failed == []
    reasons = {item.name: why for item, why in report.skipped}
    assert reasons[becomes_used.name] == f"used by container {user.name} now"
    assert reasons[vanishes.name] == "gone since the plan"
    assert exists(docker_client.volumes.get, becomes_used.name)


def test_an_unused_network_goes_and_one_a_stopped_container_is_attached_to_stays(docker_client, scope):
    unused = docker_client.networks.create(unique_name("maintainer-test-net"), driver="bridge", labels=scope)
    attached = docker_client.networks.create(unique_name("maintainer-test-net"), driver="bridge", labels=scope)
    user = docker_client.containers.create("maintainer-test/python:3.11", ["true"], labels=scope,
                                           name=unique_name("maintainer-test-user"), network=attached.name)
    result = run_job(prune_config(scope, containers={"enabled": True, "older_than": "30d"}), "prune")
    assert result.ok, result.errors
    assert not exists(docker_client.networks.get, unused.id)
    assert exists(docker_client.networks.get, attached.id)
    kept = {i["name"]: i["rule"] for i in result.details["plan"] if i["action"] == "keep"}
    assert kept[attached.name] == f"used by container {user.name}"


def test_by_default_only_anonymous_volumes_go_and_stateful_projects_keep_theirs(docker_client, scope):
    anonymous = docker_client.volumes.create(uuid.uuid4().hex + uuid.uuid4().hex, labels=scope)
    named = docker_client.volumes.create(unique_name("maintainer-test-named"), labels=scope)
    project = unique_name("maintainer-test-stateful")
    stateful = docker_client.volumes.create(uuid.uuid4().hex + uuid.uuid4().hex,
                                            labels={**scope, "com.docker.compose.project": project})
    result = run_job(prune_config(scope, volumes={"enabled": True, "stateful_projects": [project]}), "prune")
    assert result.ok, result.errors
    assert not exists(docker_client.volumes.get, anonymous.name)
    assert exists(docker_client.volumes.get, named.name)
    assert exists(docker_client.volumes.get, stateful.name)
    kept = {i["name"]: i["rule"] for i in result.details["plan"] if i["action"] == "keep"}
    assert kept[named.name] == "named volume (only anonymous volumes are pruned)"
    assert kept[stateful.name] == f"volume of stateful compose project {project}"


def test_images_a_container_uses_or_an_image_update_job_lists_stay_even_when_old_images_are_pruned(
        docker_client, scope):
    repo = unique_name("maintainer-test-img")
    used = tiny_image(docker_client, repo, "used", scope, "u")
    listed = tiny_image(docker_client, repo, "listed", scope, "l")
    unused = tiny_image(docker_client, repo, "unused", scope, "x")
    user = docker_client.containers.create(f"{repo}:used", ["/f"], labels=scope, name=unique_name("maintainer-test-c"))
    config = Config.model_validate({"jobs": {
        "prune": {"type": "docker_prune", "schedule": "0 5 * * *", "label_filter": [f"{RUN_LABEL}={scope[RUN_LABEL]}"],
                  "containers": {"enabled": False}, "unused_images": {"enabled": True, "older_than": "0s"}},
        "update": {"type": "image_update", "schedule": "0 2 * * 1", "images": [f"{repo}:listed"]}}})
    result = run_job(config, "prune")
    assert result.ok, result.errors
    assert exists(docker_client.images.get, used) and exists(docker_client.images.get, listed)
    assert not exists(docker_client.images.get, unused)
    kept = {i["id"]: i["rule"] for i in result.details["plan"] if i["action"] == "keep"}
    assert kept[used] == f"used by container {user.name}"
    assert kept[listed] == "listed in an image_update job"
