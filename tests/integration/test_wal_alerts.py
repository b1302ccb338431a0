"""The daemon's WAL receiver as operators see it: alerts for a slot over its bound and
for a receiver that died (delivered to a real webhook receiver, with no secret in
them), /metrics with the receiver's figures, and a reload that removes the job
dropping its replication slot."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest
import yaml

from maintainer.config import load_config

from support.http_receiver import Receiver
from support.pgdata import psql, wait_for
from support.postgres import remove_postgres
from support.s3 import free_port
from support.wal_daemon import WalDaemon, receiver_pids, start_fixed_port_server, write_daemon_config
from support.wal_server import drop_slot, pgbench, switch_wal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(docker_client, pg_image):
    server = start_fixed_port_server(docker_client, pg_image)
    pgbench(server, "-i", "-s", "1", "-q")
    yield server
    remove_postgres(server)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("maintainer_wal_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def alerts(receiver: Receiver) -> list[dict]:
    return [json.loads(d.body) for d in receiver.deliveries if d.body.startswith(b"{")]


def slots(server) -> list[str]:
    return psql(server, "SELECT slot_name FROM pg_replication_slots").split()


def test_alerts_metrics_and_a_reload_that_removes_the_job_drops_its_slot(server, tmp_path):
    port = free_port()
    with Receiver() as hook:
        notify = {"targets": [{"type": "webhook", "url": f"http://{hook.address}/hook"}], "retries": 1,
                  "timeout": "5s"}
        config_path = write_daemon_config(tmp_path / "schedules.yaml", server, f"file://{tmp_path}/store",
                                          port=port, state_dir=tmp_path / "state", notify=notify,
                                          wal={"slot_alert_bytes": 1})
        daemon = WalDaemon(config_path)
        try:
            daemon.wait_for("wal.receiver_started")
            pgbench(server, "-T", "2", "-c", "2", "-n")
            switch_wal(server)
            wait_for(lambda: any(a["alert"] == "wal.slot_retained" for a in alerts(hook)), 60, "the slot alert")
            [slot_alert] = [a for a in alerts(hook) if a["alert"] == "wal.slot_retained"]
            assert "maint_test" in slot_alert["message"] and slot_alert["database"] == "pg"

            [pid] = receiver_pids()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: any(a["alert"] == "wal.receiver_down" for a in alerts(hook)), 60, "the down alert")
            daemon.wait_for("wal.receiver_started", 2)
            switch_wal(server)
            wait_for(lambda: metrics(port).get('maintainer_wal_receiver_up{job="wal",server="pg"}') == 1.0, 30,
                     "the receiver up again in /metrics")
            wait_for(lambda: 'maintainer_wal_last_segment_timestamp_seconds{database="pg"}' in metrics(port), 30,
                     "a segment time in /metrics")
            figures = metrics(port)
            assert figures['maintainer_wal_receiver_restarts_total{job="wal",server="pg"}'] >= 1
            assert figures['maintainer_wal_slot_retained_bytes{job="wal",server="pg",slot="maint_test"}'] >= 0
            assert 'maintainer_wal_lag_seconds{database="pg"}' in figures
            assert 'maintainer_wal_lag_bytes{job="wal",server="pg"}' in figures
            assert 'maintainer_wal_gap_segments{database="pg"}' in figures
            bodies = b"".join(d.body for d in hook.deliveries)
            assert server.password.encode() not in bodies

            # the job is removed from the config: a reload stops it and drops its slot
            doc = yaml.safe_load(config_path.read_text())
            del doc["jobs"]["wal"]
            config_path.write_text(yaml.safe_dump(doc))
            load_config(config_path)
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_for("wal.slot_dropped", timeout=60)
            assert "maint_test" not in slots(server)
            assert receiver_pids() == []
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
            for pid in receiver_pids():
                os.kill(pid, signal.SIGKILL)
            drop_slot(server)
