"""The built image, run as a user runs it: beside PostgreSQL and S3 on a docker
network, with the Docker socket mounted, driven with ``docker exec``.

Builds the Dockerfile with the test bed's Python image as BASE_IMAGE (no
registry is reachable here), installing dependency wheels the host downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from maintainer.backup import catalog
from maintainer.config.models import StorageSpec
from maintainer.restore.container import DRILL_LABEL
from maintainer.storage.s3 import S3Storage
from support.docker_resources import docker_labels, unique_name
from support.s3 import S3Endpoint

from support.pgdata import load_contrivance

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PY_BASE = "maintainer-test/python:3.11"
BUCKET = "contrivance-backups"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_daemon", REPO / "bench" / "daemon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def image(docker_client):
    docker_client.images.get(PY_BASE)  # the test bed must have built it
    tag = f"maintainer-test/maintainer:e2e-{uuid.uuid4().hex[:10]}"
    _bench().build_image(tag, PY_BASE)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture
def s3(s3_container):
    """The test bed's S3 container, s3:5000 on the test network, with the backup bucket."""
    s3_container.client().create_bucket(Bucket=BUCKET)
    return s3_container


@pytest.fixture
def source(postgres_factory, docker_network):
    server = postgres_factory(network=docker_network, alias="db")
    load_contrivance(server)
    return server


def write_config(tmp_path: Path, source, network: str, *, backup_schedule: str = "15 3 * * *",
                 shutdown_grace: str = "60s") -> Path:
    conf = tmp_path / "etc"
    (conf / "secrets").mkdir(parents=True)
    (conf / "secrets" / "postgres_password").write_text(source.password)
    (conf / "secrets" / "s3_access_key_id").write_text("testing")
    (conf / "secrets" / "s3_secret_access_key").write_text("testing")
    labels = ", ".join(f'"{k}": "{v}"' for k, v in docker_labels().items())
    (conf / "schedules.yaml").write_text(f"""
timezone: UTC
storage:
  s3:
    url: s3://{BUCKET}/maintainer
    endpoint_url: http://s3:5000
    region: us-east-1
    path_style: true
    access_key_id_file: /etc/maintainer/secrets/s3_access_key_id
    secret_access_key_file: /etc/maintainer/secrets/s3_secret_access_key
databases:
  contrivance:
    host: db
    user: {source.user}
    password_file: /etc/maintainer/secrets/postgres_password
    sslmode: disable
    client: {{mode: local}}
daemon:
  state_dir: /var/lib/maintainer/state
  listen: 0.0.0.0:9187
  shutdown_grace: {shutdown_grace}
jobs:
  backup:
    type: pg_backup
    schedule: "{backup_schedule}"
    databases: [contrivance]
    storage: s3
  drill:
    type: restore_drill
    schedule: "30 5 * * 0"
    databases: [contrivance]
    storage: s3
    image: maintainer-test/postgres:{{major}}
    network: {network}
    memory: 512m
    checks_dir: /etc/maintainer/checks
    labels: {{{labels}}}
""")
    (conf / "checks").mkdir()
    for check in (REPO / "restore" / "checks").glob("*.sql"):
        (conf / "checks" / check.name).write_text(check.read_text())
    for path in [conf, *conf.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's non-root user
    return conf


@pytest.fixture
def run_maintainer(docker_client, docker_network, image):
    started = []

    def run(conf: Path):
        sock_gid = os.stat("/var/run/docker.sock").st_gid
        container = docker_client.containers.run(
            image, ["--log-format", "json", "daemon"], detach=True, name=unique_name("maintainer-test-daemon"),
            labels=docker_labels(), network=docker_network, group_add=[sock_gid], mem_limit="256m",
            nano_cpus=500_000_000, ports={"9187/tcp": ("127.0.0.1", None)},
            volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                     str(conf): {"bind": "/etc/maintainer", "mode": "ro"}})
        started.append(container)
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["9187/tcp"][0]["HostPort"]
        return container, f"http://127.0.0.1:{port}"

    yield run
    for container in started:
        container.remove(force=True, v=True)


