"""image_update with ``apply:`` on the real engine and the loopback registry: a service
on v1 with a named volume; v2 (its healthcheck fails) is rolled back, v3 is applied
after a backup that is then found in storage, a failing backup blocks the update."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from maintainer.backup import catalog
from maintainer.config.loader import parse_config
from maintainer.history import History
from maintainer.images.metrics import collect_update_metrics
from maintainer.runner import run_job
from maintainer.storage import open_storage
from support.docker_resources import docker_labels, unique_name
from support.http_receiver import Receiver
from support.registry_images import build_versions, publish

pytestmark = pytest.mark.integration

SERVICE = "app"


@pytest.fixture(scope="module")
def versions(docker_client, registry):
    """v1, v2, v3 image ids, and the registry repository the tests publish them under."""
    ids = build_versions(docker_client)
    return ids, f"{registry}/maintainer-test/update-svc"


class Service:
    def __init__(self, client, repo: str, tag: str, ids: dict[str, str]):
        self.client, self.api = client, client.api
        self.ref = f"{repo}:{tag}"
        self.repo, self.tag, self.ids = repo, tag, ids
        self.project = unique_name("maintainer-test-proj")
        self.name = f"{self.project}-{SERVICE}-1"
        labels = docker_labels()
        self.network = client.networks.create(unique_name("maintainer-test-net"), labels=labels).name
        self.volume = client.volumes.create(unique_name("maintainer-test-vol"), labels=labels).name

    def start_on(self, version: str, env: dict[str, str] | None = None, number: int = 1) -> None:
        """Run the service on ``version``, published as ref, with a spec that must survive updates."""
        if number == 1:
            publish(self.client, self.ids[version], self.repo, self.tag)
        else:
            self.name = f"{self.project}-{SERVICE}-{number}"
        api = self.api
        labels = {**docker_labels(), "com.docker.compose.project": self.project,
                  "com.docker.compose.service": SERVICE, "org.example.user-label": "kept"}
        created = api.create_container(
            self.ref, name=self.name, labels=labels, stop_timeout=7,
            environment={"USER_SETTING": "kept", **(env or {})},
            host_config=api.create_host_config(binds=[f"{self.volume}:/data"], network_mode=self.network,
                                               restart_policy={"Name": "unless-stopped"}, mem_limit="256m"),
            networking_config=api.create_networking_config(
                {self.network: api.create_endpoint_config(aliases=["app-alias"])}))
        api.start(created["Id"])
        self.wait_healthy()
        api.exec_start(api.exec_create(self.name, ["sh", "-c", "echo precious > /data/precious"]))

    def wait_healthy(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            attrs = self.api.inspect_container(self.name)
            if (attrs["State"].get("Health") or {}).get("Status") == "healthy":
                return attrs
            assert time.monotonic() < deadline, f"{self.name} not healthy: {attrs['State']}"
            time.sleep(0.3)

    def publish(self, version: str) -> str:
        """Publish ``version`` under the tag in the registry; the local tag stays where it was."""
        local = self.api.inspect_image(self.ref)["Id"]
        digest = publish(self.client, self.ids[version], self.repo, self.tag)
        self.api.tag(local, self.repo, self.tag, force=True)
        return digest

    def containers(self) -> list[dict]:
        return [self.api.inspect_container(c["Id"]) for c in self.api.containers(
            all=True, filters={"label": f"com.docker.compose.project={self.project}"})]

    def read(self, path: str) -> str:
        out = self.api.exec_start(self.api.exec_create(self.name, ["cat", path]))
        return out.decode()

    def remove(self) -> None:
        for c in self.containers():
            self.api.remove_container(c["Id"], force=True, v=False)
        self.client.volumes.get(self.volume).remove(force=True)
        self.client.networks.get(self.network).remove()
        try:
            self.api.remove_image(self.ref)
        except docker.errors.APIError:
            pass


@pytest.fixture
def service(docker_client, versions):
    ids, repo = versions
    svc = Service(docker_client, repo, f"t-{uuid.uuid4().hex[:10]}", ids)
    yield svc
    svc.remove()


def update_config(svc: Service, *, before: list[str] | None = None, extra: dict | None = None,
                  health_timeout: str = "20s") -> dict:
    return {"jobs": {"update": {
        "type": "image_update", "schedule": "0 4 * * *", "images": [svc.ref],
        "apply": {"services": [SERVICE], "project": svc.project, "before": before or [],
                  "health_timeout": health_timeout, "rollback": True}}, **(extra or {})}}


def load(doc: dict):
    return parse_config(json.dumps(doc), "test-update.yaml")


def assert_spec_kept(attrs: dict, svc: Service) -> None:
    assert attrs["Name"] == "/" + svc.name
    assert "USER_SETTING=kept" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"]["org.example.user-label"] == "kept"
    assert attrs["Config"]["StopTimeout"] == 7
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert [m["Name"] for m in attrs["Mounts"] if m["Type"] == "volume"] == [svc.volume]
    assert "app-alias" in attrs["NetworkSettings"]["Networks"][svc.network]["Aliases"]


def test_a_release_whose_healthcheck_fails_is_rolled_back_with_volume_and_data_intact(service):
    service.start_on("v1")
    before = service.containers()[0]
    new_digest = service.publish("v2")

    with Receiver() as receiver:
        doc = update_config(service, health_timeout="6s")
        doc["notify"] = {"targets": [{"type": "webhook", "url": f"http://{receiver.address}/hook"}]}
        result = run_job(load(doc), "update")
        [delivery] = receiver.wait_for(1)

    assert not result.ok
    [entry] = result.details["apply"]
    assert entry["outcome"] == "rolled_back", entry
    assert "new container not healthy within 6 s (still unhealthy: healthcheck exit 1)" in entry["detail"]
    assert [e.kind for e in result.events] == ["image_update.rolled_back"]
    [event] = json.loads(delivery.body)["events"]
    assert event["kind"] == "image_update.rolled_back" and event["severity"] == "warning"
    assert event["service"] == SERVICE and event["new_digest"] == new_digest
    assert event["message"].startswith(f"rolled back: service {SERVICE}: container {service.name} ROLLED BACK")
    [container] = service.containers()  # the new one is gone, the old one is back under its name
    assert container["Id"] == before["Id"]
    assert container["Image"] == service.ids["v1"]
    assert_spec_kept(service.wait_healthy(), service)
    assert service.read("/data/precious") == "precious\n"
    assert service.read("/data/versions").split() == ["v1", "v2", "v1"]
    # The tag names the running image again: a `docker compose up` would not start v2.
    assert service.api.inspect_image(service.ref)["Id"] == service.ids["v1"]

    config = load(update_config(service))
    metrics = {m.name: m for m in collect_update_metrics(config, History.open(config.daemon.state_dir))}
    counts = {s.labels["outcome"]: s.value for s in metrics["maintainer_image_update_containers"].samples
              if s.name.endswith("_total")}
    assert counts == {"updated": 0, "rolled_back": 1, "rollback_failed": 0}
    [last] = metrics["maintainer_image_update_last_rollback_timestamp_seconds"].samples
    assert last.value == result.finished.timestamp()

    # The next run does not try the rolled-back image again.
    again = run_job(config, "update")
    assert again.ok, again.errors
    assert again.details["apply"][0]["outcome"] == "skipped"
    assert again.figures["updated"] == 1  # v2 was pulled again, and is still not applied
    assert service.api.inspect_image(service.ref)["Id"] == service.ids["v1"]
    assert service.containers()[0]["Id"] == before["Id"]


def test_a_healthy_release_is_applied_after_a_backup_that_is_in_storage(service, postgres, tmp_path):
    from support.pgdata import db_entry, load_contrivance

    load_contrivance(postgres)
    service.start_on("v1")
    service.publish("v3")
    doc = update_config(service, before=["backup"], extra={"backup": {
        "type": "pg_backup", "schedule": "0 3 * * *", "databases": ["contrivance"], "storage": "main"}})
    doc["storage"] = {"main": {"url": f"file://{tmp_path}/store"}}
    doc["databases"] = {"contrivance": db_entry(postgres, "contrivance")}
    config = load(doc)

    plan = run_job(config, "update", dry_run=True)
    assert plan.ok, plan.errors
    assert "apply: would first run backup" in plan.summary
    assert any(line.startswith(f"apply: would service {SERVICE}: recreate container {service.name}")
               for line in plan.summary), plan.summary
    assert not catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")

    result = run_job(config, "update")

    assert result.ok, result.errors
    [entry] = result.details["apply"]
    assert entry["outcome"] == "updated"
    [backup] = catalog.list_backups(open_storage(config.storage["main"], "main"), "contrivance")
    assert result.details["before"] == [{"job": "backup", "run_id": backup.manifest.run_id, "status": "ok"}]
    assert History.open(config.daemon.state_dir).last_run("backup").trigger == "before_update"
    [container] = service.containers()
    assert container["Image"] == service.ids["v3"]
    assert_spec_kept(service.wait_healthy(), service)
    assert service.read("/data/versions").split() == ["v1", "v3"]
    assert service.read("/data/precious") == "precious\n"
    assert result.figures["containers_updated"] == 1


def test_a_failing_backup_blocks_the_update(service, tmp_path):
    service.start_on("v1")
    before = service.containers()[0]
    service.publish("v3")
    doc = update_config(service, before=["backup"], extra={"backup": {
        "type": "pg_backup", "schedule": "0 3 * * *", "databases": ["gone"], "storage": "main"}})
    doc["storage"] = {"main": {"url": f"file://{tmp_path}/store"}}
    doc["databases"] = {"gone": {"host": "127.0.0.1", "port": 9, "user": "u", "password": "p", "dbname": "x",
                                 "sslmode": "disable"}}

    result = run_job(load(doc), "update")

    assert not result.ok
    assert result.errors[0].startswith("not updated: backup, which must succeed first, failed")
    assert [e.kind for e in result.events] == ["image_update.blocked"]
    assert result.details["apply"][0]["outcome"] == "skipped"
    [container] = service.containers()
    assert container["Id"] == before["Id"] and container["State"]["Running"]


def test_sigterm_during_an_update_leaves_the_service_running_on_the_old_or_the_new_image(service, tmp_path):
    service.start_on("v1", env={"APP_HEALTHY_AFTER": "4"})  # each start takes 4 s to become healthy
    service.publish("v3")
    config = tmp_path / "schedules.yaml"
    config.write_text(json.dumps(update_config(service, health_timeout="60s")))
    maintainer = Path(sys.executable).parent / "maintainer"
    proc = subprocess.Popen([str(maintainer), "--log-format", "json", "-c", str(config), "run", "update"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        aside = f"{service.name}-maintainer-previous"
        deadline = time.monotonic() + 60
        while not any(c["Name"] == "/" + aside for c in service.containers()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the update never set the old container aside"
            time.sleep(0.1)
        time.sleep(1.0)  # the new container is starting, not yet healthy
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    assert b"stopped by a signal" in err
    [container] = service.containers()
    assert container["Name"] == "/" + service.name
    assert container["Image"] in (service.ids["v1"], service.ids["v3"])
    if container["Image"] == service.ids["v1"]:  # stopped while the new one was starting: rolled back
        assert b"ROLLED BACK" in err and b"stopped before it became healthy" in err
    attrs = service.wait_healthy()
    assert attrs["State"]["Running"] and attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert service.read("/data/precious") == "precious\n"


def test_a_release_that_fails_on_the_first_container_is_not_tried_on_the_others(service):
    service.start_on("v1")
    service.start_on("v1", number=2)
    service.publish("v2")

    result = run_job(load(update_config(service, health_timeout="6s")), "update")

    assert not result.ok
    assert [(e["container"].rsplit("-", 1)[1], e["outcome"]) for e in result.details["apply"]] == [
        ("1", "rolled_back"), ("2", "skipped")]
    assert "already failed on another container" in result.details["apply"][1]["detail"]
    containers = service.containers()
    assert len(containers) == 2
    assert all(c["State"]["Running"] and c["Image"] == service.ids["v1"] for c in containers)


def test_a_rollback_that_fails_is_a_critical_alert_with_the_exact_state(service):
    service.start_on("v1")
    # From now on no version starts healthy: v2 fails, and so does v1 when it is brought back.
    service.api.exec_start(service.api.exec_create(service.name, ["touch", "/data/fail-next-start"]))
    service.publish("v2")

    result = run_job(load(update_config(service, health_timeout="6s")), "update")

    assert not result.ok
    [entry] = result.details["apply"]
    assert entry["outcome"] == "rollback_failed", entry
    [event] = result.events
    assert event.kind == "image_update.rollback_failed" and event.fields["severity"] == "critical"
    assert event.message.startswith(f"CRITICAL: service {SERVICE}: container {service.name} ROLLBACK FAILED")
    [container] = service.containers()  # the previous container, back under its name, running but unhealthy
    assert container["Image"] == service.ids["v1"]
    assert "the previous container is not healthy within 6 s (still unhealthy: healthcheck exit 1)" in entry["detail"]
    assert f"now: {service.name} ({container['Id'][:12]}) running/unhealthy on image {service.ids['v1'][:19]}" \
        in entry["detail"]
    assert f"{service.name}-maintainer-previous: NotFound" in entry["detail"]
