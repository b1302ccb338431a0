"""The daemon's disk watch as a real process: a tmpfs filled below when_free_below makes
/health fail naming it, one prune run recorded as triggered by low space, and /metrics
shows the engine's usage and the filesystem's free space."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from maintainer.history import History
from support.s3 import free_port

from integration.test_daemon import DaemonProcess, get

pytestmark = pytest.mark.integration


def test_the_daemon_prunes_once_when_the_watched_filesystem_runs_low(tmp_path, monkeypatch):
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(fs)], check=True)
    port = free_port()
    config = tmp_path / "schedules.yaml"
    config.write_text(json.dumps({
        "daemon": {"state_dir": str(tmp_path / "state"), "listen": f"127.0.0.1:{port}", "shutdown_grace": "5s"},
        "jobs": {"prune": {"type": "docker_prune", "schedule": "0 5 * * 0", "when_free_below": "50%",
                           "watch_path": str(fs), "label_filter": [f"maintainer.test.run={uuid.uuid4().hex}"]}}}))
    monkeypatch.setenv("MAINTAINER_DISK_WATCH_SECONDS", "0.5")
    daemon = DaemonProcess(config, tmp_path)
    try:
        daemon.wait_for("daemon.started")
        with open(fs / "ballast", "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024))
        daemon.wait_for("job.finished", timeout=60)
        time.sleep(2)  # four more rounds of the same episode
        runs = History(tmp_path / "state").runs("prune")
        assert [(r.trigger, r.status) for r in runs] == [("low_space", "ok")]
        status, body = get(f"http://127.0.0.1:{port}/health")
        assert status == 503
        failing = json.loads(body)["failing"]
        assert any(c["check"] == "disk_space" and f"filesystem {fs} has " in c["message"] for c in failing)
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        text = metrics.decode()
        assert 'maintainer_docker_disk_bytes{kind="images"}' in text
        assert f'maintainer_filesystem_size_bytes{{mount="{fs}",path="{fs}",role="watch:prune"}} 4.194304e+06' in text
    finally:
        daemon.stop()
        subprocess.run(["umount", "-l", str(fs)], check=True)
