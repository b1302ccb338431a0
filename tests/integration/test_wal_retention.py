"""Retention of base backups and WAL on a real server and a real S3 API (moto), with
the archive encrypted: three base backups under load, keep_last 2; the oldest base
backup goes, and with it exactly the WAL before the second one's start segment.
Every segment from there on stays, verifies and decrypts; nothing in the bucket is
plaintext WAL."""

from __future__ import annotations

import pytest

from maintainer.crypto.keyring import Keyring
from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.wal import archive, basebackups
from maintainer.wal.lsn import parse_segment_name, segment_of
from maintainer.wal.state import STATES

from support.encryption import encryption, make_key
from support.pgdata import s3_storage, wait_for
from support.postgres import remove_postgres
from support.wal_server import BackgroundRun, drop_slot, pgbench, start_replication_server, switch_wal, wal_config

pytestmark = pytest.mark.integration

KEEP = {"keep_last": 2, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    server = start_replication_server(docker_client, pg_image)
    pgbench(server, "-i", "-s", "2", "-q")
    yield server
    remove_postgres(server)


def test_retention_removes_exactly_the_wal_no_kept_base_backup_needs(server, s3_server, s3_bucket, tmp_path):
    identity, recipient = make_key(tmp_path, "id.txt")
    url, extra = s3_storage(s3_server, s3_bucket)
    config = wal_config(url, server, storage_extra={**extra, "encryption": encryption([recipient], [identity])},
                        base={"retention": KEEP})
    storage = open_storage(config.storage["main"], "main")
    keyring = Keyring.of(config, "main")
    run = BackgroundRun(config)
    try:
        wait_for(lambda: STATES.get("wal") is not None and STATES.get("wal").up, 60, "the receiver to start")
        for _ in range(3):
            pgbench(server, "-T", "2", "-c", "2", "-n")
            switch_wal(server)
            result = run_job(config, "base")
            assert result.ok, result.errors
        last = switch_wal(server)
        wait_for(lambda: (s := archive.list_archive(storage, "pg").find(last)) is not None and not s.partial,
                 60, f"{last} archived")
    finally:
        assert run.stop().ok
        drop_slot(server)
    kept = basebackups.list_base_backups(storage, "pg")
    assert len(kept) == 2
    deleted = result.details["base_backup"]["deleted"]
    assert len(deleted) == 1 and deleted[0] not in {e.id for e in kept}
    cutoff = segment_of(kept[-1].manifest.start)
    listing = archive.list_archive(storage, "pg")
    numbers = sorted(segno for _, segno in listing.segments)
    assert numbers[0] == cutoff, "the oldest kept base backup's start segment is the first one left"
    assert result.details["base_backup"]["wal_deleted"], "the WAL before it was removed"
    assert numbers == list(range(cutoff, parse_segment_name(last)[1] + 1)), "no hole from there on"
    for stored in listing.segments.values():
        assert stored.encrypted
        assert storage.get_bytes(stored.key).startswith(b"age-encryption.org/v1")
        assert len(archive.read_segment(storage, stored, keyring)) == listing.segment_size
