"""The streamed tar archive that copies dumps into containers."""

from __future__ import annotations

import io
import tarfile

import pytest

from maintainer.dockerapi import tar_stream
from maintainer.errors import JobError

pytestmark = pytest.mark.unit


def test_a_streamed_archive_reads_back_with_tarfile():
    data = b"x" * 1500 + b"y" * 700
    archive = b"".join(tar_stream([("d", 0, None), ("d/dump", len(data), [data[:1000], data[1000:]]),
                                   ("d/ready", 0, [])]))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        assert names == ["d", "d/dump", "d/ready"]
        assert tar.getmember("d").isdir()
        assert tar.extractfile("d/dump").read() == data
        assert tar.extractfile("d/ready").read() == b""


@pytest.mark.parametrize("chunks", [[b"abc"], [b"abcdef", b"g"]])
def test_a_size_that_does_not_match_the_chunks_is_an_error(chunks):
    with pytest.raises(JobError):
        b"".join(tar_stream([("f", 5, chunks)]))
