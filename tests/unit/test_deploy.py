"""deploy/compose.yaml is the Contrivance stack as its deployment guide lists it, and
the shipped update-images jobs list that stack's base images, pinned. Parsed, not
eyeballed, so neither can drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from maintainer.imageref import parse_ref

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
MIB = 1024 * 1024

# The deployment guide's stack: service -> (memory, cpus).
STACK = {
    "auth-service": ("256m", 0.5), "user-service": ("256m", 0.5), "contrivance-service": ("512m", 0.5),
    "gateway-service": ("256m", 0.5), "frontend": ("128m", 0.5), "postgres": ("1g", 1.0),
}
RUST = ["auth-service", "user-service", "contrivance-service", "gateway-service"]
# What maintainer's jobs use of the Docker API (docs/daemon.md): the proxy allows these and nothing else.
PROXY_ALLOWED = {"PING", "VERSION", "CONTAINERS", "IMAGES", "NETWORKS", "VOLUMES", "SYSTEM", "EXEC", "DISTRIBUTION",
                 "BUILD", "POST"}
BASE_IMAGES = {"rust": "slim", "debian": "bookworm", "node": "alpine", "nginx": "alpine"}


def size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mg])", text).groups()
    return int(number) * (MIB if unit == "m" else 1024 * MIB)


def test_the_stack_has_exactly_the_guides_services_plus_maintainer_and_its_socket_proxy():
    assert set(SERVICES) == set(STACK) | {"maintainer", "docker-proxy"}


@pytest.mark.parametrize("service, limits", sorted(STACK.items()))
def test_each_service_has_the_guides_memory_and_cpu_limit(service, limits):
    memory, cpus = limits
    got = SERVICES[service]["deploy"]["resources"]["limits"]
    assert size(got["memory"]) == size(memory) and float(got["cpus"]) == cpus


def test_maintainer_and_the_proxy_stay_small():
    for service in ("maintainer", "docker-proxy"):
        limits = SERVICES[service]["deploy"]["resources"]["limits"]
        assert size(limits["memory"]) <= 256 * MIB and float(limits["cpus"]) <= 0.5


@pytest.mark.parametrize("service", RUST)
def test_the_rust_services_run_as_non_root_with_a_read_only_root(service):
    spec = SERVICES[service]
    assert spec["user"].split(":")[0] not in ("0", "root") and spec["read_only"] is True


@pytest.mark.parametrize("service", RUST + ["frontend"])
def test_the_stacks_health_checks_ask_health(service):
    assert any(str(part).endswith("/health") for part in SERVICES[service]["healthcheck"]["test"])


def test_every_service_logs_json_with_rotation_and_has_a_health_check_or_is_the_proxy():
    for name, spec in SERVICES.items():
        logging = spec["logging"]
        assert logging["driver"] == "json-file" and logging["options"]["max-size"] and logging["options"]["max-file"]
        assert "healthcheck" in spec or name == "docker-proxy", name


def test_every_image_is_pinned_to_a_version_tag():
    for name, spec in SERVICES.items():
        ref = parse_ref(spec["image"])
        assert ref.tag and ref.tag != "latest" and re.search(r"\d", ref.tag), (name, spec["image"])


def test_networks_are_internal_except_the_edge_and_the_database_is_only_on_the_backend():
    networks = COMPOSE["networks"]
    assert {name for name, spec in networks.items() if not (spec or {}).get("internal")} == {"edge"}
    assert SERVICES["postgres"]["networks"] == ["backend"]
    assert all("edge" not in SERVICES[s]["networks"] for s in RUST + ["postgres", "docker-proxy"])


def test_data_lives_in_named_volumes_and_the_database_volume_is_protected_from_prune():
    assert COMPOSE["volumes"]["pgdata"]["labels"]["maintainer.protect"] == "true"
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "maintainer-state:/var/lib/maintainer" in SERVICES["maintainer"]["volumes"]


def test_secrets_are_docker_secrets_and_every_one_used_is_declared():
    declared = set(COMPOSE["secrets"])
    used = {secret for spec in SERVICES.values() for secret in spec.get("secrets", [])}
    assert used == declared
    assert all(spec["file"].startswith("./secrets/") for spec in COMPOSE["secrets"].values())
    for spec in SERVICES.values():  # no password in plain environment values
        for key in spec.get("environment") or {}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN", key) or key.endswith("_FILE"), key


def test_the_secret_files_maintainers_config_reads_are_given_to_its_container():
    text = (REPO / "deploy" / "schedules.yaml").read_text()
    wanted = set(re.findall(r"_file: /run/secrets/([\w-]+)", text))
    assert wanted and wanted <= set(SERVICES["maintainer"]["secrets"])


def test_maintainer_reaches_the_engine_only_through_the_socket_proxy():
    maintainer, proxy = SERVICES["maintainer"], SERVICES["docker-proxy"]
    assert maintainer["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
    mounts = [volume for spec in SERVICES.values() for volume in spec.get("volumes", []) if "docker.sock" in volume]
    assert mounts == ["/var/run/docker.sock:/var/run/docker.sock:ro"] and "group_add" not in maintainer
    assert proxy["networks"] == ["docker-api"] and "docker-api" in maintainer["networks"]
    assert COMPOSE["networks"]["docker-api"]["internal"] is True
    assert {name for name, on in proxy["environment"].items() if on == 1} == PROXY_ALLOWED


def test_the_drill_and_client_containers_join_the_network_compose_creates():
    config = yaml.safe_load((REPO / "deploy" / "schedules.yaml").read_text())
    network = f"{COMPOSE['name']}_backend"
    assert config["jobs"]["drill"]["network"] == network
    assert config["databases"]["contrivance"]["client"]["network"] == network


@pytest.mark.parametrize("path", ["schedules.yaml", "deploy/schedules.yaml"])
def test_update_images_lists_the_stacks_base_images_pinned_to_versions(path):
    images = yaml.safe_load((REPO / path).read_text())["jobs"]["update-images"]["images"]
    refs = {parse_ref(image).repository.rsplit("/", 1)[-1]: parse_ref(image) for image in images}
    for repository, variant in BASE_IMAGES.items():
        ref = refs[repository]
        assert variant in ref.tag and re.search(r"\d", ref.tag), (path, ref)
    assert refs["debian"].tag.startswith("bookworm-") and refs["debian"].tag.endswith("-slim")
    assert refs["rust"].tag.endswith("-slim-bookworm") and refs["nginx"].tag.endswith("-alpine")


def test_both_shipped_schedules_pin_the_same_base_images():
    root, deploy = ([*yaml.safe_load((REPO / p).read_text())["jobs"]["update-images"]["images"]]
                    for p in ("schedules.yaml", "deploy/schedules.yaml"))
    assert root == deploy


@pytest.mark.parametrize("path", ["schedules.yaml", "deploy/schedules.yaml"])
def test_the_database_image_is_updated_only_after_a_backup(path):
    jobs = yaml.safe_load((REPO / path).read_text())["jobs"]
    update = jobs["update-postgres"]
    assert SERVICES["postgres"]["image"] in update["images"]  # the database image the stack runs
    assert update["apply"]["services"] == ["postgres"] and update["apply"]["rollback"] is True
    assert [jobs[name]["type"] for name in update["apply"]["before"]] == ["pg_backup"]
