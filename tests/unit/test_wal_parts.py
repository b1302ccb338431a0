"""The small parts of continuous archiving, on their own: the config models, the tar
scanner that picks backup_label and backup_manifest out of pg_basebackup's stream,
the backup_label parser, the receiver's frame format, and the live lag figures."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from maintainer.config.loader import parse_config
from maintainer.errors import ConfigError, DatabaseError
from maintainer.wal.basebackup import parse_backup_label, wal_end
from maintainer.wal.receiver import Frame, FrameReader
from maintainer.wal.state import ReceiverState, WalStates
from maintainer.wal.tarscan import TarScanError, TarScanner

pytestmark = pytest.mark.unit

CONFIG = """
storage: {{main: {{url: "file:///backups"}}}}
databases: {{pg: {{host: db}}}}
jobs:
  wal: {{type: wal_archive, database: pg, storage: main{extra}}}
"""


def test_a_wal_archive_job_needs_no_schedule_and_has_safe_defaults():
    config = parse_config(CONFIG.format(extra=""))
    spec = config.jobs["wal"]
    assert spec.schedule is None and spec.slot == "maintainer"
    assert spec.max_wal_lag.total_seconds() == 300 and spec.flush_interval.total_seconds() == 5
    assert spec.synchronous is False and spec.slot_alert_bytes == 10 * 1024 ** 3


def test_a_bad_slot_name_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as exc:
        parse_config(CONFIG.format(extra=", slot: Bad-Name"))
    assert any("jobs.wal.slot" in p for p in exc.value.problems)


def tar_of(members: dict[str, bytes], long_name: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT if long_name else tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("piece", [1, 7, 512, 4096, 1 << 20])
def test_the_scanner_keeps_the_wanted_members_whatever_the_chunking(piece):
    data = tar_of({"PG_VERSION": b"15\n", "backup_label": b"START WAL LOCATION: 0/2000028 (file 0000000100000000"
                   b"00000002)\n", "base/1/1234": b"x" * 10000, "backup_manifest": b'{"a": 1}'})
    scanner = TarScanner({"backup_label", "backup_manifest"})
    for i in range(0, len(data), piece):
        scanner.feed(data[i:i + piece])
    assert scanner.ended
    assert scanner.members["backup_manifest"] == b'{"a": 1}'
    assert scanner.members["backup_label"].startswith(b"START WAL")
    assert scanner.names == ["PG_VERSION", "backup_label", "base/1/1234", "backup_manifest"]


def test_the_scanner_follows_long_names_and_refuses_what_is_not_a_tar():
    long = "pg_wal/" + "d" * 150
    scanner = TarScanner({long})
    scanner.feed(tar_of({long: b"wal"}, long_name=True))
    assert scanner.members == {long: b"wal"}
    with pytest.raises(TarScanError, match="not a tar"):
        TarScanner(set()).feed(b"PGDMP" + bytes(600))


def test_backup_label_and_manifest_give_the_backups_wal_range():
    label = parse_backup_label("START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\n"
                               "CHECKPOINT LOCATION: 0/9000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
                               "START TIME: 2026-12-01 10:00:00 UTC\nLABEL: x\nSTART TIMELINE: 2\n")
    assert label["start_lsn"] == "0/9000028" and label["timeline"] == 2
    assert label["start_time"].isoformat() == "2026-12-01T10:00:00+00:00"
    manifest = json.dumps({"WAL-Ranges": [{"Timeline": 2, "Start-LSN": "0/9000028", "End-LSN": "0/9000138"}]})
    assert wal_end(manifest.encode()) == (2, 0x9000138)


class FakeProcess:
    def __init__(self, data: bytes, piece: int = 3):
        self.data, self.piece = data, piece

    def read(self, n: int) -> bytes:
        out, self.data = self.data[:min(n, self.piece)], self.data[min(n, self.piece):]
        return out


def test_frames_come_back_with_their_exact_bytes():
    stream = b"F 000000010000000000000002 5\nhelloP 000000010000000000000003.partial 3\nabc"
    reader = FrameReader(FakeProcess(stream))
    frame = reader.next_frame()
    assert frame == Frame("F", "000000010000000000000002", 5)
    assert reader.read_body(100) + reader.read_body(100) + reader.read_body(100) == b"hello"
    assert reader.next_frame() == Frame("P", "000000010000000000000003.partial", 3)
    assert reader.next_frame() is None  # the unread body is skipped


def test_a_stream_cut_inside_a_file_or_a_bad_header_is_an_error():
    reader = FrameReader(FakeProcess(b"F 000000010000000000000002 50\nshort"))
    reader.next_frame()
    with pytest.raises(DatabaseError, match="inside a file"):
        while reader.read_body(10):
            pass
    with pytest.raises(DatabaseError, match="bad frame header"):
        FrameReader(FakeProcess(b"X ../etc/passwd 1\nx")).next_frame()


def test_lag_counts_from_the_first_server_position_the_archive_has_not_reached():
    states = WalStates()
    states.register(ReceiverState("wal", "pg", "main", "s", max_wal_lag=300))
    states.record_server_lsn("wal", 1000)
    states.record_archived("wal", 1000)
    assert states.get("wal").lag_seconds == 0.0
    states.record_server_lsn("wal", 5000)
    time.sleep(0.05)
    states.record_server_lsn("wal", 9000)
    lagging = states.get("wal")
    assert lagging.lag_bytes == 8000 and lagging.lag_seconds >= 0.05
    states.record_archived("wal", 9000, segment="000000010000000000000001")
    caught_up = states.get("wal")
    assert caught_up.lag_seconds == 0.0 and caught_up.last_segment == "000000010000000000000001"
    states.update("wal", up=False, last_error="pg_receivewal exited with 1")
    assert states.get("wal").failing() == ["WAL receiver of pg is down: pg_receivewal exited with 1"]
