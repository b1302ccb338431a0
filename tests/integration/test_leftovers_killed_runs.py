"""Runs of the installed ``maintainer`` killed with SIGKILL mid-dump leave nothing
behind after the next run, on local storage and on S3; and a run's clean-up never
touches a backup that another run is writing right now.

"Nothing behind" is counted on the storage itself: every file and directory
(hidden ones included) and every S3 object and unfinished multipart upload that
is not part of a complete, listed backup is a leftover.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maintainer.backup import catalog, layout
from maintainer.config.models import StorageSpec
from maintainer.backup.retention import RetentionPlan
from maintainer.backup.catalog import apply_retention, remove_leftovers
from maintainer.storage import open_storage
from maintainer.storage.base import ABANDONED_AFTER

from support.pgdata import db_entry, fill_random, pg_dump_pids, s3_storage, wait_for

pytestmark = pytest.mark.integration

MAINTAINER = Path(sys.executable).with_name("maintainer")  # the installed command
KILLS = 3
SLOW = {"compression_level": 12}  # zstd 12 on random hex: a dump streams for seconds


class Target:
    """One storage of the test: its config entry, and what is on it for real."""

    def __init__(self, kind: str, tmp_path: Path, request):
        self.kind = kind
        if kind == "local":
            self.root = tmp_path / "store"
            self.url, self.extra = f"file://{self.root}", {}
        else:
            server = request.getfixturevalue("s3_server")
            self.bucket = request.getfixturevalue("s3_bucket")
            self.client = server.client()
            self.url, self.extra = s3_storage(server, self.bucket)
            self.prefix = "backups/"

    def storage(self):
        return open_storage(StorageSpec(url=self.url, **self.extra), "main")

    def unfinished(self) -> set[str]:
        """What shows a dump under way: partial files with data, or multipart uploads."""
        if self.kind == "local":
            return {str(p) for p in self.root.rglob("*") if ".partial-" in p.name and p.stat().st_size > 0}
        return {u["UploadId"] for u in self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])}

    def leftovers(self) -> list[str]:
        """Everything on the storage that is not part of a complete, listed backup."""
        keep: set[str] = set()
        for entry in catalog.list_backups(self.storage()):
            for key in [o.key for o in entry.manifest.objects] + [layout.manifest_key(entry.database, entry.id)]:
                keep.add(key)
                keep.update(key.rsplit("/", n)[0] for n in range(1, key.count("/") + 1))  # its directories
        if self.kind == "local":
            found = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*")] if self.root.exists() else []
            return sorted(f + ("/" if (self.root / f).is_dir() else "") for f in found if f not in keep)
        objects = [o["Key"] for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                   for o in page.get("Contents", [])]
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted([k for k in objects if k.removeprefix(self.prefix) not in keep]
                      + [f"unfinished upload of {u['Key']}" for u in uploads])


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path) -> Target:
    return Target(request.param, tmp_path, request)


def write_config(tmp_path: Path, target: Target, postgres, **job) -> Path:
    doc = {"storage": {"main": {"url": target.url, **target.extra}},
           "databases": {"noise": db_entry(postgres, "noise")},
           "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["noise"],
                               "storage": "main", **job}}}
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps(doc))
    return path


def start_run(config: Path) -> subprocess.Popen:
    """``maintainer run backup`` in the background; its output goes to run.log beside the config."""
    with open(config.with_name("run.log"), "a") as log:
        return subprocess.Popen([str(MAINTAINER), "-c", str(config), "run", "backup"], stdout=log, stderr=log)


def test_runs_killed_mid_dump_leave_nothing_behind_after_the_next_run(target, postgres, tmp_path):
    fill_random(postgres, "noise", 12)
    config = write_config(tmp_path, target, postgres, **SLOW)
    seen: set[str] = set()
    for _ in range(KILLS):
        run = start_run(config)
        try:
            # A dump under way that no earlier run started (those leave theirs behind).
            seen |= wait_for(lambda: target.unfinished() - seen, timeout=90, what="this run's dump to stream")
        finally:
            run.kill()
            run.wait(timeout=30)
        wait_for(lambda: not pg_dump_pids(postgres.port), timeout=30, what="pg_dump to end with its reader")
    assert catalog.list_backups(target.storage()) == []  # never listed as good
    assert target.leftovers(), "the killed runs left something to clean up"

    config = write_config(tmp_path, target, postgres)  # the next run, at the default (fast) level
    done = subprocess.run([str(MAINTAINER), "-c", str(config), "run", "backup"],
                          capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr
    assert len(catalog.list_backups(target.storage())) == 1
    assert target.leftovers() == []


def test_a_runs_clean_up_never_touches_a_backup_another_run_is_writing(target, postgres, tmp_path):
    fill_random(postgres, "noise", 12)
    writing = start_run(write_config(tmp_path, target, postgres, **SLOW))
    try:
        wait_for(target.unfinished, timeout=90, what="the dump to stream")

        # What another run (another process, this one) does first for the same database.
        removed = remove_leftovers(target.storage(), "noise")

        assert removed == []
        assert writing.wait(timeout=180) == 0, (tmp_path / "run.log").read_text()
    finally:
        if writing.poll() is None:
            writing.kill()
            writing.wait(timeout=30)
    (entry,) = catalog.list_backups(target.storage())
    dump = next(o for o in entry.manifest.objects if o.name == "dump")
    assert target.storage().stat(dump.key).size == dump.stored_size
    assert target.leftovers() == []


def test_a_backup_without_manifest_is_removed_only_once_no_run_can_still_be_writing_it(tmp_path):
    """From its dump's commit until its manifest, a live run's backup has no manifest either."""
    root = tmp_path / "store"
    storage = open_storage(StorageSpec(url=f"file://{root}"), "main")
    fresh = layout.object_key("app", "20260101T000000Z", layout.DUMP)
    other_database = layout.object_key("app2", "20250101T000000Z", layout.DUMP)
    storage.put(fresh, b"dump of a run that may still be writing its manifest")
    storage.put(other_database, b"not app's")
    old = (storage.path_of(other_database).stat().st_mtime - ABANDONED_AFTER.total_seconds() - 60)
    os.utime(storage.path_of(other_database), (old, old))

    assert remove_leftovers(storage, "app") == []

    os.utime(storage.path_of(fresh), (old, old))
    assert remove_leftovers(storage, "app") == [fresh]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "pg", "pg/app2", "pg/app2/20250101T000000Z", f"pg/app2/20250101T000000Z/{layout.DUMP}"]
    assert remove_leftovers(storage, "app2") == [other_database]
    assert list(root.iterdir()) == []


def test_retention_leaves_no_empty_directories(tmp_path):
    root = tmp_path / "store"
    storage = open_storage(StorageSpec(url=f"file://{root}"), "main")
    for name in (layout.DUMP, layout.GLOBALS, layout.MANIFEST, f"{layout.VERIFICATIONS}/run1.json"):
        storage.put(layout.object_key("app", "20260101T000000Z", name), b"x")
    storage.put(layout.object_key("app", "20260102T000000Z", layout.MANIFEST), b"x")

    apply_retention(storage, "app", RetentionPlan(keep={"20260102T000000Z": ["last"]}, delete=["20260101T000000Z"]))

    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "pg", "pg/app", "pg/app/20260102T000000Z", f"pg/app/20260102T000000Z/{layout.MANIFEST}"]
