"""put, puts, upload, dedup and concurrent writes (run against every backend)."""

from __future__ import annotations

import random

import pytest
import trio
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.errors import NoSuchFile
from axonfs.hashing import Sha256
from store.storetools import EMPTY_SHA256, MiB, OpenAxon, collect, read_all, spool_files


async def test_put_returns_size_and_raw_sha256(axon: Axon) -> None:
    result = await axon.put(b"asdfqwer")
    assert result == (8, sha_digest(b"asdfqwer"))
    assert isinstance(result, tuple) and isinstance(result[1], bytes) and len(result[1]) == 32
    assert await read_all(axon, result[1]) == b"asdfqwer"


async def test_puts_keeps_order_and_duplicates(axon: Axon) -> None:
    files = [b"asdf", b"qwer", b"asdf", b"", b"zxcv"]
    result = await axon.puts(files)
    assert isinstance(result, list)
    assert result == [(len(f), sha_digest(f)) for f in files]
    assert await axon.metrics() == {"size:bytes": 12, "file:count": 4}
    assert await axon.puts([]) == []


async def test_put_empty_blob(axon: Axon) -> None:
    assert await axon.put(b"") == (0, EMPTY_SHA256)
    assert await axon.has(EMPTY_SHA256) is True
    assert await axon.size(EMPTY_SHA256) == 0
    assert await collect(axon.get(EMPTY_SHA256)) == []
    assert await axon.metrics() == {"size:bytes": 0, "file:count": 1}
    assert await collect(axon.hashes(0)) == [(0, (EMPTY_SHA256, 0))]


async def test_upload_is_reusable_for_several_files(axon: Axon) -> None:
    await axon.put(b"asdfqwer")
    rng = random.Random(7)
    big = rng.randbytes(3 * MiB + 17)
    files = [b"asdfqwer", b"pennywise", big, b"after the big one", b"", b"pennywise"]
    async with await axon.upload() as upload:
        for data in files:
            # Uneven writes, including empty ones and ones above the inline threshold.
            offset = 0
            while offset < len(data):
                step = rng.choice([0, 1, 7, 4096, 100_000, MiB])
                await upload.write(data[offset : offset + step])
                offset += step
            assert await upload.save() == (len(data), sha_digest(data))
    for data in files:
        assert await read_all(axon, sha_digest(data)) == data
    distinct = set(files)
    assert await axon.metrics() == {
        "size:bytes": sum(map(len, distinct)),
        "file:count": len(distinct),
    }
    assert spool_files(axon.store.root) == []


async def test_upload_save_without_writes_stores_the_empty_blob(axon: Axon) -> None:
    async with await axon.upload() as upload:
        assert await upload.save() == (0, EMPTY_SHA256)
        assert await upload.save() == (0, EMPTY_SHA256)
    assert await axon.has(EMPTY_SHA256)
    assert await axon.metrics() == {"size:bytes": 0, "file:count": 1}


async def test_upload_discards_unsaved_bytes_on_exit(axon: Axon) -> None:
    async with await axon.upload() as upload:
        await upload.write(b"saved")
        await upload.save()
        await upload.write(b"never saved")
        await upload.write(b"x" * (2 * MiB))
    assert await axon.has(sha_digest(b"saved"))
    assert not await axon.has(sha_digest(b"never saved"))
    assert not await axon.has(sha_digest(b"never saved" + b"x" * (2 * MiB)))
    assert await axon.metrics() == {"size:bytes": 5, "file:count": 1}
    assert spool_files(axon.store.root) == []


async def test_upload_discards_on_error(axon: Axon) -> None:
    with pytest.raises(RuntimeError):
        async with await axon.upload() as upload:
            await upload.write(b"half a file")
            raise RuntimeError("the client went away")
    assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}
    assert spool_files(axon.store.root) == []


async def test_dedup_adds_no_row_and_no_bytes(axon: Axon) -> None:
    first = await axon.put(b"same bytes")
    rows_before = await collect(axon.hashes(0))
    history_before = await collect(axon.history(0))
    assert await axon.put(b"same bytes") == first
    assert await axon.puts([b"same bytes", b"same bytes"]) == [first, first]
    async with await axon.upload() as upload:
        await upload.write(b"same ")
        await upload.write(b"bytes")
        assert await upload.save() == first
    assert await collect(axon.hashes(0)) == rows_before
    assert await collect(axon.history(0)) == history_before
    assert axon.index.next_indx() == 1
    assert await axon.metrics() == {"size:bytes": 10, "file:count": 1}
    await axon.spill_journal()  # small blobs' files are written in batches
    listing = await trio.to_thread.run_sync(lambda: list(axon.backend.list()))
    assert [(item.sha256, item.size) for item in listing] == [(first[1], 10)]
    assert spool_files(axon.store.root) == []


