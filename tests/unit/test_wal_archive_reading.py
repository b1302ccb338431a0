"""The WAL archive's read side on a local storage directory: LSN and name math,
listing, continuous ranges and gaps (following timeline history), and verified
reads of segments and history files, plain and encrypted."""

from __future__ import annotations

import hashlib

import pytest

from maintainer.crypto import X25519Identity, write_identity_file
from maintainer.crypto.errors import NoMatchingIdentity
from maintainer.crypto.keyring import Keyring, MissingIdentity
from maintainer.config.models import EncryptionSpec
from maintainer.errors import ObjectNotFound
from maintainer.storage.local import LocalStorage
from maintainer.wal import archive, layout, store
from maintainer.wal.lsn import (format_lsn, parse_lsn, parse_segment_name, segment_name, segment_name_of_lsn,
                                segment_of, segment_start)
from maintainer.wal.timeline import HistoryError, parse_history, segments_between, timeline_path

from support.wal import MB, fake_segment, store_segments

pytestmark = pytest.mark.unit


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage("local", str(tmp_path / "store"))


def keyring_for(tmp_path, name="id.txt") -> Keyring:
    identity = X25519Identity.generate()
    write_identity_file(tmp_path / name, identity)
    return Keyring("local", EncryptionSpec(recipients=[str(identity.recipient)], identity_files=[str(tmp_path / name)]))


# ------------------------------------------------------------------ LSN math
def test_lsn_text_round_trips_as_postgresql_prints_it():
    assert parse_lsn("0/2000028") == 0x2000028
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    with pytest.raises(ValueError):
        parse_lsn("garbage")


@pytest.mark.parametrize("size", [MB, 16 * MB, 64 * MB, 1024 * MB])
def test_segment_names_match_postgresql_for_every_segment_size(size):
    per = 0x100000000 // size
    lsn = (3 << 32) + 2 * size + 123
    segno = segment_of(lsn, size)
    assert segno == 3 * per + 2
    name = segment_name(2, segno, size)
    assert name == f"00000002{3:08X}{2:08X}"
    assert parse_segment_name(name, size) == (2, segno)
    assert segment_name_of_lsn(2, lsn, size) == name
    assert segment_start(segno, size) == lsn - 123


def test_the_default_16mb_segment_of_a_known_lsn():
    # pg_walfile_name('0/3000060') on timeline 1 with 16 MB segments
    assert segment_name_of_lsn(1, parse_lsn("0/3000060")) == "000000010000000000000003"
    assert segment_name_of_lsn(1, parse_lsn("1/0")) == "000000010000000100000000"
    with pytest.raises(ValueError):
        parse_segment_name("0000000100000000000001FF")  # only 256 segments per log id at 16 MB


# ------------------------------------------------------------------ timelines
HISTORY_3 = "1\t0/5000000\tno recovery target specified\n\n2\t0/8800000\tbefore 2026-12-01 00:00:00+00\n"


def test_history_parses_and_gives_the_path_to_a_timeline():
    entries = parse_history(HISTORY_3, 3)
    assert [(e.timeline, format_lsn(e.switchpoint)) for e in entries] == [(1, "0/5000000"), (2, "0/8800000")]
    path = timeline_path(3, entries)
    assert [(s.timeline, s.begin, s.end) for s in path] == [
        (1, 0, 0x5000000), (2, 0x5000000, 0x8800000), (3, 0x8800000, None)]
    with pytest.raises(HistoryError, match="line 1"):
        parse_history("x\ty\n", 2)


def test_segments_between_follow_the_history_and_take_the_switch_segment_from_the_child():
    entries = parse_history(HISTORY_3, 3)
    needed = segments_between(parse_lsn("0/3000000"), parse_lsn("0/A000010"), 3, entries, 16 * MB)
    assert needed == [(1, 3), (1, 4), (2, 5), (2, 6), (2, 7), (3, 8), (3, 9), (3, 10)]
    # a range that starts after a switch point needs nothing from the parent
    assert segments_between(parse_lsn("0/9000000"), parse_lsn("0/9000001"), 3, entries, 16 * MB) == [(3, 9)]


# ------------------------------------------------------------------ listing, ranges, gaps
def test_listing_finds_complete_partial_and_history_objects(storage):
    stored = store_segments(storage, "db", 1, [1, 2, 3])
    name4, data4 = fake_segment(1, 4)
    store.put_partial(storage, "db", name4, data4[:1000], None)
    store.put_history(storage, "db", 2, b"1\t0/3800000\tno recovery target specified\n", None)
    listing = archive.list_archive(storage, "db")
    assert listing.record is not None and listing.record.wal_segment_size == MB
    assert sorted(s.segment for s in listing.segments.values()) == sorted(stored)
    assert [s.segment for s in listing.partials.values()] == [name4]
    assert listing.histories == {2: layout.history_key("db", 2)}
    assert listing.find(name4).partial and not listing.find(segment_name(1, 2, MB)).partial
    assert listing.newest_segment().segment == segment_name(1, 3, MB)


