"""Pure parts of restoring: planning, globals, comparisons, drill ownership, the verified reader."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone

import pytest
import zstandard

from maintainer.backup.catalog import BackupEntry
from maintainer.backup.manifest import Manifest, StoredObject, TableCount, Verification
from maintainer.backup.pipeline import store_stream
from maintainer.errors import StorageError, UsageError
from maintainer.backup.dump import MemoryWriter
from maintainer.restore import container
from maintainer.restore.globals import database_statements, plan_globals, role_of, split_statements
from maintainer.restore.plan import Target, plan_restore, restored_name
from maintainer.restore.stream import ChecksumMismatch, VerifiedObject
from maintainer.restore.verify import compare_object_counts, compare_row_counts
from maintainer.storage.local import LocalStorage

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

GLOBALS = '''--
-- PostgreSQL database cluster dump
--

\\restrict abc123
SET default_transaction_read_only = off;

CREATE ROLE contrivance_app;
ALTER ROLE contrivance_app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "Odd ""Name""";
COMMENT ON ROLE contrivance_app IS 'line one;
line two';
GRANT contrivance_readonly TO contrivance_app GRANTED BY postgres;
\\unrestrict abc123
'''


def manifest(**overrides) -> Manifest:
    data = dict(id="20261126T030000Z", database="shop", dbname="shop", server_version="15.8",
                server_version_num=150008, server_major=15, pg_dump_version="15.8", client="local",
                started=NOW, finished=NOW, duration=1.0, compression={"algorithm": "zstd"},
                maintainer_version="0", objects=[], row_counts={"app.t": TableCount(rows=3)},
                object_counts={"tables": 1}, total_rows=3, raw_size=1, stored_size=1)
    data.update(overrides)
    return Manifest(**data)


def test_globals_are_split_into_statements_without_meta_commands():
    statements = split_statements(GLOBALS)
    assert statements[0] == "SET default_transaction_read_only = off;"
    assert "COMMENT ON ROLE contrivance_app IS 'line one;\nline two';" in statements
    assert not any(s.startswith("\\") or s.startswith("--") for s in statements)


def test_a_quote_inside_a_quoted_name_or_a_dollar_body_does_not_glue_statements():
    sql = ("\\restrict abc\n"
           "CREATE ROLE \"o'reilly\";\n"
           "ALTER ROLE \"o'reilly\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:a$b';\n"
           "GRANT shop_readonly TO \"o'reilly\" GRANTED BY postgres;\n"
           "COMMENT ON ROLE x IS 'it''s -- not a comment;\nstill the comment';\n"
           "ALTER DATABASE \"Shop's Prod\" SET search_path TO 'shop'; -- a comment's quote '\n"
           "CREATE FUNCTION f() RETURNS text AS $body$ SELECT 'a;'; $body$ LANGUAGE sql;\n"
           "\\unrestrict abc\n")

    assert split_statements(sql) == [
        'CREATE ROLE "o\'reilly";',
        "ALTER ROLE \"o'reilly\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:a$b';",
        'GRANT shop_readonly TO "o\'reilly" GRANTED BY postgres;',
        "COMMENT ON ROLE x IS 'it''s -- not a comment;\nstill the comment';",
        "ALTER DATABASE \"Shop's Prod\" SET search_path TO 'shop'; -- a comment's quote '",
        "CREATE FUNCTION f() RETURNS text AS $body$ SELECT 'a;'; $body$ LANGUAGE sql;",
    ]


def test_database_statements_rename_quoted_names_and_never_keep_one_that_still_names_the_dumped_database():
    sql = ('CREATE DATABASE "Shop\'s Prod" WITH TEMPLATE = template0;\n'
           'ALTER DATABASE "Shop\'s Prod" SET search_path TO \'shop\';\n'
           'GRANT CONNECT ON DATABASE "Shop\'s Prod" TO "o\'reilly";\n')
    assert database_statements(sql, "Shop's Prod_restored_1") == [
        'ALTER DATABASE "Shop\'s Prod_restored_1" SET search_path TO \'shop\';',
        'GRANT CONNECT ON DATABASE "Shop\'s Prod_restored_1" TO "o\'reilly";']

    glued = ("CREATE DATABASE shop WITH TEMPLATE = template0;\n"
             "COMMENT ON DATABASE shop IS 'a copy of DATABASE shop';\n"
             "ALTER DATABASE shop SET work_mem TO '8MB'; ALTER DATABASE shop OWNER TO app;\n")
    assert database_statements(glued, "shop_restored_1") == [
        "COMMENT ON DATABASE \"shop_restored_1\" IS 'a copy of DATABASE shop';"]


def test_existing_roles_are_kept_and_missing_ones_created():
    run, kept = plan_globals(GLOBALS, {"postgres"})
    assert kept == ["postgres"]
    assert not any("ROLE postgres" in s for s in run)
    assert "CREATE ROLE contrivance_app;" in run and any(s.startswith("ALTER ROLE contrivance_app") for s in run)
    assert role_of('CREATE ROLE "Odd ""Name""";') == 'Odd "Name"'
    assert role_of("GRANT a TO b;") is None


def test_restored_names_carry_the_time_and_respect_the_identifier_limit():
    assert restored_name("shop", NOW) == "shop_restored_20261126120000"
    assert restored_name("shop", NOW, "replaced") == "shop_replaced_20261126120000"
    with pytest.raises(UsageError, match="longer than PostgreSQL's 63 bytes"):
        restored_name("x" * 50, NOW)


def test_the_plan_restores_into_a_new_database_unless_replacing():
    entry = BackupEntry(manifest(objects=[StoredObject(name="globals", key="k", format="sql", raw_size=1,
                                                       stored_size=1, sha256="0")]))
    target = Target(conninfo="host=db", password=None, display="postgres@db:5432", dbname="shop")
    plan = plan_restore("shop", entry, "newest", target, replace=False, safety_backup=True,
                        terminate_connections=False, parallel_jobs=4, client="local pg_restore 15", now=NOW)
    assert plan.restore_into == "shop_restored_20261126120000" and plan.replaced_name is None
    assert not plan.safety_backup  # only a replace needs one
    assert plan.backup_age_seconds == 9 * 3600
    assert any("--jobs=4" in s for s in plan.steps) and any("globals" in s for s in plan.steps)
    assert not any("rename" in s for s in plan.steps)

    replace = plan_restore("shop", entry, "newest", target, replace=True, safety_backup=True,
                           terminate_connections=True, parallel_jobs=2, client="local", now=NOW)
    assert replace.safety_backup and replace.replaced_name == "shop_replaced_20261126120000"
    assert replace.steps[-1].startswith("rename shop to shop_replaced_20261126120000")
    assert any("safety backup" in s for s in replace.steps) and any("terminate" in s for s in replace.steps)


def test_row_counts_must_match_exactly_and_estimates_within_tolerance():
    expected = {"a.x": TableCount(rows=10), "a.y": TableCount(rows=1000, exact=False)}
    assert compare_row_counts(expected, {"a.x": 10, "a.y": 1090}, tolerance=0.1).passed
    bad = compare_row_counts(expected, {"a.x": 11, "a.y": 1200, "a.z": 1}, tolerance=0.1)
    assert not bad.passed and bad.name == "row_counts"
    assert "a.x 11 rows, manifest 10" in bad.detail and "a.y 1200 rows" in bad.detail and "a.z not in manifest" in bad.detail
    assert "a.x missing" in compare_row_counts(expected, {"a.y": 1000}, tolerance=0.1).detail


def test_object_counts_must_match_for_every_kind():
    assert compare_object_counts({"tables": 2, "views": 1}, {"tables": 2, "views": 1, "roles": 9}).passed
    bad = compare_object_counts({"tables": 2, "views": 1}, {"tables": 2, "views": 0})
    assert not bad.passed and bad.detail == "differ: views 0 (manifest 1)"


def test_drill_server_settings_are_disposable():
    args = container.DrillSettings(image="postgres:15", run_id="r").server_args()
    pairs = dict(a.split("=", 1) for a in args[2::2])
    assert args[0] == "postgres"
    assert pairs["fsync"] == "off" and pairs["full_page_writes"] == "off" and pairs["synchronous_commit"] == "off"
    assert pairs["wal_level"] == "minimal" and pairs["max_wal_senders"] == "0"
    assert pairs["maintenance_work_mem"] == "512MB" and "shared_buffers" not in pairs


def test_only_drills_of_gone_processes_or_past_their_deadline_are_abandoned():
    import os

    mine = container.owner_labels("run", deadline=NOW.timestamp() + 60)
    host = mine[container.HOST_LABEL]
    now = NOW.timestamp()
    assert not container.is_abandoned(mine, host=host, now=now)  # this process is alive
    assert container.is_abandoned(mine, host=host, now=now + 120)  # past its deadline
    assert not container.is_abandoned(mine, host="elsewhere", now=now)  # another host's live drill
    reused = dict(mine, **{container.PID_START_LABEL: "1"})  # same pid, a different process
    assert container.is_abandoned(reused, host=host, now=now)
    gone = dict(mine, **{container.PID_LABEL: str(2**22 + 7)})
    assert container.is_abandoned(gone, host=host, now=now)
    assert mine[container.PID_LABEL] == str(os.getpid())


def stored(tmp_path, raw: bytes, compressed: bytes | None = None):
    storage = LocalStorage("t", str(tmp_path))
    data = compressed if compressed is not None else zstandard.ZstdCompressor(write_checksum=True).compress(raw)
    storage.put("pg/x/1/dump.pgcustom.zst", data)
    obj = StoredObject(name="dump", key="pg/x/1/dump.pgcustom.zst", format="pg_dump-custom", raw_size=len(raw),
                       stored_size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                       raw_sha256=hashlib.sha256(raw).hexdigest())
    return storage, obj, data


def test_the_verified_reader_yields_the_content_when_it_matches(tmp_path):
    raw = b"PGDMP" + bytes(range(256)) * 5000
    storage, obj, _ = stored(tmp_path, raw)
    reader = VerifiedObject(storage, obj)
    assert b"".join(reader.chunks()) == raw and reader.raw_bytes == len(raw)


def test_a_flipped_byte_is_a_checksum_mismatch_even_when_decompression_breaks(tmp_path):
    storage, obj, data = stored(tmp_path, b"PGDMP" + bytes(range(256)) * 5000)
    for position in (0, len(data) // 2, len(data) - 1):
        broken = bytearray(data)
        broken[position] ^= 0x40
        storage.put(obj.key, bytes(broken))
        with pytest.raises(ChecksumMismatch, match="SHA-256 mismatch"):
            b"".join(VerifiedObject(storage, obj).chunks())


def test_a_backup_of_many_frames_reads_back_whole_and_one_cut_inside_a_frame_fails(tmp_path):
    raw = os.urandom(100_000) * 30  # 3 MB: three full frames and a short one
    sink = MemoryWriter()
    store_stream(_reader(raw), sink, level=1, hash_raw=True)
    storage, obj, data = stored(tmp_path, raw, compressed=sink.getvalue())
    assert b"".join(VerifiedObject(storage, obj).chunks()) == raw
    # Cut inside the last frame, with a manifest that matches the cut bytes: written damaged.
    cut = data[:-7]
    storage.put(obj.key, cut)
    matching = obj.model_copy(update={"stored_size": len(cut), "sha256": hashlib.sha256(cut).hexdigest()})
    with pytest.raises(StorageError, match="ends early"):
        b"".join(VerifiedObject(storage, matching).chunks())
    # Cut exactly between two frames: the content is short of what the manifest says.
    first = len(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(raw[:1024 * 1024]))
    head = data[:first]
    storage.put(obj.key, head)
    between = obj.model_copy(update={"stored_size": len(head), "sha256": hashlib.sha256(head).hexdigest()})
    with pytest.raises(ChecksumMismatch, match="after decompression"):
        b"".join(VerifiedObject(storage, between).chunks())


def _reader(raw: bytes):
    view, pos = memoryview(raw), 0

    def readinto(buffer: memoryview) -> int:
        nonlocal pos
        out = view[pos:pos + min(len(buffer), 200_000)]
        buffer[:len(out)] = out
        pos += len(out)
        return len(out)
    return readinto


def test_a_manifest_that_lies_about_the_size_is_caught(tmp_path):
    storage, obj, _ = stored(tmp_path, b"abc" * 1000)
    with pytest.raises(ChecksumMismatch, match="after decompression"):
        b"".join(VerifiedObject(storage, obj.model_copy(update={"raw_size": 5})).chunks())
    truncated = obj.model_copy(update={"raw_sha256": "0" * 64})
    with pytest.raises(ChecksumMismatch, match="uncompressed content"):
        b"".join(VerifiedObject(storage, truncated).chunks())
    assert issubclass(ChecksumMismatch, StorageError)


def test_a_backup_is_verified_only_by_a_passed_drill():
    entry = BackupEntry(manifest())
    failed = Verification(backup_id=entry.id, database="shop", run_id="r1", result="failed", checks=[],
                          started=NOW, finished=NOW, maintainer_version="0")
    entry.verifications.append(failed)
    assert not entry.verified
    entry.verifications.append(failed.model_copy(update={"result": "passed", "finished": NOW + timedelta(1)}))
    assert entry.verified


def test_tmpfs_auto_keeps_the_data_in_memory_only_when_it_fits():
    from maintainer.restore.drill import use_tmpfs

    gib, mib = 1024**3, 1024**2
    assert use_tmpfs("auto", 100 * mib, 2 * gib, 2, "512MB")  # 250 MiB + 1 GiB + 256 MiB <= 2 GiB
    assert not use_tmpfs("auto", 800 * mib, 3 * gib, 2, "512MB")
    assert use_tmpfs("auto", 800 * mib, 4 * gib, 2, "512MB")
    assert not use_tmpfs("auto", 1 * mib, 1 * gib, 2, "512MB")  # the index builds alone fill 1 GiB
    assert use_tmpfs(True, 10 * gib, gib, 2, "512MB") and not use_tmpfs(False, 1, 8 * gib, 1, "64MB")


def test_the_drill_config_accepts_tmpfs_auto_true_and_false():
    from maintainer.config.jobs import RestoreDrillJob

    base = {"type": "restore_drill", "schedule": "0 5 * * 0", "databases": ["db"], "storage": "s"}
    assert RestoreDrillJob.model_validate(base).tmpfs == "auto"
    assert RestoreDrillJob.model_validate({**base, "tmpfs": True}).tmpfs is True
    assert RestoreDrillJob.model_validate({**base, "tmpfs": False}).tmpfs is False
    with pytest.raises(ValueError):
        RestoreDrillJob.model_validate({**base, "tmpfs": "sometimes"})
