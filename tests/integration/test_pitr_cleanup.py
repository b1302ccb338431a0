"""A point-in-time restore stopped by SIGTERM, and a PITR drill that runs out of time, leave
no recovery container, no volume and no new database behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from maintainer.config import parse_config
from maintainer.runner import run_job

from support.pgdata import REPO
from support.pitr import archived_scenario, pitr_leftovers
from support.postgres import remove_postgres
from support.scenarios import databases

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenario(docker_client, pg_image, tmp_path_factory):
    s = archived_scenario(docker_client, pg_image, tmp_path_factory.mktemp("pitr-cleanup"))
    yield s
    remove_postgres(s.server)


def test_sigterm_during_a_restore_removes_the_container_and_volume(scenario, docker_client):
    before = databases(scenario.server)
    proc = subprocess.Popen([sys.executable, "-m", "maintainer", "--config", str(scenario.config_file), "restore",
                             "--to-end"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not pitr_leftovers(docker_client):
            time.sleep(0.05)
        assert pitr_leftovers(docker_client), "the recovery container never appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the test failed before its SIGTERM: still let the run clean up
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err
    assert "stopped" in err
    assert pitr_leftovers(docker_client) == [] and databases(scenario.server) == before


def test_a_drill_that_times_out_fails_and_leaves_nothing(scenario, docker_client, tmp_path):
    data = json.loads(json.dumps(scenario.data))
    data["jobs"]["drill"]["timeout"] = "2s"
    config = parse_config(json.dumps(data), str(tmp_path / "test-config.yaml"))

    result = run_job(config, "drill")

    assert not result.ok
    assert "timed out" in " ".join(result.errors)
    assert pitr_leftovers(docker_client) == []


def test_the_sweep_removes_scratch_volumes_of_dead_runs_only(docker_client):
    from maintainer.restore.container import HOST_LABEL, PID_LABEL
    from maintainer.restore.pitr_server import SCRATCH_LABEL, owner_labels, sweep_volumes

    from support.docker_resources import docker_labels, unique_name

    dead = subprocess.Popen(["true"])
    dead.wait()
    live_labels = {**docker_labels(), SCRATCH_LABEL: "1", **owner_labels("test-live", None)}
    dead_labels = {**live_labels, PID_LABEL: str(dead.pid)}
    live = docker_client.volumes.create(name=unique_name("maintainer-pitr-live"), labels=live_labels)
    gone = docker_client.volumes.create(name=unique_name("maintainer-pitr-dead"), labels=dead_labels)
    try:
        removed = sweep_volumes(docker_client)
        assert gone.name in removed and live.name not in removed
        assert live_labels[HOST_LABEL]
        docker_client.volumes.get(live.name)
    finally:
        for volume in (live, gone):
            try:
                volume.remove(force=True)
            except Exception:  # noqa: BLE001 - already removed by the sweep
                pass