def test_a_complete_segment_replaces_its_partial(storage):
    store_segments(storage, "db", 1, [1])
    name, data = fake_segment(1, 2)
    store.put_partial(storage, "db", name, data[:10], None)
    store.put_segment(storage, "db", name, data, None)
    listing = archive.list_archive(storage, "db")
    assert not listing.partials
    assert not any(layout.parse_segment_key(k).partial for k in listing.objects if layout.parse_segment_key(k))


def test_ranges_and_gaps_from_a_listing_with_a_hole(storage):
    store_segments(storage, "db", 1, [1, 2, 3, 6, 7])
    listing = archive.list_archive(storage, "db")
    ranges = archive.continuous_ranges(listing)
    assert [(r.first, r.last) for r in ranges] == [(1, 3), (6, 7)]
    assert ranges[0].start_lsn == segment_start(1, MB) and ranges[1].end_lsn == segment_start(8, MB)
    gaps = archive.find_gaps(listing, segment_start(1, MB), segment_start(8, MB) - 1, 1)
    assert [(g.first, g.last, g.count) for g in gaps] == [(4, 5, 2)]
    assert gaps[0].first_name == segment_name(1, 4, MB)
    assert "2 segments" in gaps[0].describe()
    assert [(g.first, g.last) for g in archive.archive_gaps(storage, listing)] == [(4, 5)]
    assert archive.archive_gaps(storage, listing, since_lsn=segment_start(6, MB)) == []


def test_gaps_follow_the_stored_timeline_history(storage):
    store_segments(storage, "db", 1, [1, 2])
    store_segments(storage, "db", 2, [3, 4])  # timeline 2 forked in segment 3
    store.put_history(storage, "db", 2, b"1\t0/320000\tno recovery target specified\n", None)  # 1 MB segments
    listing = archive.list_archive(storage, "db")
    history = archive.timeline_history(storage, listing, 2)
    assert [h.timeline for h in history] == [1]
    assert archive.find_gaps(listing, segment_start(1, MB), segment_start(5, MB) - 1, 2, history) == []
    assert archive.archive_gaps(storage, listing) == []
    storage.delete(listing.segments[(1, 2)].key)
    listing = archive.list_archive(storage, "db")
    assert [(g.timeline, g.first) for g in archive.archive_gaps(storage, listing)] == [(1, 2)]


# ------------------------------------------------------------------ verified reads
def test_a_segment_reads_back_byte_for_byte_and_its_key_carries_its_sha256(storage):
    stored = store_segments(storage, "db", 1, [9])
    (name, data), = stored.items()
    segment = archive.list_archive(storage, "db").find(name)
    assert segment.sha256 == hashlib.sha256(data).hexdigest()
    assert archive.read_segment(storage, segment) == data


def test_a_segment_altered_in_storage_is_a_checksum_mismatch(storage):
    (name, data), = store_segments(storage, "db", 1, [9]).items()
    segment = archive.list_archive(storage, "db").find(name)
    other = store.encode(data[:-1] + b"\x01", None)  # valid zstd, different content
    (storage.root / segment.key).write_bytes(other)
    with pytest.raises(archive.SegmentChecksumMismatch, match="does not match"):
        archive.read_segment(storage, segment)
    (storage.root / segment.key).write_bytes(b"not zstd at all")
    with pytest.raises(archive.SegmentChecksumMismatch, match="cannot be decompressed"):
        archive.read_segment(storage, segment)


def test_encrypted_segments_and_history_need_the_identity(storage, tmp_path):
    keyring = keyring_for(tmp_path)
    (name, data), = store_segments(storage, "db", 1, [5], keyring=keyring).items()
    store.put_history(storage, "db", 2, b"1\t0/5800000\treason\n", keyring)
    listing = archive.list_archive(storage, "db")
    segment = listing.find(name)
    assert segment.encrypted and segment.key.endswith(".zst.age")
    assert data[:64] not in storage.get_bytes(segment.key)
    assert archive.read_segment(storage, segment, keyring) == data
    assert archive.read_history(storage, listing, 2, keyring).startswith("1\t0/5800000")
    with pytest.raises(MissingIdentity):
        archive.read_segment(storage, segment, None)
    with pytest.raises(NoMatchingIdentity):
        archive.read_segment(storage, segment, keyring_for(tmp_path, "other.txt"))


def test_a_missing_history_or_segment_object_is_object_not_found(storage):
    (name, _), = store_segments(storage, "db", 1, [5]).items()
    listing = archive.list_archive(storage, "db")
    with pytest.raises(ObjectNotFound):
        archive.read_history(storage, listing, 7)
    storage.delete(listing.find(name).key)
    with pytest.raises(ObjectNotFound):
        archive.read_segment(storage, listing.find(name))


def test_an_archive_of_another_cluster_is_refused(storage):
    store_segments(storage, "db", 1, [1])
    from maintainer.errors import JobError

    with pytest.raises(JobError, match="system identifier"):
        store.ensure_archive_record(storage, "db", system_identifier="999", wal_segment_size=MB, pg_major=15)
