"""`maintainer restore --to-time/--to-lsn/--to-end` run as a user would, on a WAL archive and
base backup written by maintainer's real wal_archive and pg_basebackup jobs."""

from __future__ import annotations

import shutil
from datetime import timedelta

import docker.errors
import pytest

from maintainer.wal import archive, basebackups

from support.docker_resources import docker_labels, unique_name
from support.pitr import AFTER, BEFORE, DBNAME, SERVER, archived_scenario, marker_ids, pitr_leftovers
from support.postgres import remove_postgres
from support.scenarios import databases, document, run_cli, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenario(docker_client, pg_image, tmp_path_factory):
    s = archived_scenario(docker_client, pg_image, tmp_path_factory.mktemp("pitr"))
    yield s
    remove_postgres(s.server)


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_restore_to_a_time_brings_back_exactly_the_rows_committed_before_it(scenario, docker_client):
    assert marker_ids(scenario.server, DBNAME) == []  # the DELETE without WHERE happened
    before = databases(scenario.server)

    out = run_cli(scenario.config_file, "restore", "--to-time", iso(scenario.target), "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    restored = summary["restore_into"]
    assert restored.startswith(f"{DBNAME}_restored_") and databases(scenario.server) == before | {restored}
    assert marker_ids(scenario.server, restored) == BEFORE  # the deleted rows are back, nothing after the target
    assert marker_ids(scenario.server, DBNAME) == []  # the live database is untouched
    assert summary["timeline"] == 2 and summary["segments"] >= 2
    assert pitr_leftovers(docker_client) == []


def test_restore_to_the_end_replays_the_delete_and_to_an_lsn_stops_there(scenario, docker_client):
    out = run_cli(scenario.config_file, "restore", "--to-end", "--json")
    assert out.returncode == 0, out.stderr
    assert marker_ids(scenario.server, document(out.stdout)["restore_into"]) == []
    [base] = basebackups.list_base_backups(scenario.storage, SERVER)

    out = run_cli(scenario.config_file, "restore", "--to-lsn", base.manifest.stop_lsn, "--json")

    assert out.returncode == 0, out.stderr
    assert marker_ids(scenario.server, document(out.stdout)["restore_into"]) == BEFORE[:5]
    assert pitr_leftovers(docker_client) == []


def test_dry_run_prints_the_plan_and_creates_nothing(scenario, docker_client):
    before = databases(scenario.server)

    out = run_cli(scenario.config_file, "restore", "--to-time", iso(scenario.target), "--dry-run", "--json")

    assert out.returncode == 0, out.stderr
    plan = document(out.stdout)
    [base] = basebackups.list_base_backups(scenario.storage, SERVER)
    assert plan["dry_run"] is True and plan["base_backup"] == base.id
    assert plan["first_segment"] == base.manifest.start_segment
    assert any("pg_verifybackup" in step for step in plan["steps"])
    assert databases(scenario.server) == before and pitr_leftovers(docker_client) == []


@pytest.mark.parametrize("when, message", [
    (lambda s: s.target + timedelta(hours=1), "is in the future"),
    (lambda s: s.target - timedelta(hours=1), "is before the oldest base backup of pg"),
])
def test_a_target_outside_the_archive_is_refused_and_nothing_is_created(scenario, docker_client, when, message):
    before = databases(scenario.server)

    out = run_cli(scenario.config_file, "restore", "--to-time", iso(when(scenario)))

    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
    assert databases(scenario.server) == before and pitr_leftovers(docker_client) == []


def test_a_target_after_a_gap_is_refused_naming_the_gap_and_the_latest_reachable_time(scenario, docker_client,
                                                                                      tmp_path):
    store = tmp_path / "store"
    shutil.copytree(scenario.store, store)
    [base] = basebackups.list_base_backups(scenario.storage, SERVER)
    listing = archive.list_archive(scenario.storage, SERVER)
    start = listing.find(base.manifest.start_segment)
    after = sorted(k for k in listing.segments if k[1] > int(base.manifest.start_segment[16:], 16))[0]
    (store / listing.segments[after].key).unlink()  # the segment after the base backup's first
    data = {**scenario.data, "storage": {"main": {"url": f"file://{store}"}}}
    before = databases(scenario.server)

    out = run_cli(write_config(tmp_path, data), "restore", "--to-time", iso(scenario.target))

    assert out.returncode == 1
    gap = listing.segments[after].segment
    assert f"missing {gap}" in out.stderr and "latest reachable time" in out.stderr
    assert start is not None and databases(scenario.server) == before and pitr_leftovers(docker_client) == []


def test_into_volume_leaves_a_checked_cluster_in_a_new_volume_and_prints_the_swap(scenario, docker_client):
    volume = unique_name("maintainer-test-pitr-vol")
    try:
        out = run_cli(scenario.config_file, "restore", "--to-time", iso(scenario.target), "--into-volume", volume)

        assert out.returncode == 0, out.stderr
        assert f"started on volume {volume} and accepted connections" in out.stdout
        assert f"name: {volume}" in out.stdout  # the compose swap
        server = docker_client.containers.run(
            scenario.server.image, name=unique_name("maintainer-test-pitr-check"), labels=docker_labels(),
            volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}}, detach=True, network_mode="none")
        try:
            ids = _query_when_ready(server, "SELECT string_agg(id::text, ',' ORDER BY id) FROM marker")
        finally:
            server.remove(force=True, v=True)
        assert ids == ",".join(map(str, BEFORE))
        assert pitr_leftovers(docker_client) == []
    finally:
        try:
            docker_client.volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            pass


def test_into_volume_refuses_an_existing_volume_and_leaves_it_alone(scenario, docker_client):
    volume = docker_client.volumes.create(name=unique_name("maintainer-test-pitr-vol"), labels=docker_labels())
    try:
        out = run_cli(scenario.config_file, "restore", "--to-end", "--into-volume", volume.name)
        assert out.returncode == 1 and f"volume {volume.name} exists already" in out.stderr
        docker_client.volumes.get(volume.name)  # still there
        assert pitr_leftovers(docker_client) == []
    finally:
        volume.remove(force=True)


def test_replace_switches_the_recovered_copy_in_and_keeps_the_old_database(scenario, docker_client):
    # Last in this module: it changes the live database the other tests look at.
    out = run_cli(scenario.config_file, "restore", "--to-time", iso(scenario.target), "--replace", "--yes",
                  "--no-safety-backup", "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    assert marker_ids(scenario.server, DBNAME) == BEFORE
    assert summary["replaced_name"].startswith(f"{DBNAME}_replaced_")
    assert marker_ids(scenario.server, summary["replaced_name"]) == []  # the old one, kept as it was
    assert pitr_leftovers(docker_client) == []


def _query_when_ready(container, sql: str, timeout: float = 60.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = container.exec_run(["psql", "-X", "-A", "-t", "-U", "postgres", "-d", DBNAME, "-c", sql],
                                    user="postgres")
        if result.exit_code == 0:
            return result.output.decode().strip()
        time.sleep(0.3)
    raise AssertionError(f"no answer from {container.name}: {result.output.decode()[-500:]}")


__all__ = ["AFTER"]
