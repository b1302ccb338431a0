"""config_snapshot of files only (no engine) on a local storage directory: dedupe,
retention, exclusions, /run/secrets, extraction and the diff summary."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from maintainer.config.models import Config
from maintainer.jobs.base import new_run_id
from maintainer.runner import run_job
from maintainer.snapshot.restore import diff_against_current, extract
from maintainer.snapshot.store import find_snapshot, list_snapshots, read_members
from maintainer.storage import open_storage

pytestmark = pytest.mark.unit


def make_config(tmp_path: Path, srv: Path, **job) -> Config:
    spec = {"type": "config_snapshot", "schedule": "0 4 * * *", "storage": "local", "paths": [str(srv)],
            "exclude": ["*.key"], **job}
    return Config.model_validate({"storage": {"local": {"url": f"file://{tmp_path / 'store'}"}},
                                  "jobs": {"snapshot": spec}})


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    srv = tmp_path / "srv"
    (srv / "config").mkdir(parents=True)
    (srv / "compose.yaml").write_text("services:\n  api:\n    image: app:1\n")
    (srv / "config" / "app.toml").write_text("port = 8080\n")
    (srv / "config" / "tls.key").write_text("PRIVATE MATERIAL\n")
    os.symlink("/run/secrets/maintainer-test-never-read", srv / "config" / "db_password")
    return srv


def storage(config: Config):
    return open_storage(config.storage["local"], name="local")


def test_an_unchanged_setup_is_stored_once_and_a_change_makes_a_new_snapshot(tmp_path, srv):
    config = make_config(tmp_path, srv)
    first = run_job(config, "snapshot")
    assert first.ok, first.errors
    assert first.figures["stored"] == 1 and first.figures["files"] == 2
    skipped = {s["path"]: s["reason"] for s in first.details["skipped"]}
    assert skipped[str(srv / "config" / "tls.key")] == "excluded by *.key"
    assert skipped[str(srv / "config" / "db_password")] == "secret files are never read"

    again = run_job(config, "snapshot")
    assert again.ok and again.figures["stored"] == 0
    assert again.summary[-1].startswith(f"unchanged since snapshot {first.details['snapshot_id']}")
    assert len(list_snapshots(storage(config), "snapshot")) == 1

    time.sleep(1.1)  # snapshot ids are per second
    (srv / "config" / "app.toml").write_text("port = 9090\n")
    changed = run_job(config, "snapshot")
    assert changed.figures["stored"] == 1
    assert [e.id for e in list_snapshots(storage(config), "snapshot")] == \
        [first.details["snapshot_id"], changed.details["snapshot_id"]]


def test_retention_deletes_old_snapshots_like_backups(tmp_path, srv):
    config = make_config(tmp_path, srv, retention={"keep_last": 2, "keep_daily": 0, "keep_weekly": 0,
                                                   "keep_monthly": 0})
    ids = []
    for n in range(3):
        (srv / "compose.yaml").write_text(f"services: {{}}\n# {n}\n")
        result = run_job(config, "snapshot")
        assert result.ok, result.errors
        ids.append(result.details["snapshot_id"])
        time.sleep(1.1)
    assert [e.id for e in list_snapshots(storage(config), "snapshot")] == ids[1:]
    assert f"deleted snapshot {ids[0]} (retention)" in result.summary


def test_a_missing_configured_path_fails_the_run_with_its_name(tmp_path, srv):
    config = make_config(tmp_path, srv, paths=[str(srv), str(tmp_path / "nope.yaml")])
    result = run_job(config, "snapshot")
    assert not result.ok
    assert result.errors == [f"configured path {tmp_path / 'nope.yaml'} does not exist"]


def test_a_dry_run_stores_nothing(tmp_path, srv):
    config = make_config(tmp_path, srv)
    result = run_job(config, "snapshot", dry_run=True, run_id=new_run_id())
    assert result.ok and result.summary[-1].startswith("dry run: would store")
    assert list_snapshots(storage(config), "snapshot") == []


def test_extracting_a_snapshot_and_comparing_it_with_the_files_now(tmp_path, srv):
    config = make_config(tmp_path, srv)
    assert run_job(config, "snapshot").ok
    entry = find_snapshot(storage(config), "snapshot")
    (srv / "config" / "app.toml").write_text("port = 1\n")
    out = tmp_path / "out"
    members = extract(read_members(storage(config), entry), out)
    assert (out / "files" / str(srv / "compose.yaml").lstrip("/")).read_text().startswith("services:")
    assert (out / "manifest.json").exists()
    diff = diff_against_current(members, entry.manifest)
    assert diff.files_same == 1 and diff.files_changed == [str(srv / "config" / "app.toml")]
    assert diff.lines()[0] == "files: 1 unchanged, 1 changed, 0 missing now"
    with pytest.raises(Exception, match="not an empty directory"):
        extract(read_members(storage(config), entry), out)


def _cli(args, capsys):
    from maintainer.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _write_config(tmp_path: Path, srv: Path) -> Path:
    import yaml

    cfg = tmp_path / "schedules.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"local": {"url": f"file://{tmp_path / 'store'}"}},
                                   "jobs": {"snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *",
                                                         "storage": "local", "paths": [str(srv)]}}}))
    return cfg


def test_restore_needs_exactly_one_of_latest_or_id(tmp_path, srv, capsys):
    cfg = _write_config(tmp_path, srv)
    code, _, err = _cli(["--config", str(cfg), "snapshot", "restore", "--to", str(tmp_path / "o")], capsys)
    assert code == 2 and err.strip() == "Error: give exactly one of --latest or --id ID"


def test_restore_without_snapshots_and_of_an_unknown_id_are_clear_errors(tmp_path, srv, capsys):
    cfg = _write_config(tmp_path, srv)
    code, _, err = _cli(["--config", str(cfg), "snapshot", "restore", "--latest", "--to", str(tmp_path / "o")], capsys)
    assert code == 1 and err.startswith("Error: no snapshots of snapshot in storage local")
    assert _cli(["--config", str(cfg), "run", "snapshot"], capsys)[0] == 0
    code, _, err = _cli(["--config", str(cfg), "snapshot", "restore", "--id", "20000101T000000Z",
                         "--to", str(tmp_path / "o")], capsys)
    assert code == 1 and err.splitlines()[0] == "Error: no snapshot 20000101T000000Z of snapshot in storage local"
    assert "Traceback" not in err


def test_snapshots_lists_what_is_stored(tmp_path, srv, capsys):
    cfg = _write_config(tmp_path, srv)
    assert _cli(["--config", str(cfg), "snapshots"], capsys)[1].strip() == "no snapshots yet"
    assert _cli(["--config", str(cfg), "run", "snapshot"], capsys)[0] == 0
    code, out, _ = _cli(["--config", str(cfg), "snapshots"], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["JOB", "NAME", "ID", "SIZE", "FILES", "CONTAINERS"]
    assert out.splitlines()[1].split()[:2] == ["snapshot", "snapshot"]


def test_a_snapshot_run_removes_what_a_failed_run_left_but_not_a_fresh_one(tmp_path, srv):
    config = make_config(tmp_path, srv)
    root = tmp_path / "store" / "snapshots" / "snapshot"
    stale = root / "20260101T000000Z" / "snapshot.tar.zst"
    fresh = root / "20260102T000000Z" / "snapshot.tar.zst"
    for path in (stale, fresh):  # archives whose manifest was never written
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half a snapshot")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    result = run_job(config, "snapshot")

    assert result.ok, result.errors
    assert not stale.parent.exists()  # the file and its directory
    assert fresh.exists()  # maybe a run that is writing its manifest right now
    assert len(list_snapshots(storage(config), "snapshot")) == 1


def test_an_archive_whose_manifest_cannot_be_written_is_removed_at_once(tmp_path):
    from maintainer.errors import StorageError
    from maintainer.snapshot.manifest import SnapshotManifest
    from maintainer.snapshot.store import write_snapshot

    real = open_storage(Config.model_validate({"storage": {"local": {"url": f"file://{tmp_path / 'store'}"}},
                                               "jobs": {}}).storage["local"], name="local")

    class ManifestFails:
        def __getattr__(self, name):
            return getattr(real, name)

        def put(self, key, data):
            raise StorageError(f"put {key}: disk full")

    with pytest.raises(StorageError):
        write_snapshot(ManifestFails(), "snapshot", "20260101T000000Z", {"files/a": b"x"},
                       SnapshotManifest(id="20260101T000000Z", name="snapshot", job="snapshot", content_hash="sha256:0",
                                        created=datetime(2026, 1, 1, tzinfo=timezone.utc), maintainer_version="test"))

    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
