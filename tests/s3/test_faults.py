"""S3 outages: uploads fail cleanly, reads fail with EIO, and all recovers.

A :class:`TcpProxy` stands between the backend and the S3 server and is
stopped to simulate the server going away (clients get "connection refused",
connections in flight are cut) while the server keeps its state, so the
tests can look at what a failed upload left behind.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from helpers.s3server import S3Server, TcpProxy

from axonfs.axon import Axon
from axonfs.backends.retry import RetryPolicy, call_with_retry, is_transient
from axonfs.backends.s3 import S3Backend
from axonfs.errors import BackendError
from axonfs.hashing import Sha256

MakeS3 = Callable[..., S3Backend]
MiB = 1 << 20


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(s3_server.port, s3_server.scheme)
    forwarder.start()
    yield forwarder
    forwarder.stop()


async def read_blob(axon: Axon, sha: bytes) -> bytes:
    return b"".join([piece async for piece in axon.get(sha)])


async def test_server_lost_mid_multipart_upload(
    make_s3: MakeS3, proxy: TcpProxy, raw_s3: Any, bucket: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    backend = make_s3(endpoint=proxy.endpoint, part_size=5 * MiB, upload_parallelism=2)
    big = os.urandom(40 * MiB)
    big_sha = hashlib.sha256(big).digest()
    async with Axon.open(store, backend=backend) as axon:
        _, small_sha = await axon.put(b"before the outage")
        metrics = await axon.metrics()
        proxy.cut_after(12 * MiB)  # the server "dies" during the third part
        with pytest.raises(BackendError) as failure:
            await axon.put(big)
        assert failure.value.errno == errno.EIO
        assert proxy.cut.is_set()
        # Nothing committed, no spool left behind.
        assert not await axon.has(big_sha)
        assert await axon.metrics() == metrics
        assert not list((store / "tmp").iterdir())
        # The upload could not be aborted while the server was away ...
        uploads = raw_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert len(uploads) == 1
        assert raw_s3.list_parts(
            Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
        ).get("Parts")
        # ... and while it is still away, commits keep failing cleanly.
        with pytest.raises(BackendError):
            await axon.put(b"during the outage")
        proxy.start()
        # The server is back: the next commit works and the abort goes through.
        _, later_sha = await axon.put(b"after the outage")
        assert raw_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert await axon.put(big) == (len(big), big_sha)
        assert await read_blob(axon, big_sha) == big
        assert await read_blob(axon, small_sha) == b"before the outage"
        assert await read_blob(axon, later_sha) == b"after the outage"
    keys = {item["Key"] for item in raw_s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {sha.hex() for sha in (small_sha, later_sha, big_sha)}
    assert backend.stats().retries > 0


async def test_reads_fail_with_eio_while_away_and_cached_blobs_still_read(
    make_s3: MakeS3, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    async with Axon.open(
        store, backend=make_s3(endpoint=proxy.endpoint, cache_dir=store / "cache")
    ) as axon:
        _, cached = await axon.put(b"read once, so cached" * 1000)
        _, uncached = await axon.put(b"never read" * 1000)
        assert await read_blob(axon, cached) == b"read once, so cached" * 1000
    # A restarted daemon: nothing memoized, only the cache on disk.
    async with Axon.open(
        store, backend=make_s3(endpoint=proxy.endpoint, cache_dir=store / "cache")
    ) as axon:
        proxy.stop()
        assert await read_blob(axon, cached) == b"read once, so cached" * 1000
        with (
            caplog.at_level(logging.ERROR, logger="axonfs.backends.s3"),
            pytest.raises(BackendError) as failure,
        ):
            await read_blob(axon, uncached)
        assert failure.value.errno == errno.EIO
        assert uncached.hex() in caplog.text
        assert await axon.has(uncached)  # the index answers without S3
        proxy.start()
        assert await read_blob(axon, uncached) == b"never read" * 1000


def test_outage_at_start_up_is_retried_later(
    make_s3: MakeS3, proxy: TcpProxy, tmp_path: Path
) -> None:
    proxy.stop()
    backend = make_s3(endpoint=proxy.endpoint)
    spool = tmp_path / "spool"
    spool.write_bytes(b"data")
    sha = Sha256(hashlib.sha256(b"data").digest())
    with pytest.raises(BackendError):
        backend.put_file(sha, spool)
    assert spool.exists()
    proxy.start()
    backend.put_file(sha, spool)
    assert backend.exists(sha)


def test_retry_policy() -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)
    failures = [EndpointConnectionError(endpoint_url="http://x")] * 2
    seen: list[BaseException] = []

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert call_with_retry(flaky, policy=policy, what="test", on_retry=seen.append) == "ok"
    assert len(seen) == 2
    denied = ClientError(
        {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "GetObject",
    )
    slow = ClientError(
        {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"
    )
    assert not is_transient(denied) and is_transient(slow)
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise denied

    with pytest.raises(ClientError):
        call_with_retry(refused, policy=policy, what="test")
    assert calls == 1
