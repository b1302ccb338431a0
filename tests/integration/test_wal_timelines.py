"""The archiver on a promoted server (timeline 2) whose WAL was written before the archiver
first connected: it archives timeline 2 from its switch point on, not from the new slot's
position (the last checkpoint's redo point); and when the server has already removed that
WAL, the hole is a reported gap, and archiving goes on."""

from __future__ import annotations

import json

import docker.errors
import pytest

from maintainer.config import parse_config
from maintainer.wal import archive
from maintainer.wal.lsn import parse_lsn, segment_name, segment_of, segment_start
from maintainer.wal.timeline import parse_history

from support.docker_resources import unique_name
from support.pgdata import db_entry, psql
from support.pitr import BEFORE, DBNAME, SERVER, archive_more, archived_scenario, insert, marker_ids, start_on_volume
from support.postgres import remove_postgres
from support.scenarios import document, run_cli, write_config
from support.wal_server import switch_wal

pytestmark = pytest.mark.integration

UNARCHIVED = [201, 202, 203]  # committed on timeline 2 before the archiver ever connects
AFTER_START = [301, 302]


@pytest.fixture
def promoted(docker_client, pg_image, tmp_path):
    """An archive of timeline 1, and the cluster recovered from it (promoted onto timeline 2)
    running as the live server; yields (scenario, server, config document)."""
    scenario = archived_scenario(docker_client, pg_image, tmp_path / "a")
    volume = unique_name("maintainer-test-pitr-vol")
    swapped = None
    try:
        out = run_cli(scenario.config_file, "restore", "--to-time", scenario.target.isoformat(),
                      "--into-volume", volume)
        assert out.returncode == 0, out.stderr
        swapped = start_on_volume(docker_client, pg_image, volume, scenario.server)
        data = json.loads(json.dumps(scenario.data))
        data["databases"][SERVER].update(db_entry(swapped, DBNAME))
        yield scenario, swapped, data
    finally:
        if swapped is not None:
            remove_postgres(swapped)
        remove_postgres(scenario.server)
        try:
            docker_client.volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            pass


def switch_point(server) -> int:
    """Where timeline 2 began, from the server's own 00000002.history."""
    assert psql(server, "SELECT timeline_id FROM pg_control_checkpoint()").strip() == "2"
    return parse_history(psql(server, "SELECT pg_read_file('pg_wal/00000002.history')"), 2)[-1].switchpoint


def write_unarchived_wal(server) -> list[str]:
    """Commit UNARCHIVED rows over several segments of timeline 2; the segments closed."""
    closed = []
    for i in UNARCHIVED:
        insert(server, [i], "before-archiver")
        closed.append(switch_wal(server))
    return closed


def client_for(mode: str, server, image_template: str) -> dict:
    """The databases entry's ``client`` for pg_receivewal run locally or in a throwaway
    container on the default bridge network. (The seed is made by the receiver script
    wherever it runs, exec mode included; exec mode is left out here because stopping
    it on this swapped-in PostgreSQL 15 container fails with or without a seed.)"""
    if mode == "container":
        server.container.reload()
        ip = server.container.attrs["NetworkSettings"]["IPAddress"]
        return {"mode": "container", "image": image_template, "host": ip, "port": 5432}
    return {"mode": "local"}


@pytest.mark.parametrize("mode", ["local", "container"])
def test_a_promoted_server_is_archived_from_its_switch_point_not_from_the_new_slot(promoted, tmp_path, mode):
    scenario, swapped, data = promoted
    data["databases"][SERVER]["client"] = client_for(mode, swapped, data["databases"][SERVER]["client"]["image"])
    switch = switch_point(swapped)
    # The server still has timeline 2's first WAL (a standby's slot keeps it here), but a
    # checkpoint moved its redo point on: a slot created now starts past the switch point.
    psql(swapped, "SELECT pg_create_physical_replication_slot('keep', true)")
    closed = write_unarchived_wal(swapped)
    psql(swapped, "CHECKPOINT")
    redo = parse_lsn(psql(swapped, "SELECT redo_lsn FROM pg_control_checkpoint()").strip())
    assert segment_of(redo) > segment_of(switch)
    config = parse_config(json.dumps(data), "swapped.yaml")

    archive_more(config, swapped, AFTER_START, "after-archiver-start")

    listing = archive.list_archive(scenario.storage, SERVER)
    assert 2 in listing.histories
    newest = max(segno for tli, segno in listing.segments if tli == 2)
    history = archive.timeline_history(scenario.storage, listing, 2)
    assert history[-1].switchpoint == switch
    assert archive.find_gaps(listing, switch, segment_start(newest + 1, listing.segment_size) - 1, 2, history) == []
    assert (2, segment_of(switch, listing.segment_size)) in listing.segments
    assert all(listing.find(name) is not None for name in closed)
    assert archive.archive_gaps(scenario.storage, listing) == []

    out = run_cli(write_config(tmp_path, data), "restore", "--to-end", "--json")

    assert out.returncode == 0, out.stderr
    summary = document(out.stdout)
    assert marker_ids(swapped, summary["restore_into"]) == BEFORE + UNARCHIVED + AFTER_START


def test_timeline_wal_the_server_already_removed_is_reported_as_a_gap(promoted):
    scenario, swapped, data = promoted
    switch = switch_point(swapped)
    write_unarchived_wal(swapped)
    psql(swapped, "CHECKPOINT")  # no slot yet: the segments before its redo point are removed
    config = parse_config(json.dumps(data), "swapped.yaml")

    archive_more(config, swapped, AFTER_START, "after-archiver-start")

    listing = archive.list_archive(scenario.storage, SERVER)
    gaps = archive.archive_gaps(scenario.storage, listing)
    first = segment_name(2, segment_of(switch, listing.segment_size), listing.segment_size)
    assert [g.first_name for g in gaps] == [first]
