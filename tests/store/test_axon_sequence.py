"""hashes, history, del_ and dels (every backend)."""

from __future__ import annotations

import time
from contextlib import aclosing

import pytest
import trio
from helpers.hashes import sha_digest
from helpers.streams import closable

import axonfs.axon
from axonfs.axon import Axon
from axonfs.errors import BadArg, NoSuchFile
from axonfs.hashing import Sha256
from store.storetools import EMPTY_SHA256, MiB, collect, read_all

A, B, E = b"asdfasdf", b"b" * (MiB + 5), b"eeeeeeee"
BATCH = 7
"""Rows per index scan in the paging tests (the real batch is 1000)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_hashes_of_an_empty_store(axon: Axon) -> None:
    assert await collect(axon.hashes(0)) == []
    assert await collect(axon.hashes(5)) == []


async def test_hashes_rows_in_added_order(axon: Axon) -> None:
    await axon.put(A)
    await axon.put(B)
    rows = await collect(axon.hashes(0))
    assert rows == [(0, (sha_digest(A), 8)), (1, (sha_digest(B), MiB + 5))]
    assert all(isinstance(sha, bytes) for _, (sha, _) in rows)
    assert await collect(axon.hashes(1)) == rows[1:]
    assert await collect(axon.hashes(2)) == []
    assert await collect(axon.hashes(10**9)) == []


async def test_hashes_after_delete_and_readd_shows_old_and_new_rows(axon: Axon) -> None:
    """The reference's probe: put A, put E, del A, del E, put A."""
    await axon.put(A)
    await axon.put(E)
    await axon.del_(sha_digest(A))
    await axon.del_(sha_digest(E))
    await axon.put(A)
    assert await collect(axon.hashes(0)) == [(0, (sha_digest(A), 8)), (2, (sha_digest(A), 8))]
    assert await collect(axon.hashes(1)) == [(2, (sha_digest(A), 8))]
    assert await collect(axon.hashes(2)) == [(2, (sha_digest(A), 8))]
    assert await collect(axon.hashes(3)) == []


async def test_hashes_skips_long_runs_of_deleted_rows(
    axon: Axon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(axonfs.axon, "HASHES_BATCH", BATCH)  # scan in small batches
    blobs = [b"blob %d" % i for i in range(5 * BATCH + 3)]
    await axon.puts(blobs)
    gone = blobs[: 3 * BATCH + 2]  # more than a whole batch of hidden rows
    assert await axon.dels([sha_digest(b) for b in gone]) == [True] * len(gone)
    rows = await collect(axon.hashes(0))
    assert [indx for indx, _ in rows] == list(range(len(gone), len(blobs)))
    assert [sha for _, (sha, _) in rows] == [sha_digest(b) for b in blobs[len(gone) :]]
    assert await collect(axon.hashes(len(blobs) - 1)) == rows[-1:]


async def test_hashes_negative_offset_is_badarg(axon: Axon) -> None:
    """Documented difference: the reference leaks a struct error."""
    with pytest.raises(BadArg):
        await collect(axon.hashes(-1))


async def test_hashes_wait_sees_a_put_from_another_task(axon: Axon) -> None:
    await axon.put(A)
    seen: list[tuple[int, tuple[bytes, int]]] = []

    async def put_later() -> None:
        await trio.sleep(0.2)
        await axon.put(E)
        await trio.sleep(0.1)
        await axon.puts([B, A])  # A is a dedup: no new row

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put_later)
            following = closable(axon.hashes(0, wait=True, timeout=10))
            async with aclosing(following) as rows:
                async for row in rows:
                    seen.append(row)
                    if len(seen) == 3:
                        break
    assert seen == [(0, (sha_digest(A), 8)), (1, (sha_digest(E), 8)), (2, (sha_digest(B), MiB + 5))]


async def test_hashes_wait_from_past_the_end(axon: Axon) -> None:
    await axon.puts([A, E])

    async def put_later() -> None:
        await trio.sleep(0.1)
        await axon.put(b"third")

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put_later)
            following = closable(axon.hashes(2, wait=True, timeout=10))
            async with aclosing(following) as rows:
                first = await rows.__anext__()
    assert first == (2, (sha_digest(b"third"), 5))


async def test_hashes_wait_returns_after_the_timeout(axon: Axon) -> None:
    await axon.put(A)
    start = trio.current_time()
    with trio.fail_after(10):
        rows = await collect(axon.hashes(0, wait=True, timeout=0.3))
    elapsed = trio.current_time() - start
    assert rows == [(0, (sha_digest(A), 8))]
    assert 0.25 <= elapsed < 5


async def test_hashes_timeout_restarts_after_each_new_row(axon: Axon) -> None:
    async def put_slowly() -> None:
        for i in range(3):
            await trio.sleep(0.15)
            await axon.put(b"slow %d" % i)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put_slowly)
            rows = await collect(axon.hashes(0, wait=True, timeout=0.5))
    assert [indx for indx, _ in rows] == [0, 1, 2]


