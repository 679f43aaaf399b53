"""The S3 backend against a real S3-protocol server (moto) on loopback.

Conformance (put, read, ranges, delete, list, ignored keys), the bucket and
prefix layout, multipart uploads, the read cache and readahead, and the
request counters the benchmark reports.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from axonfs.axon import Axon
from axonfs.backends.base import BlobStream
from axonfs.backends.s3 import S3Backend, S3Config, parse_size
from axonfs.errors import BlobMissing
from axonfs.hashing import Sha256

MakeS3 = Callable[..., S3Backend]

MiB = 1 << 20


def spool(tmp_path: Path, data: bytes) -> tuple[Sha256, Path]:
    """Write *data* to a fresh spool file; return its sha256 and path."""
    sha = Sha256(hashlib.sha256(data).digest())
    path = tmp_path / f"spool-{sha.hex()[:12]}"
    path.write_bytes(data)
    return sha, path


def put(backend: S3Backend, tmp_path: Path, data: bytes) -> Sha256:
    sha, path = spool(tmp_path, data)
    backend.put_file(sha, path)
    backend.flush()
    assert not path.exists(), "put_file consumes the spool file"
    return sha


def read_all(backend: S3Backend, sha: Sha256, chunk: int = 128 << 10) -> bytes:
    with backend.open(sha) as reader:
        pieces, offset = [], 0
        while piece := reader.read(offset, chunk):
            pieces.append(piece)
            offset += len(piece)
    return b"".join(pieces)


def test_bucket_created_and_keys_named_by_prefix_and_hex(
    make_s3: MakeS3, raw_s3: Any, bucket: str, tmp_path: Path
) -> None:
    backend = make_s3(prefix="blobs/")
    sha = put(backend, tmp_path, b"hello")
    keys = [item["Key"] for item in raw_s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"blobs/{sha.hex()}"]
    body = raw_s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert body == b"hello"


def test_put_read_ranges(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3(block_size=64 << 10)
    data = os.urandom(300_000)
    sha = put(backend, tmp_path, data)
    assert backend.exists(sha)
    with backend.open(sha) as reader:
        assert reader.size == len(data)
        for offset, size in [
            (0, 10),
            (65_530, 20),
            (1, 299_999),
            (299_990, 100),
            (300_000, 10),
            (400_000, 1),
            (0, 1 << 30),
            (131_072, 65_536),
        ]:
            assert reader.read(offset, size) == data[offset : offset + size], (offset, size)
    assert read_all(backend, sha) == data


def test_empty_blob(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    sha = put(backend, tmp_path, b"")
    with backend.open(sha) as reader:
        assert reader.size == 0
        assert reader.read(0, 100) == b""
    assert [(item.sha256, item.size) for item in backend.list()] == [(sha, 0)]


def test_missing_blob(make_s3: MakeS3) -> None:
    backend = make_s3()
    sha = Sha256(hashlib.sha256(b"never stored").digest())
    assert not backend.exists(sha)
    with pytest.raises(BlobMissing):
        backend.open(sha)
    assert backend.delete(sha) is False


def test_delete(make_s3: MakeS3, raw_s3: Any, bucket: str, tmp_path: Path) -> None:
    backend = make_s3()
    sha = put(backend, tmp_path, b"x" * 5000)
    assert read_all(backend, sha) == b"x" * 5000  # now cached too
    assert backend.delete(sha) is True
    assert not backend.exists(sha)
    assert raw_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    with pytest.raises(BlobMissing):
        backend.open(sha)
    assert backend.delete(sha) is False


def test_put_twice_is_harmless(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    first = put(backend, tmp_path, b"same bytes")
    second = put(backend, tmp_path, b"same bytes")
    assert first == second
    assert [item.sha256 for item in backend.list()] == [first]


def test_list_counts_ignored_keys_and_respects_the_prefix(
    make_s3: MakeS3, raw_s3: Any, bucket: str, tmp_path: Path
) -> None:
    backend = make_s3(prefix="p/")
    blobs = {put(backend, tmp_path, os.urandom(100 + i)): 100 + i for i in range(40)}
    strangers = [
        "p/README",
        "p/:colon",
        "p/0abc",
        "p/" + "A" * 64,
        "p/zzz",
        "p/-dash",
        "p/" + "f" * 63,
        "p/" + "0" * 64 + ".tmp",
        "p/`",
        "p/9~",
    ]
    outside = ["q/" + "0" * 64, "other", "p"]
    for key in strangers + outside:
        raw_s3.put_object(Bucket=bucket, Key=key, Body=b"junk")
    listed = {item.sha256: item.size for item in backend.list()}
    assert listed == blobs
    assert backend.ignored == len(strangers)


def test_list_paginates_every_range(make_s3: MakeS3, raw_s3: Any, bucket: str) -> None:
    """More keys in one hex range than fit a page: the range's listing pages."""
    backend = make_s3(list_page_size=7)
    assert list(backend.list()) == []  # creates the bucket
    names = {"0" + hashlib.sha256(str(i).encode()).hexdigest()[1:] for i in range(50)}
    names |= {hashlib.sha256(str(i).encode()).hexdigest() for i in range(150)}
    with ThreadPoolExecutor(8) as pool:  # a real server takes ~40 ms a PUT
        list(pool.map(lambda name: raw_s3.put_object(Bucket=bucket, Key=name, Body=b""), names))
    assert {item.sha256.hex() for item in backend.list()} == names
    requests = backend.stats().requests
    assert requests["list_objects_v2"] >= 16 + 50 // 7


