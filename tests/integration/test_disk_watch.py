"""Disk watch on a real small tmpfs and the real engine: filling the watched filesystem
triggers exactly one prune run (recorded as triggered by low space) and one alert;
/health's condition names the filesystem; /metrics reads engine and filesystems."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from maintainer import disk
from maintainer.config.loader import parse_config
from maintainer.history import History
from maintainer.runner import run_job
from support.http_receiver import Receiver

pytestmark = pytest.mark.integration

SIZE_MB = 4


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs mounted for this test."""
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def config_for(fs, receiver, tmp_path, threshold: str = "50%"):
    doc = {
        "storage": {"local": {"url": f"file://{tmp_path}/store"}},
        "notify": {"targets": [{"type": "webhook", "url": f"http://{receiver.address}/hook"}], "retries": 0},
        "jobs": {"prune": {"type": "docker_prune", "schedule": "0 5 * * 0", "when_free_below": threshold,
                           "watch_path": str(fs), "label_filter": [f"maintainer.test.run={uuid.uuid4().hex}"]}},
    }
    (tmp_path / "store").mkdir(exist_ok=True)
    return parse_config(json.dumps(doc), "test-disk.yaml")


def fill(fs, megabytes: int, name: str = "ballast") -> None:
    with open(fs / name, "wb") as f:
        f.write(os.urandom(megabytes * 1024 * 1024))


def alerts(receiver) -> list[dict]:
    bodies = [json.loads(d.body) for d in receiver.deliveries]
    return [b for b in bodies if "alert" in b]


def test_filling_the_watched_filesystem_runs_the_prune_once_per_episode_and_alerts_once(small_fs, receiver, tmp_path):
    config = config_for(small_fs, receiver, tmp_path)
    runs = []

    def run(job, trigger):
        runs.append(run_job(config, job, trigger=trigger))

    watcher = disk.LowSpaceWatcher(lambda: config, run, interval=3600)
    assert disk.low_space_conditions(config) == []
    assert watcher.check() == []

    fill(small_fs, 3)
    [(job, message)] = disk.low_space_conditions(config)
    assert job == "prune"
    assert message.startswith(f"filesystem {small_fs} has ") and "below 50% (docker_prune prune.when_free_below)" in message

    assert watcher.check() == ["prune"]
    assert watcher.check() == []  # still low: same episode, no second run
    assert len(runs) == 1 and runs[0].ok, runs[0].errors
    assert runs[0].figures["watched_free_percent"] < 50
    assert f"filesystem {small_fs}: " in runs[0].summary[-1] and "(still below it)" in runs[0].summary[-1]
    last = History.open(config.daemon.state_dir).last_run("prune")
    assert (last.run_id, last.trigger, last.status) == (runs[0].run_id, "low_space", "ok")
    [alert] = alerts(receiver)
    assert alert["alert"] == "disk.low_space" and alert["filesystem"] == str(small_fs)
    assert alert["job"] == "prune" and alert["threshold_percent"] == 50

    (small_fs / "ballast").unlink()
    assert watcher.check() == []  # recovered: the episode ends
    fill(small_fs, 3)
    assert watcher.check() == ["prune"]  # a new episode
    assert len(runs) == 2 and len(alerts(receiver)) == 2


def test_the_watcher_never_starts_the_prune_while_it_is_running(small_fs, receiver, tmp_path):
    config = config_for(small_fs, receiver, tmp_path)
    running = {"prune"}
    ran = []
    watcher = disk.LowSpaceWatcher(lambda: config, lambda job, trigger: ran.append((job, trigger)),
                                   running=lambda: running)
    fill(small_fs, 3)
    assert watcher.check() == [] and ran == []
    running.clear()
    assert watcher.check() == ["prune"] and ran == [("prune", "low_space")]


def test_the_watchers_thread_checks_on_its_interval_and_stops(small_fs, receiver, tmp_path):
    config = config_for(small_fs, receiver, tmp_path)
    ran = []
    watcher = disk.LowSpaceWatcher(lambda: config, lambda job, trigger: ran.append(job), interval=0.1)
    watcher.start()
    try:
        fill(small_fs, 3)
        deadline = time.monotonic() + 10
        while not ran:
            assert time.monotonic() < deadline, "the watcher never ran the prune"
            time.sleep(0.05)
        time.sleep(0.5)  # five more rounds in the same episode
    finally:
        watcher.stop(timeout=5)
    assert ran == ["prune"]


def test_an_unreadable_watch_path_is_a_failing_condition_that_names_it(tmp_path, receiver):
    missing = tmp_path / "not-mounted"
    config = config_for(missing, receiver, tmp_path)
    [(job, message)] = disk.low_space_conditions(config)
    assert job == "prune"
    assert message.startswith(f"docker_prune prune: cannot read the free space of {missing}")
    assert "set watch_path" in message


def test_metrics_give_engine_usage_by_kind_and_free_space_of_root_watch_and_storage(small_fs, receiver, tmp_path):
    config = config_for(small_fs, receiver, tmp_path)
    fill(small_fs, 1)
    families = {m.name: m for m in disk.collect_metrics(config)}
    kinds = {s.labels["kind"]: s.value for s in families["maintainer_docker_disk_bytes"].samples}
    assert set(kinds) == {"images", "containers", "volumes", "build_cache"}
    assert kinds["images"] > 0  # the test bed's images
    reclaimable = {s.labels["kind"]: s.value for s in families["maintainer_docker_disk_reclaimable_bytes"].samples}
    assert all(0 <= reclaimable[k] <= kinds[k] for k in kinds)
    avail = {s.labels["role"]: s for s in families["maintainer_filesystem_available_bytes"].samples}
    assert set(avail) == {"docker_root", "watch:prune", "storage:local"}
    assert avail["docker_root"].labels["path"] == disk.docker_root()
    watch = avail["watch:prune"]
    assert watch.labels["mount"] == str(small_fs)
    assert SIZE_MB * 1024 * 1024 - watch.value >= 1024 * 1024
    size = {s.labels["role"]: s.value for s in families["maintainer_filesystem_size_bytes"].samples}
    assert size["watch:prune"] == SIZE_MB * 1024 * 1024