async def test_dedup_survives_reopen(open_axon: OpenAxon) -> None:
    async with open_axon() as axon:
        first = await axon.put(b"kept across restarts")
    async with open_axon() as axon:
        assert await axon.put(b"kept across restarts") == first
        assert await axon.metrics() == {"size:bytes": 20, "file:count": 1}
        assert len(await collect(axon.hashes(0))) == 1


async def test_fifty_concurrent_puts_of_the_same_content(axon: Axon) -> None:
    data = random.Random(1).randbytes(300_000)
    results: list[tuple[int, bytes]] = []

    async def put() -> None:
        results.append(await axon.put(data))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(put)
    assert results == [(len(data), sha_digest(data))] * 50
    assert await axon.metrics() == {"size:bytes": len(data), "file:count": 1}
    assert await collect(axon.hashes(0)) == [(0, (sha_digest(data), len(data)))]
    assert len(await collect(axon.history(0))) == 1
    await axon.spill_journal()  # small blobs' files are written in batches
    listing = await trio.to_thread.run_sync(lambda: list(axon.backend.list()))
    assert len(listing) == 1
    assert await read_all(axon, sha_digest(data)) == data
    assert spool_files(axon.store.root) == []


async def test_fifty_concurrent_puts_of_different_content(axon: Axon) -> None:
    rng = random.Random(2)
    blobs = [rng.randbytes(rng.randrange(0, 200_000)) for _ in range(50)]
    results: dict[int, tuple[int, bytes]] = {}

    async def put(i: int) -> None:
        results[i] = await axon.put(blobs[i])

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(put, i)
    assert [results[i] for i in range(50)] == [(len(b), sha_digest(b)) for b in blobs]
    assert await axon.metrics() == {"size:bytes": sum(map(len, blobs)), "file:count": 50}
    rows = await collect(axon.hashes(0))
    assert [indx for indx, _ in rows] == list(range(50))
    assert sorted(row for _, row in rows) == sorted((sha_digest(b), len(b)) for b in blobs)
    for data in blobs:
        assert await read_all(axon, sha_digest(data)) == data
    assert spool_files(axon.store.root) == []


async def test_concurrent_puts_and_deletes_keep_counters_exact(axon: Axon) -> None:
    rng = random.Random(3)
    blobs = [rng.randbytes(rng.randrange(1, 50_000)) for _ in range(30)]
    await axon.puts(blobs[:15])

    async def delete(data: bytes) -> None:
        await axon.del_(sha_digest(data))

    async def put(data: bytes) -> None:
        await axon.put(data)

    async with trio.open_nursery() as nursery:
        for data in blobs[:15]:
            nursery.start_soon(delete, data)
        for data in blobs[15:]:
            nursery.start_soon(put, data)
    for data in blobs[:15]:
        assert not await axon.has(sha_digest(data))
        assert not await trio.to_thread.run_sync(axon.backend.exists, Sha256(sha_digest(data)))
    for data in blobs[15:]:
        assert await read_all(axon, sha_digest(data)) == data
    assert await axon.metrics() == {"size:bytes": sum(map(len, blobs[15:])), "file:count": 15}


async def test_deleted_then_readded_in_one_group(axon: Axon) -> None:
    """A delete and a re-add of the same blob committed together leave it present."""
    await axon.put(b"flip flop")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(axon.del_, sha_digest(b"flip flop"))
        nursery.start_soon(axon.put, b"flip flop")
    # Whatever order they committed in, the index and the bytes agree.
    if await axon.has(sha_digest(b"flip flop")):
        assert await read_all(axon, sha_digest(b"flip flop")) == b"flip flop"
        assert await axon.metrics() == {"size:bytes": 9, "file:count": 1}
    else:
        with pytest.raises(NoSuchFile):
            await read_all(axon, sha_digest(b"flip flop"))
        assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}