def test_multipart_upload(make_s3: MakeS3, raw_s3: Any, bucket: str, tmp_path: Path) -> None:
    backend = make_s3(part_size=5 * MiB, upload_parallelism=2)
    data = os.urandom(12 * MiB + 123)
    sha = put(backend, tmp_path, data)
    requests = backend.stats().requests
    assert requests["upload_part"] == 3
    assert requests["complete_multipart_upload"] == 1
    assert raw_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert hashlib.sha256(read_all(backend, sha, 1 * MiB)).digest() == sha
    # A second upload of the same blob finds it stored and sends no part.
    sha_again = put(backend, tmp_path, data)
    assert sha_again == sha and backend.stats().requests["upload_part"] == 3


def test_small_random_read_fetches_one_block(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3(block_size=256 << 10)
    data = os.urandom(8 * MiB)
    sha = put(backend, tmp_path, data)
    fresh = make_s3(block_size=256 << 10, cache_dir=tmp_path / "other-cache")
    with fresh.open(sha) as reader:
        before = fresh.stats()
        offset = 5 * MiB + 1000
        assert reader.read(offset, 4096) == data[offset : offset + 4096]
        after = fresh.stats()
    assert after.requests.get("get_object", 0) - before.requests.get("get_object", 0) == 1
    assert after.bytes_received - before.bytes_received == 256 << 10
    assert fresh.stats().requests.get("head_object") == 1  # open: size unknown here


def test_second_read_is_served_from_the_cache(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    data = os.urandom(6 * MiB)
    sha = put(backend, tmp_path, data)
    assert read_all(backend, sha) == data
    gets = backend.stats().requests["get_object"]
    assert read_all(backend, sha) == data
    assert backend.stats().requests["get_object"] == gets
    # A restarted backend on the same cache opens and reads it with no request.
    again = make_s3()
    assert read_all(again, sha) == data
    assert again.stats().total_requests == 0


def test_cache_is_capped_lru(make_s3: MakeS3, tmp_path: Path) -> None:
    block = 64 << 10
    backend = make_s3(block_size=block, cache_size=10 * block)
    old = os.urandom(6 * block)
    new = os.urandom(6 * block)
    sha_old, sha_new = put(backend, tmp_path, old), put(backend, tmp_path, new)
    assert read_all(backend, sha_old, block) == old
    assert read_all(backend, sha_new, block) == new
    stats = backend.stats().cache
    assert stats.bytes <= 10 * block and stats.evictions >= 2
    cached = [path.stat().st_size for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert sum(cached) == stats.bytes
    # The newest blob is whole in the cache; the oldest lost its first blocks.
    gets = backend.stats().requests["get_object"]
    assert read_all(backend, sha_new, block) == new
    assert backend.stats().requests["get_object"] == gets


def test_no_cache(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3(cache_size=0)
    data = os.urandom(3 * MiB + 5)
    sha = put(backend, tmp_path, data)
    assert read_all(backend, sha) == data
    assert read_all(backend, sha) == data
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_sequential_reads_read_ahead(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3(block_size=256 << 10, readahead_blocks=4)
    data = os.urandom(4 * MiB)
    sha = put(backend, tmp_path, data)
    fresh = make_s3(block_size=256 << 10, readahead_blocks=4, cache_dir=tmp_path / "c2")
    assert read_all(fresh, sha, 64 << 10) == data
    stats = fresh.stats()
    assert stats.bytes_received == len(data)  # every block fetched exactly once ...
    assert stats.requests["get_object"] < 16  # ... several per GET ...
    assert stats.cache.hits > 0  # ... mostly before the reader got to it


def test_readahead_uses_few_requests_for_a_long_sequential_read(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    backend = make_s3(block_size=64 << 10, readahead_blocks=16)
    data = os.urandom(16 * MiB)  # 256 blocks
    sha = put(backend, tmp_path, data)
    fresh = make_s3(block_size=64 << 10, readahead_blocks=16, cache_dir=tmp_path / "c2")
    assert read_all(fresh, sha, 128 << 10) == data
    stats = fresh.stats()
    assert stats.bytes_received == len(data)
    assert stats.requests["get_object"] <= 256 // 8 + 16


def test_corrupt_cache_block_is_refetched(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    data = os.urandom(100_000)
    sha = put(backend, tmp_path, data)
    assert read_all(backend, sha) == data
    (block_file,) = [p for p in (tmp_path / "cache").rglob(sha.hex() + "*")]
    block_file.write_bytes(b"short")
    again = make_s3()
    assert read_all(again, sha) == data


def test_stats_count_requests_per_small_blob(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    put(backend, tmp_path, b"warm up: bucket check")
    before = backend.stats().total_requests
    for i in range(10):
        put(backend, tmp_path, b"blob %d" % i)
    assert backend.stats().total_requests - before == 10  # one PUT each


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        S3Config(bucket="")
    with pytest.raises(ValueError):
        S3Config(bucket="b", part_size=1 * MiB)
    assert parse_size("64M") == 64 * MiB
    assert parse_size("10GiB") == 10 << 30
    assert parse_size("512") == 512
    with pytest.raises(ValueError):
        parse_size("lots")


def read_stream(stream: BlobStream) -> bytes:
    pieces = []
    try:
        while batch := stream.next_pieces():
            pieces.extend(batch)
    finally:
        stream.close()
    return b"".join(pieces)


def test_a_streamed_range_is_one_request_and_fills_the_cache(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    block = 256 << 10
    backend = make_s3(block_size=block)
    data = os.urandom(4 * MiB + 1234)
    sha = put(backend, tmp_path, data)
    fresh = make_s3(block_size=block, cache_dir=tmp_path / "other-cache")
    start, end = 100_000, len(data) - 100  # neither on a block boundary
    stream = fresh.stream(sha, len(data), start, end)
    assert stream is not None
    assert read_stream(stream) == data[start:end]
    assert fresh.stats().requests.get("get_object") == 1
    # Closed after its end, the stream has cached every block it fetched: the
    # whole blob (the range rounded out to blocks) reads back with no request.
    gets = fresh.stats().requests["get_object"]
    assert read_all(fresh, sha) == data
    assert fresh.stats().requests["get_object"] == gets
    # A range whose first block is cached is the block reader's again.
    assert fresh.stream(sha, len(data), 0, len(data)) is None


def test_a_stream_given_up_midway_stops_and_leaves_whole_blocks(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    block = 64 << 10
    backend = make_s3(block_size=block)
    data = os.urandom(8 * MiB)  # 128 blocks: far more than the stream runs ahead
    sha = put(backend, tmp_path, data)
    fresh = make_s3(block_size=block, cache_dir=tmp_path / "other-cache")
    stream = fresh.stream(sha, len(data), 0, len(data))
    assert stream is not None
    first = stream.next_pieces()
    assert first and data.startswith(b"".join(first))
    stream.close()
    assert stream.next_pieces() == []
    # Whatever it cached is whole: every read gives the blob's own bytes.
    assert read_all(fresh, sha, block) == data
    assert fresh.stats().bytes_received < 2 * len(data)


def test_a_stream_of_a_missing_blob_fails_where_it_is_read(make_s3: MakeS3, tmp_path: Path) -> None:
    backend = make_s3()
    put(backend, tmp_path, b"another blob")  # the bucket exists
    sha = Sha256(hashlib.sha256(b"never stored").digest())
    stream = backend.stream(sha, 20 * MiB, 0, 20 * MiB)
    assert stream is not None
    with pytest.raises(BlobMissing):
        read_stream(stream)


async def test_a_whole_get_streams_one_request_then_reads_the_cache(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    backend = make_s3(cache_dir=store / "cache")
    data = os.urandom(12 * MiB + 7)
    async with Axon.open(store, backend=backend) as axon:
        size, sha = await axon.put(data)
        assert size == len(data)
        backend.cache.discard(sha.hex())  # as if read first on another host
        gets = backend.stats().requests.get("get_object", 0)
        assert b"".join([piece async for piece in axon.get(sha)]) == data
        assert backend.stats().requests["get_object"] == gets + 1
        assert b"".join([piece async for piece in axon.get(sha)]) == data  # from the cache
        offs = 3 * MiB + 11
        ranged = b"".join([piece async for piece in axon.get(sha, offs, 9 * MiB)])
        assert ranged == data[offs : offs + 9 * MiB]
        assert backend.stats().requests["get_object"] == gets + 1
