"""Stored snapshots on a local storage directory: every read checks the archive's
SHA-256, and snapshots stored by the first version still list and restore."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml
import zstandard

from maintainer.errors import StorageError
from maintainer.snapshot.manifest import SnapshotManifest
from maintainer.snapshot.restore import extract
from maintainer.snapshot.store import find_snapshot, list_snapshots, read_members
from maintainer.storage.local import LocalStorage
from maintainer.storage.objectset import ChecksumMismatch

pytestmark = pytest.mark.unit

# A manifest exactly as the first version stored it (only the paths changed).
FIRST_VERSION = """{
  "archive": {
    "key": "snapshots/snapshot/20261201T211922Z/snapshot.tar.zst",
    "sha256": "f128d0806c8ee1eceaf9ec177df39cc1bc1396fd9de513a7a622f6303b168fbe",
    "size": 608
  },
  "binary_unmasked": [],
  "compose_project": null,
  "containers": [],
  "content_hash": "sha256:50980d2c5f03d6ed3c1f6096c4ef09c88c41c1809f3951fdea142c7d2dafd870",
  "created": "2026-12-01T21:19:22.960959+00:00",
  "files": [
    {
      "member": "files/srv/compose.yaml",
      "path": "/srv/compose.yaml",
      "size": 90
    }
  ],
  "format": 1,
  "id": "20261201T211922Z",
  "job": "snapshot",
  "maintainer_version": "0.1.0",
  "masked_values": 1,
  "name": "snapshot",
  "secret_patterns": [
    "PASSWORD",
    "API_KEY"
  ],
  "skipped": [
    {
      "path": "/srv/tls.key",
      "reason": "excluded by *.key"
    }
  ]
}
"""


def test_a_first_version_manifest_reads_typed_and_is_written_back_byte_for_byte():
    manifest = SnapshotManifest.model_validate_json(FIRST_VERSION)
    assert manifest.archive.size == 608 and manifest.files[0].member == "files/srv/compose.yaml"
    assert manifest.created.isoformat() == "2026-12-01T21:19:22.960959+00:00"
    assert manifest.to_json() == FIRST_VERSION.encode()
    inner = json.loads(FIRST_VERSION)
    del inner["archive"]
    assert manifest.to_json(archive=False) == json.dumps(inner, indent=2, sort_keys=True).encode() + b"\n"


def test_fields_a_newer_version_adds_are_kept():
    newer = json.loads(FIRST_VERSION) | {"format": 2, "volumes": [{"name": "data"}]}
    assert json.loads(SnapshotManifest.model_validate(newer).to_json()) == newer


@pytest.fixture
def setup(tmp_path: Path):
    """A config with one files-only config_snapshot job, and its storage."""
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "compose.yaml").write_text("services:\n  api:\n    image: app:1\n")
    (srv / "app.toml").write_text("port = 8080\n" * 200)
    cfg = tmp_path / "schedules.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"local": {"url": f"file://{tmp_path / 'store'}"}},
                                   "jobs": {"snapshot": {"type": "config_snapshot", "schedule": "0 4 * * *",
                                                         "storage": "local", "paths": [str(srv)]}}}))
    return cfg, LocalStorage("local", str(tmp_path / "store"))


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    from maintainer.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_restoring_a_snapshot_whose_archive_was_altered_fails_naming_it_and_extracts_nothing(setup, tmp_path, capsys):
    cfg, storage = setup
    assert cli(["--config", str(cfg), "run", "snapshot"], capsys)[0] == 0
    entry = find_snapshot(storage, "snapshot")
    flip_a_byte(storage.root / entry.archive.key)

    code, out, err = cli(["--config", str(cfg), "snapshot", "restore", "--latest", "--to", str(tmp_path / "out")],
                         capsys)

    assert code == 1
    assert err.splitlines() == [err.strip()]  # one line, no traceback
    assert err.startswith(f"Error: snapshot snapshot/{entry.id}: SHA-256 mismatch: the stored object has ")
    assert "altered or damaged in storage" in err
    assert not (tmp_path / "out").exists()
    assert [e.id for e in list_snapshots(storage, "snapshot")] == [entry.id]  # still listed: reads check, lists do not


@pytest.mark.parametrize("alter", [
    lambda data: data[:-7],  # cut short
    lambda data: data + b"more",  # appended to
    lambda data: data[:40] + bytes([data[40] ^ 0x80]) + data[41:],  # early in the stream
], ids=["truncated", "appended", "flipped-early"])
def test_every_read_of_an_altered_archive_raises_checksum_mismatch(setup, capsys, alter):
    cfg, storage = setup
    assert cli(["--config", str(cfg), "run", "snapshot"], capsys)[0] == 0
    entry = find_snapshot(storage, "snapshot")
    path = storage.root / entry.archive.key
    path.write_bytes(alter(path.read_bytes()))

    with pytest.raises(ChecksumMismatch, match=f"^snapshot snapshot/{entry.id}: SHA-256 mismatch"):
        list(read_members(storage, entry))


def store_first_version(storage: LocalStorage, snapshot_id: str, members: dict[str, bytes],
                        archive: bytes | None = None) -> None:
    """Store a snapshot the way the first version did, by hand; ``archive`` replaces its archive's bytes."""
    manifest = json.loads(FIRST_VERSION)
    manifest.update(id=snapshot_id, files=[{"member": n, "path": "/" + n[6:], "size": len(d)}
                                           for n, d in members.items()])
    del manifest["archive"]
    if archive is None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, data in [*sorted(members.items()),
                               ("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")]:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
        archive = zstandard.ZstdCompressor(level=10).compress(raw.getvalue())
    key = f"snapshots/snapshot/{snapshot_id}/snapshot.tar.zst"
    storage.put(key, archive)
    stored = {**manifest, "archive": {"key": key, "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}}
    storage.put(f"snapshots/snapshot/{snapshot_id}/manifest.json",
                json.dumps(stored, indent=2, sort_keys=True).encode() + b"\n")


def test_a_snapshot_stored_by_the_first_version_lists_and_extracts(tmp_path):
    storage = LocalStorage("local", str(tmp_path / "store"))
    store_first_version(storage, "20261201T211922Z", {"files/srv/compose.yaml": b"services: {}\n"})

    [entry] = list_snapshots(storage, "snapshot")
    members = extract(read_members(storage, entry), tmp_path / "out")

    assert entry.id == "20261201T211922Z" and entry.manifest.secret_patterns == ["PASSWORD", "API_KEY"]
    assert sorted(members) == ["files/srv/compose.yaml", "manifest.json"]
    assert (tmp_path / "out" / "files" / "srv" / "compose.yaml").read_bytes() == b"services: {}\n"


def test_an_archive_stored_damaged_says_so_rather_than_blaming_storage(tmp_path):
    storage = LocalStorage("local", str(tmp_path / "store"))
    store_first_version(storage, "20261201T211922Z", {}, archive=b"not zstd at all")
    [entry] = list_snapshots(storage, "snapshot")

    with pytest.raises(StorageError, match="snapshot snapshot/20261201T211922Z is damaged .*SHA-256 matches") as raised:
        list(read_members(storage, entry))
    assert not isinstance(raised.value, ChecksumMismatch)


def test_a_snapshot_whose_manifest_is_unreadable_or_lacks_its_archive_is_not_listed(tmp_path):
    storage = LocalStorage("local", str(tmp_path / "store"))
    store_first_version(storage, "20261201T211922Z", {"files/a": b"a"})
    storage.put("snapshots/snapshot/20261202T000000Z/manifest.json", b"{not json")
    without_archive = json.loads(FIRST_VERSION)
    del without_archive["archive"]
    storage.put("snapshots/snapshot/20261203T000000Z/manifest.json", json.dumps(without_archive).encode())

    assert [e.id for e in list_snapshots(storage, "snapshot")] == ["20261201T211922Z"]
