"""``Axon.recover`` over the S3 backend: shared buckets, lost and partial indexes.

Each store keeps its own LMDB index; the bucket is what they share. Recover
lists the bucket and adopts what the index lacks without downloading or
re-uploading anything (``verify=False``: the reference's recoverIndices does
not check contents either).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from axonfs.axon import Axon
from axonfs.backends.s3 import S3Backend

MakeS3 = Callable[..., S3Backend]


async def read_blob(axon: Axon, sha: bytes) -> bytes:
    return b"".join([piece async for piece in axon.get(sha)])


def blobs(count: int, seed: str) -> list[bytes]:
    """*count* distinct blobs of assorted sizes, one of them multipart-sized."""
    found = [hashlib.sha256(f"{seed}{i}".encode()).digest() * (1 + i * 37) for i in range(count)]
    found.append(os.urandom(6 << 20))
    return found


async def test_second_store_sees_first_stores_blobs_after_recover(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    data = blobs(20, "a")
    async with Axon.open(
        tmp_path / "a", backend=make_s3(cache_dir=tmp_path / "a/cache", part_size=5 << 20)
    ) as host_a:
        stored = [sha for _, sha in await host_a.puts(data)]
    backend_b = make_s3(cache_dir=tmp_path / "b/cache")
    async with Axon.open(tmp_path / "b", backend=backend_b) as host_b:
        assert await host_b.wants(stored) == stored
        progress: list[tuple[int, int]] = []
        report = await host_b.recover(verify=False, progress=lambda *done: progress.append(done))
        assert (report.listed, report.added, report.skipped) == (len(data), len(data), 0)
        assert progress and progress[-1] == (len(data), len(data))
        assert backend_b.stats().requests.get("get_object", 0) == 0  # nothing downloaded
        assert await host_b.wants(stored) == []
        for sha, expected in zip(stored, data, strict=True):
            assert await read_blob(host_b, sha) == expected
        assert await host_b.metrics() == {
            "size:bytes": sum(map(len, data)),
            "file:count": len(data),
        }
        # Host B adds a blob; host A sees it after its own recover.
        _, sha_b = await host_b.put(b"from host b")
    async with Axon.open(tmp_path / "a", backend=make_s3(cache_dir=tmp_path / "a/cache")) as host_a:
        report = await host_a.recover(verify=False)
        assert (report.added, report.skipped) == (1, len(data))
        assert await read_blob(host_a, sha_b) == b"from host b"


async def test_lost_index_is_rebuilt_and_every_blob_reads_back(
    make_s3: MakeS3, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    data = blobs(30, "lost")
    async with Axon.open(
        store, backend=make_s3(part_size=5 << 20, cache_dir=store / "cache")
    ) as axon:
        stored = [sha for _, sha in await axon.puts(data)]
        metrics = await axon.metrics()
        assert await read_blob(axon, stored[-1]) == data[-1]  # fills the read cache
    shutil.rmtree(store / "index.lmdb")
    shutil.rmtree(store / "cache")
    async with Axon.open(store, backend=make_s3(cache_dir=store / "cache")) as axon:
        assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}
        report = await axon.recover(verify=False)
        assert (report.added, report.skipped, report.ignored) == (len(data), 0, 0)
        assert await axon.metrics() == metrics
        for sha, expected in zip(stored, data, strict=True):
            assert await read_blob(axon, sha) == expected
        hashed = [sha async for _, (sha, _) in axon.hashes(0)]
        assert sorted(hashed) == sorted(stored)


async def test_recover_on_a_partial_index_adds_only_what_is_missing(
    make_s3: MakeS3, raw_s3: object, bucket: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    older, newer = blobs(10, "old"), [b"new blob %d" % i for i in range(7)]
    async with Axon.open(store, backend=make_s3()) as axon:
        await axon.puts(older)
    shutil.copytree(store / "index.lmdb", tmp_path / "backup.lmdb")
    async with Axon.open(store, backend=make_s3()) as axon:
        new_shas = [sha for _, sha in await axon.puts(newer)]
    shutil.rmtree(store / "index.lmdb")
    shutil.copytree(tmp_path / "backup.lmdb", store / "index.lmdb")
    raw_s3.put_object(Bucket=bucket, Key="not-a-blob", Body=b"x")  # type: ignore[attr-defined]
    async with Axon.open(store, backend=make_s3()) as axon:
        assert await axon.wants(new_shas) == new_shas
        before = [row async for row in axon.hashes(0)]
        report = await axon.recover(verify=False)
        assert (report.added, report.skipped, report.ignored) == (len(newer), len(older), 1)
        after = [row async for row in axon.hashes(0)]
        assert after[: len(before)] == before  # old rows untouched, new ones appended
        assert sorted(sha for _, (sha, _) in after[len(before) :]) == sorted(new_shas)
        # Running it again (after an interruption, say) changes nothing.
        again = await axon.recover(verify=False)
        assert (again.added, again.skipped) == (0, len(older) + len(newer))
        for sha, expected in zip(new_shas, newer, strict=True):
            assert await read_blob(axon, sha) == expected


async def test_recover_with_verify_rejects_a_corrupt_object(
    make_s3: MakeS3, raw_s3: object, bucket: str, tmp_path: Path
) -> None:
    async with Axon.open(tmp_path / "store", backend=make_s3()) as axon:
        assert (await axon.recover(verify=True)).listed == 0  # creates the bucket
        good = b"good bytes"
        fake = hashlib.sha256(b"what the name promises").hexdigest()
        raw_s3.put_object(  # type: ignore[attr-defined]
            Bucket=bucket, Key=hashlib.sha256(good).hexdigest(), Body=good
        )
        raw_s3.put_object(Bucket=bucket, Key=fake, Body=b"other bytes")  # type: ignore[attr-defined]
        report = await axon.recover(verify=True)
        assert (report.added, report.corrupt) == (1, [fake])
