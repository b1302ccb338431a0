"""The streaming pipeline, the sanity gates and the small pure pieces of the pg_backup job."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
from datetime import datetime, timezone

import pytest
import zstandard

from maintainer.backup.dump import MemoryWriter, tool_failure
from maintainer.backup.manifest import Manifest
from maintainer.backup.pipeline import IncompleteStream, decompress_frames, frame_size, store_stream
from maintainer.config.models import DatabaseSpec
from maintainer.errors import DatabaseError, Interrupted, JobError
from maintainer.jobs.pg_backup import check_dump, suspicious_reasons
from maintainer.postgres.attach import AttachStream
from maintainer.postgres.client import choose_client, local_clients
from maintainer.postgres.connection import ServerVersion, client_env, describe_error
from maintainer.postgres.process import DumpProcess

pytestmark = pytest.mark.unit


def chunks_of(data: bytes, size: int):
    view = memoryview(data)
    pos = 0

    def readinto(buffer: memoryview) -> int:
        nonlocal pos
        out = view[pos:pos + min(len(buffer), size)]
        buffer[:len(out)] = out
        pos += len(out)
        return len(out)
    return readinto


def test_store_stream_writes_zstd_whose_hashes_and_sizes_match_what_was_streamed():
    data = os.urandom(300_000) + b"PGDMP" * 200_000
    sink = MemoryWriter()
    res = store_stream(chunks_of(data, 70_000), sink, level=3, hash_raw=True)
    stored = sink.getvalue()
    assert b"".join(decompress_frames([stored])) == data
    # One zstd frame per MiB, each one whole: the standard decoder reads them as one file.
    assert zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(stored) == data
    assert len(zstandard.ZstdDecompressor().decompressobj().decompress(stored)) == 1024 * 1024
    assert res.raw_size == len(data) and res.stored_size == len(stored) == sink.size
    assert res.sha256 == hashlib.sha256(stored).hexdigest()
    assert res.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert res.head == data[:16]


def test_store_stream_reuses_one_buffer_and_hashes_raw_bytes_only_on_request():
    data = os.urandom(50_000) * 40
    seen = []
    source = chunks_of(data, 64 * 1024)

    def readinto(buffer: memoryview) -> int:
        seen.append(buffer.obj)
        return source(buffer)

    sink = MemoryWriter()
    res = store_stream(readinto, sink, level=1, frame=256 * 1024)
    assert res.raw_sha256 is None and res.raw_size == len(data)
    assert len({id(b) for b in seen}) == 1 and len(seen) > 10
    assert b"".join(decompress_frames([sink.getvalue()])) == data


def test_an_empty_stream_is_one_empty_frame():
    sink = MemoryWriter()
    res = store_stream(lambda buffer: 0, sink, level=1)
    assert res.raw_size == 0 and res.stored_size == len(sink.getvalue()) > 0
    assert b"".join(decompress_frames([sink.getvalue()])) == b""


def test_frames_are_decompressed_across_any_block_boundaries_and_a_cut_frame_is_reported():
    frames = [zstandard.ZstdCompressor(level=1, write_checksum=True).compress(bytes([i]) * 5000) for i in range(4)]
    joined = b"".join(frames)
    blocks = [joined[i:i + 7] for i in range(0, len(joined), 7)]
    assert b"".join(decompress_frames(blocks)) == b"".join(bytes([i]) * 5000 for i in range(4))
    with pytest.raises(IncompleteStream):
        b"".join(decompress_frames([joined[:-3]]))
    broken = bytearray(joined)
    broken[len(frames[0]) - 2] ^= 0xFF  # inside the first frame's checksum
    with pytest.raises(zstandard.ZstdError):
        b"".join(decompress_frames([bytes(broken)]))



def test_store_stream_stops_when_cancelled():
    cancel = threading.Event()
    calls = {"n": 0}

    def readinto(buffer: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            cancel.set()
        buffer[:1000] = b"x" * 1000
        return 1000

    with pytest.raises(Interrupted):
        store_stream(readinto, MemoryWriter(), cancel=cancel)
    assert calls["n"] == 3


class _Stream:
    def __init__(self, raw: int, head: bytes):
        self.raw_size, self.head = raw, head


def test_an_empty_dump_or_one_that_is_not_a_custom_archive_fails():
    with pytest.raises(DatabaseError, match="wrote nothing"):
        check_dump("app", _Stream(0, b""))
    with pytest.raises(DatabaseError, match="not a pg_dump custom-format archive"):
        check_dump("app", _Stream(100, b"-- PostgreSQL"))
    check_dump("app", _Stream(100, b"PGDMP\x01\x0e"))


def _manifest(rows: int, raw: int, bid: str = "20260101T000000Z") -> Manifest:
    now = datetime.now(timezone.utc)
    return Manifest(id=bid, database="app", dbname="app", server_version="15.1", server_version_num=150001,
                    server_major=15, pg_dump_version="15.1", client="local", started=now, finished=now, duration=1,
                    compression={}, maintainer_version="t", objects=[], row_counts={}, object_counts={},
                    total_rows=rows, raw_size=raw, stored_size=raw)


@pytest.mark.parametrize("rows, raw, expected", [
    (1000, 10_000, []),
    (499, 10_000, ["total rows"]),
    (1000, 4_000, ["raw size"]),
    (0, 0, ["total rows", "raw size"]),
    (500, 5_000, []),  # exactly half is not more than half
])
def test_a_drop_of_more_than_the_fraction_in_rows_or_size_is_suspicious(rows, raw, expected):
    reasons = suspicious_reasons(_manifest(rows, raw, "20260102T000000Z"), _manifest(1000, 10_000), 0.5)
    assert [r.split(" fell")[0] for r in reasons] == expected


def test_the_first_backup_of_a_database_is_never_suspicious():
    assert suspicious_reasons(_manifest(0, 10), None, 0.5) == []


class _Finished(DumpProcess):
    def __init__(self, stderr: bytes):
        super().__init__()
        self._add_stderr(stderr)

    def read(self, n): return b""
    def kill(self): pass
    def finish(self): return 0


def test_a_tool_failure_is_reported_by_its_own_last_error_line():
    proc = _Finished(b'pg_dump: error: query failed: ERROR:  permission denied for table secrets\n'
                     b'pg_dump: detail: Query was: LOCK TABLE public.secrets IN ACCESS SHARE MODE\n')
    assert tool_failure(1, proc) == "exited with 1: query failed: ERROR:  permission denied for table secrets"
    assert tool_failure(-9, _Finished(b"")) == "was killed by signal 9"


def test_connection_errors_become_their_meaningful_part():
    text = ('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
            'FATAL:  password authentication failed for user "postgres"')
    assert describe_error(Exception(text)) == 'password authentication failed for user "postgres"'
    assert "connection refused" in describe_error(Exception("... failed: Connection refused\n\tIs the server running")) 


def test_the_password_reaches_client_tools_only_through_the_environment():
    spec = DatabaseSpec(password="s3cret-value")
    assert client_env(spec)["PGPASSWORD"] == "s3cret-value"


def test_docker_multiplexed_streams_are_split_into_stdout_bytes_and_stderr():
    a, b = socket.socketpair()
    frames = [(1, b"PGDMP" + b"a" * 5000), (2, b"warning\n"), (1, b""), (1, b"tail")]
    payload = b"".join(struct.pack(">BxxxL", s, len(d)) + d for s, d in frames)
    a.sendall(payload)
    a.close()
    errors = []
    stream = AttachStream(b, errors.append)
    out = b""
    for _ in range(1000):
        data = stream.read(1024)
        if not data:
            break
        out += data
    assert out == b"PGDMP" + b"a" * 5000 + b"tail"
    assert errors == [b"warning\n"]
    stream.close()


def test_local_mode_with_a_server_newer_than_every_local_client_names_versions_and_the_fix():
    spec = DatabaseSpec.model_validate({"client": {"mode": "local"}})
    with pytest.raises(JobError) as info:
        choose_client(spec, "app", ServerVersion("99.1", 990001))
    message = info.value.message
    assert "PostgreSQL 99.1" in message and "databases.app.client.mode" in message
    found = local_clients("pg_dump")
    assert (f"local pg_dump {found[0][1]}" if found else "not installed") in message


def _fake_tool(directory, name: str, version: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {version}'\n")
    path.chmod(0o755)


def test_local_clients_prefer_real_binaries_over_debians_perl_wrapper(tmp_path, monkeypatch):
    installed = local_clients.__wrapped__("pg_dump")
    wrapper_dir, bin_dir = tmp_path / "share", tmp_path / "bin"
    wrapper_dir.mkdir()
    bin_dir.mkdir()
    _fake_tool(wrapper_dir, "pg_wrapper", "98.1")
    (bin_dir / "pg_dump").symlink_to(wrapper_dir / "pg_wrapper")
    monkeypatch.setenv("PATH", str(bin_dir))
    found = local_clients.__wrapped__("pg_dump")
    if installed:  # the wrapper is skipped while a versioned install exists
        assert found == installed
    else:
        assert found == ((98, "98.1", str(bin_dir / "pg_dump")),)
    (bin_dir / "pg_dump").unlink()
    _fake_tool(bin_dir, "pg_dump", "99.2")  # a real binary on PATH is a candidate like any other
    assert local_clients.__wrapped__("pg_dump")[0] == (99, "99.2", str(bin_dir / "pg_dump"))


def test_with_zstd_threads_frames_grow_so_every_thread_has_work():
    data = os.urandom(3 * 1024 * 1024) + b"PGDMP" * 1_000_000  # 8 MB
    sink = MemoryWriter()
    store_stream(chunks_of(data, 300_000), sink, level=1, threads=2)
    stored = sink.getvalue()
    assert zstandard.frame_content_size(stored) == frame_size(2) == 4 * 1024 * 1024
    assert b"".join(decompress_frames([stored])) == data