def get(url: str, timeout: float = 30) -> tuple[int, dict]:
    """GET, waiting (bounded) until the daemon answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.5)


def exec_maintainer(container, *args: str, timeout: float = 600) -> tuple[int, str]:
    result = container.exec_run(["maintainer", "--log-format", "json", *args])
    return result.exit_code, result.output.decode(errors="replace")


def host_storage(s3: S3Endpoint) -> S3Storage:
    return S3Storage("s3", StorageSpec(url=f"s3://{BUCKET}/maintainer", endpoint_url=s3.endpoint_url,
                                       region=s3.region, path_style=True, access_key_id=s3.access_key,
                                       secret_access_key=s3.secret_key))


def test_health_turns_from_503_to_200_after_a_backup_and_a_drill_run_inside_the_container(
        docker_client, docker_network, source, s3, run_maintainer, tmp_path):
    container, base = run_maintainer(write_config(tmp_path, source, docker_network))

    code, report = get(f"{base}/health")
    assert code == 503
    assert {c["check"] for c in report["failing"]} == {"backup_age", "drill_age"}
    assert exec_maintainer(container, "healthcheck")[0] == 1

    code, out = exec_maintainer(container, "run", "backup")
    assert code == 0, out
    code, report = get(f"{base}/health")
    assert code == 503 and [c["check"] for c in report["failing"]] == ["drill_age"]

    code, out = exec_maintainer(container, "run", "drill")
    assert code == 0, out
    code, report = get(f"{base}/health")
    assert code == 200, report
    assert exec_maintainer(container, "healthcheck")[0] == 0

    entries = catalog.list_backups(host_storage(s3), "contrivance")
    assert len(entries) == 1 and entries[0].verified
    code, out = exec_maintainer(container, "status", "--json")
    status = {j["job"]: j for j in json.loads(out[out.index("{"):])["jobs"]}
    assert status["backup"]["last_run"]["status"] == "ok" and status["drill"]["last_run"]["status"] == "ok"
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert 'maintainer_backup_newest_rows{database="contrivance"}' in metrics
    assert 'maintainer_job_last_result{job="drill",type="restore_drill"} 1.0' in metrics
    assert docker_client.containers.list(all=True, filters={"label": f"{DRILL_LABEL}=1",
                                                            "network": docker_network}) == []
    assert source.password not in container.logs().decode(errors="replace")

    # The image's own HEALTHCHECK (maintainer healthcheck, as the non-root user) agrees.
    deadline = time.monotonic() + 120
    while True:
        container.reload()
        health = container.attrs["State"]["Health"]
        if health["Status"] == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert health["Status"] == "healthy", health["Log"][-3:]


def test_sigterm_during_a_scheduled_backup_lists_nothing_incomplete_and_exits_0(
        docker_client, docker_network, source, s3, run_maintainer, tmp_path):
    # About 575 MB of dump: seconds of streaming left when the first part is uploaded,
    # well past the 1 s grace time.
    with source.connect("contrivance") as conn:
        conn.execute("CREATE TABLE ballast AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 6) AS body "
                     "FROM generate_series(1, 2500000) AS g")
    conf = write_config(tmp_path, source, docker_network, backup_schedule="* * * * *", shutdown_grace="1s")
    container, base = run_maintainer(conf)
    get(f"{base}/health")

    # SIGTERM once the dump is streaming into S3 (its multipart upload exists), not after
    # a fixed sleep: on a loaded machine the sleep could end after the backup had.
    s3_client = s3.client()
    deadline = time.monotonic() + 120  # the next minute boundary, start-up and the first part
    while not s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
        assert time.monotonic() < deadline, container.logs().decode(errors="replace")
        time.sleep(0.1)
    container.kill(signal="SIGTERM")
    assert container.wait(timeout=120)["StatusCode"] == 0

    logs = [json.loads(line) for line in container.logs().decode().splitlines() if line.startswith("{")]
    events = [e["event"] for e in logs]
    assert "daemon.aborting_runs" in events, "\n".join(json.dumps(e) for e in logs)
    failed = [e for e in logs if e["event"] == "job.failed"]
    assert failed and "interrupted" in " ".join(failed[0]["errors"])
    assert events[-1] == "daemon.stopped"

    assert catalog.list_backups(host_storage(s3), "contrivance") == []
    uploads = s3_client.list_multipart_uploads(Bucket=BUCKET)
    assert uploads.get("Uploads", []) == []
