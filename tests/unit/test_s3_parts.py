"""The S3 writer's part plan with a small fake client: pure logic (sizes, order,
buffer reuse). The real upload path is covered by the storage contract suite
against a moto server."""

from __future__ import annotations

import pytest

from maintainer.config.models import StorageSpec
from maintainer.storage import s3_writer
from maintainer.storage.s3 import S3Storage
from maintainer.storage.s3_writer import part_size_for

pytestmark = pytest.mark.unit


class FakeS3:
    def __init__(self):
        self.parts: list[tuple[int, bytes]] = []
        self.completed: list[int] | None = None
        self.buffers: set[int] = set()

    def create_multipart_upload(self, **kw):
        return {"UploadId": "u1"}

    def put_object(self, **kw):  # the upload's owner record (see storage.owner)
        pass

    def delete_object(self, **kw):
        pass

    def upload_part(self, *, PartNumber, Body, **kw):
        assert isinstance(Body, bytearray)  # a bytes body would be copied again by botocore
        self.buffers.add(id(Body))
        self.parts.append((PartNumber, bytes(Body)))
        return {"ETag": f"e{PartNumber}"}

    def complete_multipart_upload(self, *, MultipartUpload, **kw):
        self.completed = [p["PartNumber"] for p in MultipartUpload["Parts"]]

    def abort_multipart_upload(self, **kw):
        pass


def test_parts_double_every_so_many_to_reach_far_beyond_ten_thousand_base_parts():
    base = 5 * 1024 * 1024
    assert part_size_for(1, base) == part_size_for(2000, base) == base
    assert part_size_for(2001, base) == 2 * base
    assert part_size_for(10_000, base) == 16 * base
    total = sum(part_size_for(n, base) for n in range(1, 10_001))
    assert total == 31 * 2000 * base  # about 300 GiB at 5 MiB


def test_the_writer_fills_two_reused_buffers_and_grows_parts_on_schedule(monkeypatch):
    monkeypatch.setattr(s3_writer, "DOUBLE_EVERY", 3)
    fake = FakeS3()
    storage = S3Storage("t", StorageSpec(url="s3://bucket/p"), client=fake)
    storage.part_size = 1000
    data = bytes(range(256)) * 100  # 25,600 bytes
    with storage.open_writer("x") as writer:
        for i in range(0, len(data), 777):
            writer.write(data[i:i + 777])
    sizes = [len(body) for _, body in fake.parts]
    # 3 x 1000, 3 x 2000, 3 x 4000, then 8000 parts; the last holds the rest.
    assert sizes == [1000] * 3 + [2000] * 3 + [4000] * 3 + [4600]
    assert b"".join(body for _, body in fake.parts) == data
    assert fake.completed == list(range(1, 11))
    # Buffers are reused while the size holds: far fewer distinct buffers than parts.
    assert len(fake.buffers) <= 2 * 4


def test_small_objects_go_up_in_one_put_without_a_part_buffer():
    calls = []

    class Client(FakeS3):
        def put_object(self, *, Key, Body, **kw):
            calls.append((Key, bytes(Body)))

    storage = S3Storage("t", StorageSpec(url="s3://bucket/p"), client=Client())
    info = storage.put("a/manifest.json", b'{"id": 1}')
    assert calls == [("p/a/manifest.json", b'{"id": 1}')] and info.size == 9
