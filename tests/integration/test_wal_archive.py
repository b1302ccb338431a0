"""The WAL archive against a real PostgreSQL 15 container under pgbench load: every
segment from a base backup's start to the server's flush position reaches storage
with its checksum, and nothing is missing; a commit reaches storage within the flush
interval, as the partial segment. (Faults and gaps: test_wal_faults.py.)"""

from __future__ import annotations


import pytest

from maintainer.storage import open_storage
from maintainer.wal import archive, basebackups
from maintainer.wal.lsn import segment_name_of_lsn, segment_of, segment_start
from maintainer.wal.state import STATES
from maintainer.runner import run_job

from support.pgdata import psql, wait_for
from support.postgres import remove_postgres
from support.wal_server import (BackgroundRun, drop_slot, flush_lsn, pgbench, start_replication_server,
                                switch_wal, wal_config)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    server = start_replication_server(docker_client, pg_image)
    pgbench(server, "-i", "-s", "5", "-q")
    yield server
    remove_postgres(server)


def archived_through(storage, segment_name: str) -> bool:
    return archive.list_archive(storage, "pg").find(segment_name) is not None and \
        not archive.list_archive(storage, "pg").find(segment_name).partial


def test_every_segment_under_load_is_archived_with_its_checksum_and_no_gap(server, tmp_path):
    config = wal_config(f"file://{tmp_path}/store", server)
    storage = open_storage(config.storage["main"], "main")
    run = BackgroundRun(config)
    try:
        wait_for(lambda: (STATES.get("wal") or None) and STATES.get("wal").up, 60, "the receiver to start")
        base = run_job(config, "base")
        assert base.ok, base.errors
        pgbench(server, "-T", "8", "-c", "2", "-n")
        last = switch_wal(server)
        end = flush_lsn(server)
        wait_for(lambda: archived_through(storage, last), 60, f"segment {last} in storage")
        wait_for(lambda: STATES.get("wal").lag_seconds is not None, 30, "a lag measurement")
    finally:
        result = run.stop()
        drop_slot(server)
    assert result.ok, result.errors
    assert result.figures["segments"] >= 3
    [entry] = basebackups.list_base_backups(storage, "pg")
    listing = archive.list_archive(storage, "pg")
    assert listing.record.system_identifier == entry.manifest.system_identifier
    gaps = archive.find_gaps(listing, entry.manifest.start, end - 1, entry.manifest.timeline, [])
    # the segment holding ``end`` may still be partial: everything before it is complete
    gaps = [g for g in gaps if g.first < segment_of(end, listing.segment_size)]
    assert gaps == []
    needed = range(segment_of(entry.manifest.start), segment_of(end))
    assert len(needed) >= 3
    for segno in needed:
        stored = listing.segments[(1, segno)]
        data = archive.read_segment(storage, stored)
        assert len(data) == listing.segment_size


def test_a_commit_reaches_storage_before_its_segment_is_complete_as_a_partial_segment(server, tmp_path):
    # How fast (the lag) is bench/wal.py's figure; a timed assertion here would only
    # measure how busy this machine is.
    config = wal_config(f"file://{tmp_path}/store", server, wal={"flush_interval": "2s"})
    storage = open_storage(config.storage["main"], "main")
    run = BackgroundRun(config)
    try:
        wait_for(lambda: STATES.get("wal") is not None and STATES.get("wal").up, 60, "the receiver to start")
        psql(server, "CREATE TABLE IF NOT EXISTS rpo (note text); INSERT INTO rpo VALUES ('committed')")
        target = flush_lsn(server)
        wait_for(lambda: (STATES.get("wal").archived_lsn or 0) >= target, 60, "the commit in storage")
    finally:
        assert run.stop().ok
        drop_slot(server)
    listing = archive.list_archive(storage, "pg")
    stored = listing.find(segment_name_of_lsn(1, target))
    data = archive.read_segment(storage, stored)
    assert stored.partial or len(data) == listing.segment_size
    assert segment_start(segment_of(target)) + len(data.rstrip(b"\x00")) >= target
