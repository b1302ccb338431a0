"""A small tar reader that watches a stream go by and keeps a few members' contents.

pg_basebackup writes one tar to stdout; ``backup_label`` (the start LSN,
timeline and time) comes first and ``backup_manifest`` last. The stream is not
stored anywhere but in storage, so these members are picked out on the way
through: ``feed`` each chunk as it passes, then read ``members``. Handles
ustar (name and prefix), GNU long names ('L') and pax headers ('x'). Memory:
the wanted members (bounded by ``limit``) plus one header. Raises TarScanError
for a stream that is not a tar or a wanted member above the limit.
"""

from __future__ import annotations

from maintainer.errors import JobError

BLOCK = 512


class TarScanError(JobError):
    """The stream is not the tar it should be."""


class TarScanner:
    def __init__(self, wanted: set[str], limit: int = 256 * 1024 * 1024):
        self.wanted = wanted
        self.limit = limit
        self.members: dict[str, bytes] = {}
        self.names: list[str] = []  # every regular member's name, in order (small: one per file)
        self.ended = False  # the two zero blocks that end a tar were seen
        self._header = bytearray()
        self._remaining = 0  # content bytes of the current member still to come
        self._padding = 0
        self._keep: bytearray | None = None
        self._keep_name = ""
        self._special = ""  # "L" or "x": the content is metadata for the next header
        self._long_name: str | None = None
        self._zero_blocks = 0

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._remaining:
                take = min(self._remaining, len(view))
                if self._keep is not None:
                    self._keep += view[:take]
                self._remaining -= take
                view = view[take:]
                if not self._remaining:
                    self._member_done()
                continue
            if self._padding:
                take = min(self._padding, len(view))
                self._padding -= take
                view = view[take:]
                continue
            take = min(BLOCK - len(self._header), len(view))
            self._header += view[:take]
            view = view[take:]
            if len(self._header) == BLOCK:
                header, self._header = bytes(self._header), bytearray()
                self._on_header(header)

    def _on_header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self._zero_blocks += 1
            self.ended = self._zero_blocks >= 2
            return
        if self.ended:
            return
        if not _checksum_ok(header):
            raise TarScanError("pg_basebackup's output is not a tar stream (bad header checksum)")
        self._zero_blocks = 0
        kind = chr(header[156]) if header[156] else "0"
        size = _number(header[124:136])
        name = _text(header[0:100])
        prefix = _text(header[345:500]) if header[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        if self._long_name is not None and kind not in "Lx":
            name, self._long_name = self._long_name, None
        self._special = kind if kind in "Lx" else ""
        regular = kind in "07" and not self._special
        if regular:
            self.names.append(name)
        keep = self._special or (regular and name in self.wanted)
        if keep and size > self.limit:
            raise TarScanError(f"tar member {name} is {size} bytes, more than {self.limit}")
        self._keep = bytearray() if keep else None
        self._keep_name = name
        self._remaining = size
        self._padding = (-size) % BLOCK
        if size == 0:
            self._member_done()

    def _member_done(self) -> None:
        data = bytes(self._keep) if self._keep is not None else None
        self._keep = None
        if self._special == "L" and data is not None:
            self._long_name = data.rstrip(b"\x00").decode(errors="replace")
        elif self._special == "x" and data is not None:
            for record in _pax_records(data):
                if record[0] == "path":
                    self._long_name = record[1]
        elif data is not None:
            self.members[self._keep_name] = data
        self._special = ""


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU) for sizes above 8 GB
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.rstrip(b"\x00 ").strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode(errors="replace")


def _pax_records(data: bytes) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        record = data[space + 1:pos + length - 1].decode(errors="replace")
        key, _, value = record.partition("=")
        out.append((key, value))
        pos += length
    return out
