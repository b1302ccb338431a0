"""Encryption at rest in a local storage directory, through a history a real one goes
through: unencrypted backups, then encryption switched on, then the key rotated.
Listing, restore and retention must work across all of it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.crypto import NoMatchingIdentity
from maintainer.crypto.keyring import Keyring
from maintainer.restore.stream import VerifiedObject
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.encryption import ROW_VALUE, encryption, make_key, planted_contrivance
from support.scenarios import databases, run_cli, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(docker_client, pg_image):
    with planted_contrivance(docker_client, pg_image) as server:
        yield server


def local_data(root: Path, tmp: Path, server, setting: dict | None, retention: dict | None = None) -> dict:
    job = {"type": "pg_backup", "schedule": "15 3 * * *", "databases": ["contrivance"], "storage": "local"}
    if retention:
        job["retention"] = retention
    return {"storage": {"local": {"url": f"file://{root}", **({"encryption": setting} if setting else {})}},
            "databases": {"contrivance": {"host": server.host, "port": server.port, "user": server.user,
                                          "password": server.password, "dbname": "contrivance", "sslmode": "disable"}},
            "daemon": {"state_dir": str(tmp / "state")},
            "jobs": {"backup": job}}


def backup(data: dict) -> str:
    config = Config.model_validate(data)
    result = run_job(config, "backup")
    assert result.ok, result.errors
    return result.details["backups"][0]["id"]


@pytest.fixture(scope="module")
def history(source, tmp_path_factory):
    """Backups PLAIN (no encryption), OLD (encrypted to the old key) and NEW (after
    the rotation: encrypted to the new key, both identities listed)."""
    tmp = tmp_path_factory.mktemp("encrypted-local")
    root = tmp / "backups"
    root.mkdir()
    key_old, rec_old = make_key(tmp, "old.key")
    key_new, rec_new = make_key(tmp, "new.key")
    plain = backup(local_data(root, tmp, source, None))
    old = backup(local_data(root, tmp, source, encryption([rec_old], [key_old])))
    rotated = local_data(root, tmp, source, encryption([rec_new], [key_old, key_new]))
    new = backup(rotated)
    config = Config.model_validate(rotated)
    return SimpleNamespace(tmp=tmp, root=root, source=source, rotated=rotated, config=config,
                           storage=open_storage(config.storage["local"], name="local"),
                           config_file=write_config(tmp, rotated), ids={"plain": plain, "old": old, "new": new},
                           key_old=key_old, key_new=key_new, rec_old=rec_old, rec_new=rec_new)


def test_listing_shows_plain_and_encrypted_backups_side_by_side(history):
    entries = {e.id: e.manifest for e in catalog.list_backups(history.storage, "contrivance")}

    assert set(entries) == set(history.ids.values())
    assert entries[history.ids["plain"]].recipients == []
    assert entries[history.ids["old"]].recipients == [history.rec_old]
    assert entries[history.ids["new"]].recipients == [history.rec_new]
    assert entries[history.ids["plain"]].object("dump").key.endswith("/dump.pgcustom.zst")
    assert entries[history.ids["new"]].object("dump").key.endswith("/dump.pgcustom.zst.age")
    listed = run_cli(history.config_file, "backups")
    assert listed.returncode == 0 and all(i in listed.stdout for i in history.ids.values()), listed.stderr


def test_no_row_data_is_in_any_file_of_an_encrypted_backup(history):
    for which in ("old", "new"):
        files = [p for p in (history.root / "pg" / "contrivance" / history.ids[which]).rglob("*") if p.is_file()]
        assert files and all(ROW_VALUE.encode() not in p.read_bytes() for p in files)


@pytest.mark.parametrize("which", ["plain", "old"])
def test_the_plain_backup_and_the_one_for_the_old_key_restore_after_the_rotation(history, which):
    out = run_cli(history.config_file, "restore", "--backup", history.ids[which], "--database", "contrivance")

    assert out.returncode == 0, out.stderr
    [new] = [d for d in databases(history.source) if d.startswith("contrivance_restored_")]
    with history.source.connect(new) as conn:
        assert conn.execute("SELECT note FROM public.planted").fetchall() == [(ROW_VALUE,)]
    with history.source.connect("postgres") as conn:
        conn.execute(f'DROP DATABASE "{new}"')


def test_without_the_old_identity_the_old_backup_names_its_recipient_and_the_others_still_read(history):
    data = local_data(history.root, history.tmp, history.source, encryption([history.rec_new], [history.key_new]))
    only_new = Keyring.of(Config.model_validate(data), "local")
    manifests = {e.id: e.manifest for e in catalog.list_backups(history.storage, "contrivance")}

    with pytest.raises(NoMatchingIdentity) as failure:
        VerifiedObject(history.storage, manifests[history.ids["old"]].object("dump"), keyring=only_new).read_all()
    assert "storage 'local'" in failure.value.message and history.rec_old in failure.value.message
    for which in ("plain", "new"):
        dump = manifests[history.ids[which]].object("dump")
        assert len(VerifiedObject(history.storage, dump, keyring=only_new).read_all()) == dump.raw_size


def test_retention_deletes_plain_and_encrypted_backups_alike(history):
    data = local_data(history.root, history.tmp, history.source, encryption([history.rec_new], [history.key_new]),
                      retention={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
    newest = backup(data)

    assert [e.id for e in catalog.list_backups(history.storage, "contrivance")] == [newest]
    assert sorted(p.name for p in (history.root / "pg" / "contrivance").iterdir()) == [newest]
