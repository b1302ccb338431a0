"""Damaging an index for real, on disk, so that amcheck has something true to find.

The server is stopped (a fast shutdown writes every page), one key of a B-tree
is overwritten in the index's file, and the server is started again: the
damaged page is then read from disk, as after a storage fault. The container
keeps its data across the restart; Docker may publish a different host port,
so the returned PgServer is the one to use afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import struct
import tarfile

from psycopg import sql

from .postgres import PgServer, wait_until_ready


def corrupt_btree_key(server: PgServer, dbname: str, index: str, old: int, new: int) -> PgServer:
    """Replace the int4 key ``old`` in B-tree ``index`` (a name, schema-qualified if
    need be) of ``dbname`` by ``new`` in its file, with the server stopped.

    Choose ``new`` out of order (larger than the next key) and amcheck reports
    "item order invariant violated". Raises AssertionError when ``old`` does not
    occur exactly once in the file (then no byte is changed).
    """
    with server.connect(dbname) as conn:
        path, datadir = conn.execute(
            sql.SQL("SELECT pg_relation_filepath({}::regclass), current_setting('data_directory')").format(
                sql.Literal(index))).fetchone()
        conn.execute("CHECKPOINT")
    full = posixpath.join(datadir, path)
    container = server.container
    container.stop(timeout=60)
    chunks, _ = container.get_archive(full)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.getmembers()[0]
        data = bytearray(tar.extractfile(member).read())
    needle = struct.pack("<i", old)
    assert data.count(needle) == 1, f"key {old} occurs {data.count(needle)} times in {full}"
    at = data.index(needle)
    data[at:at + 4] = struct.pack("<i", new)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(bytes(data)))
    assert container.put_archive(posixpath.dirname(full), out.getvalue())
    container.start()
    container.reload()
    port = int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
    restarted = dataclasses.replace(server, port=port)
    wait_until_ready(restarted)
    return restarted
