"""One contract for every storage backend: local directory and S3 (a real moto server).

Each test runs against both backends; S3-only and local-only behaviour
(multipart uploads, temporary files, server errors) follows at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta

import pytest
from pydantic import SecretStr

from maintainer.config.models import StorageSpec
from maintainer.errors import ObjectNotFound, StorageError
from maintainer.storage import open_storage
from maintainer.storage.local import LocalStorage
from tests.support.s3 import free_port, wait_until_answering

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def s3_spec(server, bucket: str, prefix: str = "backups", **extra) -> StorageSpec:
    return StorageSpec(url=f"s3://{bucket}/{prefix}", endpoint_url=server.endpoint_url, region=server.region,
                       path_style=True, access_key_id=server.access_key, secret_access_key=server.secret_key,
                       part_size=5 * MiB, **extra)


@pytest.fixture(params=["local", "s3"])
def storage_spec(request, tmp_path) -> StorageSpec:
    if request.param == "local":
        return StorageSpec(url=f"file://{tmp_path}/store")
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return s3_spec(server, bucket)


@pytest.fixture
def storage(storage_spec):
    return open_storage(storage_spec, name=storage_spec.url.split(":", 1)[0])


def everything(storage) -> list[str]:
    """All the storage holds for real, also what list() hides: local files and
    directories (hidden ones too), S3 objects and unfinished multipart uploads."""
    if isinstance(storage, LocalStorage):
        found = storage.root.rglob("*") if storage.root.exists() else []
        return sorted(p.relative_to(storage.root).as_posix() + ("/" if p.is_dir() else "") for p in found)
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket)
    objects = [o["Key"] for page in pages for o in page.get("Contents", [])]
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
    return sorted(objects + [f"unfinished upload of {u['Key']}" for u in uploads])


# Opens a writer for each key, writes past one S3 part (a multipart upload is under
# way) and says so; then waits to be killed.
UNFINISHED_WRITER = """
import sys, time
from maintainer.config.models import StorageSpec
from maintainer.storage import open_storage
storage = open_storage(StorageSpec.model_validate_json(sys.argv[1]), name="child")
writers = [storage.open_writer(key) for key in sys.argv[2:]]
for writer in writers:
    writer.write(b"x" * (6 * 1024 * 1024))
