"""The WAL archive survives what production does to it, with the daemon as a real
process: pg_receivewal killed, the database container restarted, the daemon stopped
and started. Afterwards every segment from the base backup's start on is in storage
with its checksum. A segment removed from storage on purpose is a gap: the daemon's
/health fails on it until a new base backup covers it."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from maintainer.config import load_config
from maintainer.runner import run_job
from maintainer.storage import open_storage
from maintainer.wal import archive, basebackups
from maintainer.wal.lsn import parse_segment_name

from support.pgdata import wait_for
from support.postgres import remove_postgres, wait_until_ready
from support.s3 import free_port
from support.wal_daemon import (MAINTAINER, WalDaemon, get_json, receiver_pids, start_fixed_port_server,
                                write_daemon_config)
from support.wal_server import drop_slot, pgbench, switch_wal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    server = start_fixed_port_server(docker_client, pg_image)
    pgbench(server, "-i", "-s", "2", "-q")
    yield server
    remove_postgres(server)


def complete(storage, name: str) -> bool:
    found = archive.list_archive(storage, "pg").find(name)
    return found is not None and not found.partial


def wal_conditions(port: int) -> dict[str, dict]:
    _, report = get_json(f"http://127.0.0.1:{port}/health")
    return {c["check"]: c for c in report.get("checks", []) if c["check"].startswith("wal_")}


def test_kills_restarts_and_a_daemon_restart_leave_no_gap_and_a_removed_segment_is_a_gap(server, tmp_path):
    port = free_port()
    config_path = write_daemon_config(tmp_path / "schedules.yaml", server, f"file://{tmp_path}/store",
                                      port=port, state_dir=tmp_path / "state")
    config = load_config(config_path)
    storage = open_storage(config.storage["main"], "main")
    daemon = WalDaemon(config_path)
    try:
        daemon.wait_for("wal.receiver_started")
        assert run_job(config, "base").ok
        [base] = basebackups.list_base_backups(storage, "pg")
        pgbench(server, "-T", "3", "-c", "2", "-n")
        first = switch_wal(server)
        wait_for(lambda: complete(storage, first), 60, f"{first} archived")

        # 1. pg_receivewal killed: the archiver restarts it and it resumes from the slot
        [pid] = receiver_pids()
        os.kill(pid, signal.SIGKILL)
        daemon.wait_for("wal.receiver_stopped")
        daemon.wait_for("wal.receiver_started", 2)
        pgbench(server, "-T", "2", "-c", "2", "-n")

        # 2. the database container restarts (same address)
        server.container.restart(timeout=10)
        wait_until_ready(server)
        daemon.wait_for("wal.receiver_started", 3, timeout=120)
        pgbench(server, "-T", "2", "-c", "2", "-n")
        second = switch_wal(server)
        wait_for(lambda: complete(storage, second), 60, f"{second} archived")

        # 3. the daemon stops (SIGTERM: exit 0) while the server goes on writing, then starts again
        assert daemon.terminate() == 0
        assert receiver_pids() == []
        pgbench(server, "-T", "3", "-c", "2", "-n")
        daemon = WalDaemon(config_path)
        daemon.wait_for("wal.receiver_started")
        last = switch_wal(server)
        wait_for(lambda: complete(storage, last), 90, f"{last} archived after the daemon restart")

        listing = archive.list_archive(storage, "pg")
        _, last_segno = parse_segment_name(last)
        gaps = archive.find_gaps(listing, base.manifest.start, (last_segno + 1) * listing.segment_size - 1, 1)
        assert gaps == [], [g.describe() for g in gaps]
        for (tli, segno), stored in listing.segments.items():
            if segno >= parse_segment_name(base.manifest.start_segment)[1]:
                assert len(archive.read_segment(storage, stored)) == listing.segment_size
        wait_for(lambda: wal_conditions(port).get("wal_receiver", {}).get("ok") is True, 30, "receiver up in /health")
        assert wal_conditions(port)["wal_gaps"]["ok"] is True

        # 4. a segment removed from storage on purpose is a gap: /health fails and names it
        victim = listing.segments[(1, last_segno - 1)]
        storage.delete(victim.key)
        wait_for(lambda: wal_conditions(port).get("wal_gaps", {}).get("ok") is False, 30, "the gap in /health")
        assert "1 WAL segment(s) missing" in wal_conditions(port)["wal_gaps"]["message"]
        daemon.wait_for("wal.gap")
        status = subprocess.run([MAINTAINER, "-c", str(config_path), "wal", "status"], capture_output=True,
                                text=True, timeout=60)
        assert f"GAP: missing {victim.segment}" in status.stdout, status.stdout + status.stderr

        # 5. a new base backup covers it: health passes again
        assert run_job(config, "base").ok
        wait_for(lambda: wal_conditions(port).get("wal_gaps", {}).get("ok") is True, 30, "the gap healed")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        for pid in receiver_pids():
            os.kill(pid, signal.SIGKILL)
        drop_slot(server)


def test_a_daemon_killed_outright_leaves_a_receiver_that_the_next_daemon_replaces_without_a_gap(server, tmp_path):
    port = free_port()
    config_path = write_daemon_config(tmp_path / "schedules.yaml", server, f"file://{tmp_path}/store",
                                      port=port, state_dir=tmp_path / "state")
    config = load_config(config_path)
    storage = open_storage(config.storage["main"], "main")
    daemon = WalDaemon(config_path)
    try:
        daemon.wait_for("wal.receiver_started")
        assert run_job(config, "base").ok
        [base] = basebackups.list_base_backups(storage, "pg")
        daemon.kill()  # SIGKILL: no chance to stop its receiver, which keeps the slot busy
        [orphan] = receiver_pids()
        pgbench(server, "-T", "2", "-c", "2", "-n")
        switch_wal(server)
        daemon = WalDaemon(config_path)
        daemon.wait_for("wal.receiver_started")
        wait_for(lambda: receiver_pids() != [orphan] and len(receiver_pids()) == 1, 60, "the orphan replaced")
        pgbench(server, "-T", "2", "-c", "2", "-n")
        last = switch_wal(server)
        wait_for(lambda: complete(storage, last), 90, f"{last} archived by the new daemon")
        listing = archive.list_archive(storage, "pg")
        _, last_segno = parse_segment_name(last)
        gaps = archive.find_gaps(listing, base.manifest.start, (last_segno + 1) * listing.segment_size - 1, 1)
        assert gaps == [], [g.describe() for g in gaps]
        assert daemon.terminate() == 0
        assert receiver_pids() == []
    finally:
        daemon.kill()
        for pid in receiver_pids():
            os.kill(pid, signal.SIGKILL)
        drop_slot(server)