async def test_history_rows_and_bounds(axon: Axon) -> None:
    tick = now_ms()
    await axon.put(A)
    await trio.sleep(0.005)
    await axon.put(B)
    tock = now_ms()
    rows = await collect(axon.history(tick))
    assert [row for _, row in rows] == [(sha_digest(A), 8), (sha_digest(B), MiB + 5)]
    (tick_a, _), (tick_b, _) = rows
    assert tick <= tick_a < tick_b <= tock
    # Both bounds are inclusive.
    assert await collect(axon.history(tick_a, tock=tick_a)) == rows[:1]
    assert await collect(axon.history(tick_b, tock=tick_b)) == rows[1:]
    assert await collect(axon.history(tick_a, tock=tick_b)) == rows
    assert await collect(axon.history(tick_a + 1)) == rows[1:]
    assert await collect(axon.history(tick_a, tock=tick_b - 1)) == rows[:1]
    assert await collect(axon.history(tock + 1)) == []
    assert await collect(axon.history(tick_b, tock=tick_a)) == []
    assert await collect(axon.history(0, tock=1)) == []
    assert await collect(axon.history(0)) == rows


async def test_history_keeps_deleted_rows_and_adds_readded_ones(axon: Axon) -> None:
    await axon.put(A)
    await axon.put(E)
    await axon.del_(sha_digest(A))
    assert [row for _, row in await collect(axon.history(0))] == [
        (sha_digest(A), 8),
        (sha_digest(E), 8),
    ]
    await axon.put(A)
    assert [row for _, row in await collect(axon.history(0))] == [
        (sha_digest(A), 8),
        (sha_digest(E), 8),
        (sha_digest(A), 8),
    ]


async def test_history_of_many_rows_in_one_millisecond_keeps_added_order(
    axon: Axon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(axonfs.axon, "HASHES_BATCH", BATCH)
    blobs = [b"row %d" % i for i in range(5 * BATCH + 3)]
    await axon.puts(blobs)
    rows = await collect(axon.history(0))
    assert [sha for _, (sha, _) in rows] == [sha_digest(b) for b in blobs]
    assert [tick for tick, _ in rows] == sorted(tick for tick, _ in rows)


@pytest.mark.parametrize(("tick", "tock"), [(-1, None), (0, -1)])
async def test_history_negative_bounds_are_badarg(axon: Axon, tick: int, tock: int | None) -> None:
    """Documented difference: the reference leaks an OverflowError."""
    with pytest.raises(BadArg):
        await collect(axon.history(tick, tock))


async def test_del_removes_bytes_row_and_counts(axon: Axon) -> None:
    await axon.puts([A, B])
    assert await axon.del_(sha_digest(B)) is True
    assert await axon.has(sha_digest(B)) is False
    assert await axon.size(sha_digest(B)) is None
    assert await axon.metrics() == {"size:bytes": 8, "file:count": 1}
    assert not await trio.to_thread.run_sync(axon.backend.exists, Sha256(sha_digest(B)))
    await axon.spill_journal()  # small blobs' files are written in batches
    listing = await trio.to_thread.run_sync(lambda: list(axon.backend.list()))
    assert [item.sha256 for item in listing] == [sha_digest(A)]
    with pytest.raises(NoSuchFile):
        await read_all(axon, sha_digest(B))
    with pytest.raises(NoSuchFile):
        await axon.hashset(sha_digest(B))
    # The sequence and history rows stay; hashes() hides them.
    assert axon.index.next_indx() == 2
    assert len(await collect(axon.history(0))) == 2
    assert await collect(axon.hashes(0)) == [(0, (sha_digest(A), 8))]


async def test_del_of_a_missing_blob_is_false(axon: Axon) -> None:
    assert await axon.del_(sha_digest(b"nothing")) is False
    assert await axon.dels([sha_digest(b"nothing")]) == [False]
    assert await axon.dels([]) == []


@pytest.mark.parametrize("bad", [b"", b"short", bytes(33)])
async def test_del_of_a_non_sha256_is_false(axon: Axon, bad: bytes) -> None:
    """Like has(): the reference answers False for anything it does not hold."""
    await axon.put(A)
    assert await axon.del_(bad) is False
    assert await axon.dels([bad, sha_digest(A)]) == [False, True]


async def test_dels_with_duplicates(axon: Axon) -> None:
    await axon.puts([A, E, b""])
    result = await axon.dels([sha_digest(A), sha_digest(A), EMPTY_SHA256, sha_digest(b"never")])
    assert isinstance(result, list)
    assert result == [True, False, True, False]
    assert await axon.metrics() == {"size:bytes": 8, "file:count": 1}


async def test_readd_after_delete_gets_a_new_row(axon: Axon) -> None:
    await axon.put(A)
    await axon.del_(sha_digest(A))
    assert await axon.put(A) == (8, sha_digest(A))
    row = axon.index.get(Sha256(sha_digest(A)))
    assert row is not None and row.indx == 1
    assert await read_all(axon, sha_digest(A)) == A
    assert await axon.metrics() == {"size:bytes": 8, "file:count": 1}
