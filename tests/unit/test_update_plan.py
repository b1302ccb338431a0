"""The pure parts of safe updates: how a container's spec is carried to a new image,
and which containers the plan recreates."""

from __future__ import annotations

from maintainer.images.apply import Target, plan_apply
from maintainer.images.recreate import create_spec

CID = "c" * 64
IMAGE_CONFIG = {"Env": ["PATH=/usr/bin", "PG_VERSION=15.1"], "Cmd": ["postgres"], "Labels": {"org.image": "1"},
                "Healthcheck": {"Test": ["CMD", "pg_isready"]}, "Volumes": {"/var/lib/postgresql/data": {}},
                "WorkingDir": "/", "User": ""}


def attrs(**over) -> dict:
    base = {
        "Id": CID, "Name": "/shop-db-1", "Image": "sha256:" + "1" * 64,
        "Config": {"Hostname": CID[:12], "Image": "postgres:15", "Env": ["PATH=/usr/bin", "PG_VERSION=15.1",
                                                                         "POSTGRES_PASSWORD_FILE=/run/s"],
                   "Cmd": ["postgres"], "Labels": {"org.image": "1", "com.docker.compose.service": "db",
                                                   "com.docker.compose.project": "shop"},
                   "Healthcheck": {"Test": ["CMD", "pg_isready"]}, "Volumes": {"/var/lib/postgresql/data": {}},
                   "WorkingDir": "/", "User": "", "StopTimeout": 30, "StopSignal": "SIGINT"},
        "HostConfig": {"Binds": ["shop_conf:/etc/conf:ro"], "NetworkMode": "shop_default",
                       "RestartPolicy": {"Name": "unless-stopped"}, "Memory": 1 << 30},
        "Mounts": [{"Type": "volume", "Name": "shop_conf", "Destination": "/etc/conf", "RW": False},
                   {"Type": "volume", "Name": "a" * 64, "Destination": "/var/lib/postgresql/data", "RW": True}],
        "NetworkSettings": {"Networks": {
            "shop_default": {"Aliases": ["db", CID[:12]], "Links": None, "IPAMConfig": None},
            "shop_backend": {"Aliases": ["database"], "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}},
    }
    base.update(over)
    return base


def test_the_users_settings_are_kept_and_the_old_images_defaults_are_left_to_the_new_image():
    spec = create_spec(attrs(), IMAGE_CONFIG, "postgres:15")
    body = spec.body
    assert spec.name == "shop-db-1"
    assert body["Image"] == "postgres:15"
    assert body["Env"] == ["POSTGRES_PASSWORD_FILE=/run/s"]
    assert body["Labels"] == {"com.docker.compose.service": "db", "com.docker.compose.project": "shop"}
    assert "Cmd" not in body and "Healthcheck" not in body and "Hostname" not in body and "Volumes" not in body
    assert body["StopTimeout"] == 30 and body["StopSignal"] == "SIGINT"
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped"}
    assert body["HostConfig"]["Memory"] == 1 << 30


def test_composes_image_label_follows_the_new_image_so_compose_sees_nothing_to_change():
    a = attrs()
    a["Config"]["Labels"]["com.docker.compose.image"] = a["Image"]
    spec = create_spec(a, IMAGE_CONFIG, "postgres:15", "sha256:" + "2" * 64)
    assert spec.body["Labels"]["com.docker.compose.image"] == "sha256:" + "2" * 64


def test_an_anonymous_volume_is_passed_on_by_name_so_no_data_is_left_behind():
    binds = create_spec(attrs(), IMAGE_CONFIG, "postgres:15").body["HostConfig"]["Binds"]
    assert binds == ["shop_conf:/etc/conf:ro", f"{'a' * 64}:/var/lib/postgresql/data"]


def test_networks_keep_their_aliases_but_not_the_old_containers_id():
    spec = create_spec(attrs(), IMAGE_CONFIG, "postgres:15")
    assert spec.body["NetworkingConfig"] == {"EndpointsConfig": {"shop_default": {"Aliases": ["db"]}}}
    assert spec.extra_networks == {"shop_backend": {"Aliases": ["database"],
                                                    "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}


def test_a_user_healthcheck_that_differs_from_the_images_is_kept():
    a = attrs()
    a["Config"]["Healthcheck"] = {"Test": ["CMD", "pg_isready", "-U", "shop"], "Interval": 5_000_000_000}
    assert create_spec(a, IMAGE_CONFIG, "postgres:15").body["Healthcheck"]["Test"][-1] == "shop"


def test_host_network_mode_attaches_no_network():
    a = attrs()
    a["HostConfig"]["NetworkMode"] = "host"
    spec = create_spec(a, IMAGE_CONFIG, "postgres:15")
    assert "NetworkingConfig" not in spec.body and spec.extra_networks == {}


def _target(image_id: str | None, digest: str | None) -> dict[str, Target]:
    ref = "docker.io/library/postgres:15"
    return {ref: Target(ref, image_id, digest)}


def test_the_plan_recreates_only_containers_whose_image_the_tag_no_longer_names():
    old = attrs()
    images = {old["Image"]: {"RepoDigests": ["postgres@sha256:" + "d" * 64]}}
    plan = plan_apply([old], _target("sha256:" + "2" * 64, "sha256:" + "e" * 64), images, set())
    [u] = plan.updates
    assert (u.service, u.container, u.old_digest, u.new_digest) == ("db", "shop-db-1", "sha256:" + "d" * 64,
                                                                     "sha256:" + "e" * 64)
    assert u.outcome == "planned"
    assert plan_apply([old], _target(old["Image"], "sha256:" + "d" * 64), images, set()).updates == []


def test_a_dry_run_compares_registry_digests_and_a_rolled_back_digest_is_skipped():
    old = attrs()
    images = {old["Image"]: {"RepoDigests": ["postgres@sha256:" + "d" * 64]}}
    assert plan_apply([old], _target(None, "sha256:" + "d" * 64), images, set()).updates == []
    [u] = plan_apply([old], _target(None, "sha256:" + "e" * 64), images, {("shop", "db", "sha256:" + "e" * 64)}).updates
    assert u.outcome == "skipped" and "rolled back" in u.detail
    other_project = {("other", "db", "sha256:" + "e" * 64)}
    assert plan_apply([old], _target(None, "sha256:" + "e" * 64), images, other_project).updates[0].outcome == "planned"


def test_a_container_on_an_image_the_job_does_not_update_is_noted_and_left_alone():
    other = attrs()
    other["Config"]["Image"] = "redis:7"
    plan = plan_apply([other], _target("sha256:" + "2" * 64, None), {}, set())
    assert plan.updates == []
    assert plan.notes == ["service db: container shop-db-1 runs redis:7, which this job does not update"]


def test_prune_keeps_the_container_an_update_set_aside_and_so_its_image():
    from datetime import datetime, timedelta, timezone

    from maintainer.config.docker_jobs import DockerPruneJob
    from maintainer.prune.planner import plan_prune
    from maintainer.prune.state import Container, EngineState, Image

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    old = now - timedelta(days=30)
    state = EngineState(
        containers=[Container("c1", "shop-db-1-maintainer-previous", "exited", old, old, "sha256:v1"),
                    Container("c2", "shop-worker-1", "exited", old, old, "sha256:w")],
        images=[Image("sha256:v1", (), (), old, 100)])
    plan = plan_prune(state, DockerPruneJob.model_validate({"type": "docker_prune", "schedule": "0 5 * * *"}), now)
    assert [i.name for i in plan.removals] == ["shop-worker-1"]
    rules = {i.name: i.rule for i in plan.items}
    assert rules["shop-db-1-maintainer-previous"].startswith("set aside by an image update")
    assert rules["<none> v1"] == "used by container shop-db-1-maintainer-previous"


def test_a_container_whose_image_could_not_be_checked_or_that_would_vanish_when_stopped_is_left_alone():
    old = attrs()
    failed = plan_apply([old], {}, {}, set(), {"docker.io/library/postgres:15"})
    assert failed.updates == [] and "could not be checked" in failed.notes[0]
    auto = attrs()
    auto["HostConfig"]["AutoRemove"] = True
    plan = plan_apply([auto], _target("sha256:" + "2" * 64, None), {}, set())
    assert plan.updates == [] and "started with --rm" in plan.notes[0]