print("writing", flush=True)
time.sleep(120)
"""


def kill_writer_of(spec: StorageSpec, *keys: str) -> None:
    """Leave what a run killed with SIGKILL mid-write leaves behind."""
    doc = json.dumps({k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in spec.model_dump().items()})
    child = subprocess.Popen([sys.executable, "-c", UNFINISHED_WRITER, doc, *keys], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.kill()
        child.wait(timeout=30)


def pattern(i: int, size: int = MiB) -> bytes:
    """Deterministic, incompressible-looking chunk number i."""
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def test_put_then_read_back(storage):
    info = storage.put("db/2026/dump.bin", b"hello world")
    assert info.key == "db/2026/dump.bin" and info.size == 11
    assert storage.get_bytes("db/2026/dump.bin") == b"hello world"
    stat = storage.stat("db/2026/dump.bin")
    assert stat.size == 11 and stat.modified.tzinfo is not None


def test_streamed_writer_commits_only_at_the_end(storage):
    with storage.open_writer("a/stream.bin") as writer:
        for i in range(3):
            writer.write(pattern(i, 1000))
        assert not storage.exists("a/stream.bin"), "nothing visible before commit"
    assert storage.stat("a/stream.bin").size == 3000
    assert storage.get_bytes("a/stream.bin") == b"".join(pattern(i, 1000) for i in range(3))


def test_a_failed_write_leaves_nothing_that_looks_complete(storage):
    with pytest.raises(RuntimeError):
        with storage.open_writer("a/broken.bin") as writer:
            writer.write(pattern(0, 6 * MiB))  # past one S3 part: a multipart upload is under way
            writer.write(pattern(1, 6 * MiB))
            raise RuntimeError("pg_dump died")
    assert not storage.exists("a/broken.bin")
    assert list(storage.list("a/")) == []
    assert everything(storage) == [], "the abort removed everything, empty directories too"
    assert storage.cleanup_incomplete("", older_than=timedelta(0)) == []


def test_a_live_writers_unfinished_write_is_never_cleaned_up(storage):
    """Another run may be writing right now: however eager the clean-up, it stays."""
    with storage.open_writer("pg/db/1/dump") as writer:
        writer.write(pattern(0, 6 * MiB))  # past one S3 part: a multipart upload is under way
        assert storage.cleanup_incomplete("", older_than=timedelta(0)) == []
        writer.write(pattern(1, 1000))
    assert storage.get_bytes("pg/db/1/dump") == pattern(0, 6 * MiB) + pattern(1, 1000)
    assert [o.key for o in storage.list()] == ["pg/db/1/dump"]


def test_what_a_killed_writer_left_is_removed_at_once_and_only_under_the_prefix(storage, storage_spec):
    kill_writer_of(storage_spec, "pg/app/1/dump", "pg/app2/1/dump")
    assert list(storage.list()) == []  # never visible
    assert everything(storage) != []

    # A writer known to be dead does not wait for the age limit.
    assert storage.cleanup_incomplete("pg/app/", older_than=timedelta(hours=1)) == ["pg/app/1/dump"]
    assert all("pg/app/" not in thing for thing in everything(storage))
    assert any("pg/app2/" in thing for thing in everything(storage)), "another prefix's leftovers are not touched"
    assert storage.cleanup_incomplete("pg/app2/", older_than=timedelta(hours=1)) == ["pg/app2/1/dump"]
    assert everything(storage) == []


def test_list_by_prefix_is_sorted_and_exact(storage):
    for key in ["pg/b/2/x", "pg/a/1/x", "pg/a/2/x", "pg/ab/1/x", "other/y"]:
        storage.put(key, key.encode())
    assert [o.key for o in storage.list("pg/a/")] == ["pg/a/1/x", "pg/a/2/x"]
    assert [o.key for o in storage.list("pg/a")] == ["pg/a/1/x", "pg/a/2/x", "pg/ab/1/x"]
    assert len(list(storage.list())) == 5
    assert list(storage.list("nothing/")) == []


def test_delete_removes_and_tolerates_missing(storage):
    storage.put("x/1", b"1")
    storage.delete("x/1")
    assert not storage.exists("x/1")
    storage.delete("x/1")  # again: not an error
    assert list(storage.list("x/")) == []


def test_missing_objects_raise_object_not_found(storage):
    with pytest.raises(ObjectNotFound):
        storage.open("nope/key")
    with pytest.raises(ObjectNotFound):
        storage.stat("nope/key")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "", "a/./b"])
def test_keys_that_could_escape_are_rejected(storage, key):
    with pytest.raises(StorageError):
        storage.put(key, b"x")


def test_listing_past_a_thousand_keys(storage):
    for i in range(1050):
        storage.put(f"many/{i:05d}", b"x")
    keys = [o.key for o in storage.list("many/")]
    assert len(keys) == 1050 and keys == sorted(keys) and keys[-1] == "many/01049"


def _stream_100mb(storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open_writer(key) as writer:
        for i in range(100):
            chunk = pattern(i)
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def _stream_100mb_traced(storage, key: str) -> tuple[str, int]:
    """_stream_100mb, with the peak memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        written = _stream_100mb(storage, key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return written, peak


def _read_digest(storage, key: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with storage.open(key) as stream:
        while chunk := stream.read(MiB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def test_a_100_mb_object_streams_in_bounded_memory_locally(tmp_path):
    storage = LocalStorage("local", tmp_path / "store")
    written, peak = _stream_100mb_traced(storage, "big/object")
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert _read_digest(storage, "big/object") == (written, 100 * MiB)


def test_a_100_mb_object_streams_to_s3_in_bounded_memory(s3_server_factory):
    # A private server in its own process, so that its memory is not counted here.
    server = s3_server_factory()
    server.client().create_bucket(Bucket="big")
    storage = open_storage(s3_spec(server, "big"), name="s3")
    written, peak = _stream_100mb_traced(storage, "big/object")
    # About three 5 MiB parts (one filling, one queued, one sending) plus boto's own buffers.
    assert peak < 40 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert _read_digest(storage, "big/object") == (written, 100 * MiB)
    uploads = server.client().list_multipart_uploads(Bucket="big").get("Uploads", [])
    assert uploads == []


# ------------------------------------------------------------------ S3 only


def test_an_interrupted_s3_upload_is_aborted_on_the_server(s3_server, s3_bucket):
    storage = open_storage(s3_spec(s3_server, s3_bucket), name="s3")
    writer = storage.open_writer("db/dump")
    writer.write(pattern(0, 11 * MiB))  # two parts sent or queued: a multipart upload exists
    client = s3_server.client()
    assert len(client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])) == 1
    writer.abort()
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert not storage.exists("db/dump")


def test_stale_multipart_uploads_are_cleaned_up(s3_server, s3_bucket):
    """A crash leaves an upload behind; the next run's clean-up aborts it."""
    storage = open_storage(s3_spec(s3_server, s3_bucket), name="s3")
    client = s3_server.client()
    client.create_multipart_upload(Bucket=s3_bucket, Key="backups/pg/db/1/dump")
    client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/dump")  # outside our prefix: not ours
    # (moto reports a fixed, old "Initiated" time for every upload, so the age
    # threshold itself is only exercised against the local backend below.)
    assert storage.cleanup_incomplete("pg/", older_than=timedelta(0)) == ["pg/db/1/dump"]
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
    assert left == ["elsewhere/dump"]


def test_a_missing_bucket_is_a_clear_error(s3_server):
    storage = open_storage(s3_spec(s3_server, "no-such-bucket-here"), name="s3")
    for action in (lambda: storage.put("k", b"x"), lambda: list(storage.list()), lambda: storage.stat("k")):
        with pytest.raises(StorageError) as info:
            action()
        assert "bucket 'no-such-bucket-here' does not exist" in info.value.message


def test_a_server_that_is_down_is_a_clear_error(s3_server_factory):
    server = s3_server_factory()
    server.client().create_bucket(Bucket="bkt-test")
    storage = open_storage(s3_spec(server, "bkt-test"), name="s3")
    server.stop()
    with pytest.raises(StorageError) as info:
        storage.put("k", b"x")
    assert "cannot reach S3 endpoint" in info.value.message and server.endpoint_url in info.value.message


def test_a_server_that_dies_mid_upload_leaves_no_object(s3_server_factory):
    server = s3_server_factory()
    server.client().create_bucket(Bucket="bkt-test")
    storage = open_storage(s3_spec(server, "bkt-test"), name="s3")
    with pytest.raises(StorageError):
        with storage.open_writer("db/dump") as writer:
            writer.write(pattern(0, 6 * MiB))
            server.stop()
            for i in range(4):
                writer.write(pattern(i, 6 * MiB))
    server.start()  # an empty server again: nothing of ours may be there
    server.client().create_bucket(Bucket="bkt-test")
    assert list(storage.list()) == []


@pytest.fixture
def authenticating_s3():
    """A moto server that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0)."""
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answering(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_bad_credentials_are_a_clear_error_without_the_secret(authenticating_s3):
    spec = StorageSpec(url="s3://b/p", endpoint_url=authenticating_s3, path_style=True,
                       access_key_id="AKIAWRONGWRONGWRONG", secret_access_key="wrong-secret-value-123")
    storage = open_storage(spec, name="s3")
    with pytest.raises(StorageError) as info:
        storage.put("k", b"x")
    assert "access denied by S3" in info.value.message
    assert "wrong-secret-value-123" not in info.value.message


# ------------------------------------------------------------------ local only


def test_a_local_partial_file_is_kept_while_its_writer_lives_however_old(tmp_path):
    storage = LocalStorage("local", tmp_path)
    writer = storage.open_writer("db/1/dump")
    writer.write(b"half a dump")  # e.g. pg_dump waiting hours for a table lock
    old = time.time() - 7200
    os.utime(writer.temp, (old, old))
    assert list(storage.list()) == []
    assert storage.cleanup_incomplete("db/", older_than=timedelta(hours=1)) == []
    writer.commit()
    assert storage.get_bytes("db/1/dump") == b"half a dump"


def test_a_local_partial_file_that_was_never_locked_is_judged_by_age(tmp_path):
    """A writer killed in the instant between creating its file and locking it."""
    storage = LocalStorage("local", tmp_path)
    (tmp_path / "db" / "1").mkdir(parents=True)
    unlocked = tmp_path / "db" / "1" / ".dump.partial-0123abcd.new"
    unlocked.write_bytes(b"")
    assert storage.cleanup_incomplete("db/", older_than=timedelta(hours=1)) == []
    old = time.time() - 7200
    os.utime(unlocked, (old, old))
    assert storage.cleanup_incomplete("db/", older_than=timedelta(hours=1)) == ["db/1/dump"]
    assert list(tmp_path.iterdir()) == []


def test_a_local_writer_recreates_a_directory_a_clean_up_removed_meanwhile(tmp_path, monkeypatch):
    """A clean-up removes empty directories; a writer that made one a moment before still works."""
    storage = LocalStorage("local", tmp_path)
    (tmp_path / "db" / "1").mkdir(parents=True)
    real_mkdir = type(tmp_path).mkdir
    removed = []

    def mkdir_then_lose_it(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if not removed:
            removed.append(path)
            storage.cleanup_incomplete("db/", older_than=timedelta(0))  # the other run, right now

    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir_then_lose_it)
    storage.put("db/1/dump", b"dump")
    monkeypatch.undo()
    assert removed and storage.get_bytes("db/1/dump") == b"dump"


def test_a_local_root_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    storage = LocalStorage("local", tmp_path / "file")
    with pytest.raises(StorageError):
        storage.put("k", b"x")
    with pytest.raises(StorageError) as info:
        list(storage.list())
    assert "not a directory" in info.value.message
