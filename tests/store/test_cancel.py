"""Cancellation at any checkpoint leaves the store consistent and leaks nothing (every backend)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import trio
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from store.storetools import MiB, OpenAxon, collect, read_all, spool_files


async def test_a_cancelled_caller_still_closes_the_store(open_axon: OpenAxon) -> None:
    with trio.CancelScope() as scope:
        async with open_axon() as axon:
            await axon.put(b"before the cancel")
            scope.cancel()
            await trio.sleep_forever()
    async with open_axon() as axon:  # the lock was released: we can open it again
        assert await axon.has(sha_digest(b"before the cancel"))


async def test_a_cancelled_upload_leaves_no_spool(axon: Axon, store_dir: Path) -> None:
    with trio.move_on_after(0.05):
        async with await axon.upload() as upload:
            await upload.write(b"x" * (3 * MiB))
            await trio.sleep_forever()
    assert spool_files(store_dir) == []
    assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}


async def test_writes_cancelled_at_random_moments(axon: Axon, store_dir: Path) -> None:
    rng = random.Random(12)

    async def upload(data: bytes) -> None:
        async with await axon.upload() as up:
            for offset in range(0, len(data), 700_000):
                await up.write(data[offset : offset + 700_000])
            await up.save()

    for _ in range(40):
        data = rng.randbytes(rng.randrange(0, 3 * MiB))
        roll = rng.random()
        with trio.move_on_after(rng.uniform(0, 0.02)):
            if roll < 0.4:
                await axon.put(data)
            elif roll < 0.7:
                await upload(data)
            elif roll < 0.85:
                await axon.puts([data[:1000], data[1000:5000]])
            else:
                rows = await collect(axon.hashes(0))
                await axon.dels([sha for _, (sha, _) in rows[:2]])
    # Nothing leaked, nothing half-done, and the store still works.
    assert spool_files(store_dir) == []
    rows = await collect(axon.hashes(0))
    for _, (sha, size) in rows:
        data = await read_all(axon, sha)
        assert len(data) == size and hashlib.sha256(data).digest() == sha
    assert await axon.metrics() == {
        "size:bytes": sum(size for _, (_, size) in rows),
        "file:count": len(rows),
    }
    await axon.spill_journal()  # small blobs' files are written in batches
    listing = await trio.to_thread.run_sync(lambda: list(axon.backend.list()))
    assert sorted(item.sha256 for item in listing) == sorted(sha for _, (sha, _) in rows)
    assert await axon.put(b"still works") == (11, sha_digest(b"still works"))


async def test_a_cancelled_waiter_on_hashes_is_fine(axon: Axon) -> None:
    with trio.move_on_after(0.1):
        await collect(axon.hashes(0, wait=True))
    await axon.put(b"after")
    assert await collect(axon.hashes(0)) == [(0, (sha_digest(b"after"), 5))]
