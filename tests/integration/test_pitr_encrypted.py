"""Point-in-time restore and the PITR drill on an encrypted archive in S3 (moto), written
by the real jobs: segments and base backup are age-encrypted at rest, and maintainer
decrypts them while serving recovery; without the identity nothing is created."""

from __future__ import annotations

import json

import pytest

from support.encryption import encryption, make_key
from support.pgdata import s3_storage
from support.pitr import BEFORE, DBNAME, SERVER, archived_scenario, marker_ids, pitr_leftovers
from support.postgres import remove_postgres
from support.scenarios import databases, document, run_cli, write_config

from maintainer.config import parse_config
from maintainer.runner import run_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenario(docker_client, pg_image, tmp_path_factory, s3_server, module_s3_bucket):
    tmp = tmp_path_factory.mktemp("pitr-age")
    key, recipient = make_key(tmp, "age.key")
    url, extra = s3_storage(s3_server, module_s3_bucket)
    s = archived_scenario(docker_client, pg_image, tmp, storage_url=url,
                          storage_extra={**extra, "encryption": encryption([recipient], [key])})
    yield s
    remove_postgres(s.server)


def test_the_archive_is_encrypted_at_rest(scenario):
    keys = [i.key for i in scenario.storage.list(f"wal/{SERVER}/") if "/history/" not in i.key
            and not i.key.endswith("archive.json")]
    assert keys and all(k.endswith(".zst.age") for k in keys)
    base = [i.key for i in scenario.storage.list(f"base/{SERVER}/") if "base.tar" in i.key]
    assert base and all(k.endswith(".zst.age") for k in base)


def test_restore_to_a_time_from_an_encrypted_archive_brings_back_the_rows(scenario, docker_client):
    out = run_cli(scenario.config_file, "restore", "--to-time", scenario.target.isoformat(), "--json")

    assert out.returncode == 0, out.stderr
    assert marker_ids(scenario.server, document(out.stdout)["restore_into"]) == BEFORE
    assert pitr_leftovers(docker_client) == []


def test_the_pitr_drill_passes_on_the_encrypted_archive(scenario, docker_client):
    result = run_job(scenario.config, "drill")

    assert result.ok, result.errors
    assert all(c["passed"] for c in result.details["drills"][0]["checks"])
    assert pitr_leftovers(docker_client) == []


def test_without_the_identity_the_restore_stops_before_creating_anything(scenario, docker_client, tmp_path):
    data = json.loads(json.dumps(scenario.data))
    data["storage"]["main"]["encryption"].pop("identity_files")
    parse_config(json.dumps(data), "check.yaml")
    before = databases(scenario.server)

    out = run_cli(write_config(tmp_path, data), "restore", "--to-end")

    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "no identity is configured" in out.stderr and "pitr.server_created" not in out.stderr
    assert databases(scenario.server) == before and pitr_leftovers(docker_client) == []


__all__ = ["DBNAME"]
