"""WAL positions and segment names, for any wal_segment_size.

An LSN is a 64-bit byte position in the write-ahead log, written ``X/Y`` (two
hex halves). A segment holds ``wal_segment_size`` bytes (a power of two,
1 MB to 1 GB; 16 MB by default) and is named by 24 hex digits: the timeline,
then the segment number split into a "log id" and the segment within it (as
PostgreSQL's XLogFileName does). Pure functions; ValueError for text that is
not an LSN or a segment name.
"""

from __future__ import annotations

import re

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_NAME = re.compile(r"^[0-9A-F]{24}$")


def parse_lsn(text: str) -> int:
    """``"0/2000028"`` -> 33554472."""
    match = _LSN.match(text.strip())
    if not match:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(lsn: int) -> str:
    """33554472 -> ``"0/2000028"`` (as PostgreSQL prints it)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def check_segment_size(size: int) -> int:
    if size < 1024 * 1024 or size > 1024 ** 3 or size & (size - 1):
        raise ValueError(f"not a wal_segment_size: {size} (a power of two from 1 MB to 1 GB)")
    return size


def segments_per_id(size: int) -> int:
    return 0x100000000 // check_segment_size(size)


def segment_of(lsn: int, size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The number of the segment that holds byte ``lsn``."""
    return lsn // check_segment_size(size)


def segment_start(segno: int, size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The LSN of a segment's first byte."""
    return segno * check_segment_size(size)


def segment_name(timeline: int, segno: int, size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """(1, 2) -> ``"000000010000000000000002"``."""
    per = segments_per_id(size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def parse_segment_name(name: str, size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int]:
    """``"000000010000000000000002"`` -> (timeline 1, segment number 2)."""
    if not _NAME.match(name):
        raise ValueError(f"not a WAL segment name: {name!r}")
    per = segments_per_id(size)
    low = int(name[16:], 16)
    if low >= per:
        raise ValueError(f"not a WAL segment name for {size}-byte segments: {name!r}")
    return int(name[:8], 16), int(name[8:16], 16) * per + low


def segment_name_of_lsn(timeline: int, lsn: int, size: int = DEFAULT_SEGMENT_SIZE) -> str:
    return segment_name(timeline, segment_of(lsn, size), size)
