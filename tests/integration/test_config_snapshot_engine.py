"""config_snapshot of a real compose-labelled container on the real engine, stored in
a real S3 API: no known secret value appears anywhere in the stored snapshot."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid

import pytest
import yaml
import zstandard

from maintainer.cli.main import main
from maintainer.runner import run_job
from maintainer.config import load_config
from support.docker_resources import docker_labels, unique_name

pytestmark = pytest.mark.integration

COMPOSE = "com.docker.compose.project"


@pytest.fixture
def project(docker_client):
    """A unique compose project name; its containers, volumes and networks removed afterwards."""
    name = unique_name("maintainer-test-proj")
    yield name
    selector = {"label": f"{COMPOSE}={name}"}
    for c in docker_client.containers.list(all=True, filters=selector):
        c.remove(force=True, v=True)
    for v in docker_client.volumes.list(filters=selector):
        v.remove(force=True)


def test_secrets_never_reach_the_stored_snapshot_and_the_spec_is_complete(
        docker_client, project, s3_server, s3_bucket, tmp_path, capsys):
    secrets = {k: f"{k.lower()}-{uuid.uuid4().hex}" for k in
               ("container_pw", "container_key", "health_pw", "env_file_pw", "env_file_token",
                "compose_secret", "url_pw", "label_secret", "excluded", "bearer")}
    srv = tmp_path / "srv"
    (srv / "config" / "nginx").mkdir(parents=True)
    (srv / "compose.yaml").write_text(
        "services:\n  api:\n    image: contrivance/api:1\n    environment:\n"
        f"      JWT_SECRET: {secrets['compose_secret']}\n"
        f"      DATABASE_URL: postgres://app:{secrets['url_pw']}@postgres:5432/contrivance\n"
        "      RUST_LOG: info\n    secrets: [db_password]\n")
    (srv / ".env").write_text(f"POSTGRES_PASSWORD={secrets['env_file_pw']}\nTZ=UTC\n")
    (srv / "config" / "api.env").write_text(f"export GITHUB_TOKEN=\"{secrets['env_file_token']}\"\n")
    (srv / "config" / "nginx" / "default.conf").write_text(
        f"location / {{ proxy_set_header Authorization \"Bearer {secrets['bearer']}\"; }}\n")
    (srv / "config" / "tls.pem").write_text(secrets["excluded"])
    os.symlink(f"/run/secrets/{unique_name('maintainer-test')}", srv / "config" / "db_password")

    volume = docker_client.volumes.create(unique_name("maintainer-test-data"),
                                          labels={**docker_labels(), COMPOSE: project})
    container = docker_client.containers.run(
        "maintainer-test/python:3.11", ["sleep", "300"], detach=True, name=f"{project}-api-1",
        labels={**docker_labels(), COMPOSE: project, "com.docker.compose.service": "api",
                "app.webhook.secret": secrets["label_secret"]},
        environment={"POSTGRES_PASSWORD": secrets["container_pw"], "SERVICE_API_KEY": secrets["container_key"],
                     "RUST_LOG": "info"},
        healthcheck={"test": ["CMD-SHELL", f"PGPASSWORD={secrets['health_pw']} true"], "interval": 30_000_000_000},
        volumes={volume.name: {"bind": "/data", "mode": "rw"}}, restart_policy={"Name": "unless-stopped"},
        mem_limit="64m", ports={"8080/tcp": ("127.0.0.1", None)})

    cfg = tmp_path / "schedules.yaml"
    cfg.write_text(yaml.safe_dump({
        "storage": {"s3": {"url": f"s3://{s3_bucket}/m", "endpoint_url": s3_server.endpoint_url,
                           "region": s3_server.region, "path_style": True,
                           "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}},
        "jobs": {"snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *", "storage": "s3",
                              "paths": [str(srv)], "exclude": ["*.pem"], "compose_project": project}}}))
    config = load_config(cfg)

    result = run_job(config, "snapshot")
    assert result.ok, result.errors
    assert result.details["containers"] == [container.name]

    # Every stored object, decompressed, member by member: no secret anywhere.
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == ["manifest.json", "snapshot.tar.zst"]
    texts = []
    for key in keys:
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        if key.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
            texts.append(raw)
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
            texts.extend(members.values())
        else:
            texts.append(body)
    for name, value in secrets.items():
        assert all(value.encode() not in blob for blob in texts), f"{name} leaked into the snapshot"
    assert all(json.dumps(result.to_dict()).find(v) < 0 for v in secrets.values())

    spec = json.loads(members[f"engine/containers/{container.name}.json"])
    assert spec["image"] == "maintainer-test/python:3.11"
    assert spec["image_id"] == docker_client.images.get("maintainer-test/python:3.11").id
    assert spec["environment"]["RUST_LOG"] == "info"
    assert spec["environment"]["POSTGRES_PASSWORD"] == "<masked by maintainer>"
    assert spec["command"] == ["sleep", "300"]
    assert spec["restart_policy"]["Name"] == "unless-stopped"
    assert spec["resources"]["Memory"] == 64 * 1024 * 1024
    assert spec["ports"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert [m["name"] for m in spec["mounts"]] == [volume.name]
    assert spec["healthcheck"]["Test"][0] == "CMD-SHELL"
    assert "bridge" in spec["networks"]
    assert spec["labels"]["com.docker.compose.service"] == "api"
    assert [v["name"] for v in json.loads(members["engine/volumes.json"])] == [volume.name]
    assert json.loads(members["engine/images.json"])[0]["tags"] == ["maintainer-test/python:3.11"]
    assert "files/" + str(srv / "config" / "tls.pem").lstrip("/") not in members
    assert "manifest.json" in members

    # Same state again: not stored a second time.
    again = run_job(config, "snapshot")
    assert again.ok and again.figures["stored"] == 0
    assert "not stored again" in again.summary[-1]

    # The CLI lists it and extracts it, with a diff against the state now.
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(cfg), "snapshots", "--json"])
    assert exit_.value.code == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [result.details["snapshot_id"]]

    container.remove(force=True)
    (srv / ".env").write_text("TZ=Europe/Berlin\n")
    out = tmp_path / "restored"
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(cfg), "snapshot", "restore", "--latest", "--to", str(out)])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "files: 3 unchanged, 1 changed, 0 missing now" in printed
    assert f"gone: {container.name}" in printed
    assert (out / "files" / str(srv / "compose.yaml").lstrip("/")).exists()
    assert (out / "engine" / "containers" / f"{container.name}.json").exists()


def test_a_snapshot_altered_in_s3_is_refused_on_restore_with_one_line(s3_server, s3_bucket, tmp_path, capsys):
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "compose.yaml").write_text("services:\n  api:\n    image: contrivance/api:1\n" + "# padding\n" * 100)
    cfg = tmp_path / "schedules.yaml"
    cfg.write_text(yaml.safe_dump({
        "storage": {"s3": {"url": f"s3://{s3_bucket}/m", "endpoint_url": s3_server.endpoint_url,
                           "region": s3_server.region, "path_style": True,
                           "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}},
        "jobs": {"snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *", "storage": "s3",
                              "paths": [str(srv)]}}}))
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(cfg), "run", "--json", "snapshot"])
    assert exit_.value.code == 0
    snapshot_id = json.loads(capsys.readouterr().out)["details"]["snapshot_id"]
    s3 = s3_server.client()
    key = f"m/snapshots/snapshot/{snapshot_id}/snapshot.tar.zst"
    body = bytearray(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body))

    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(cfg), "snapshot", "restore", "--id", snapshot_id, "--to", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.splitlines() == [err.strip()]
    assert err.startswith(f"Error: snapshot snapshot/{snapshot_id}: SHA-256 mismatch")
    assert not (tmp_path / "out").exists()
