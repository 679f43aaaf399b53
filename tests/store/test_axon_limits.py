"""max_bytes / max_count, as the reference probes them (every backend); a blob that would
take the store past max_bytes is refused, where the reference lets it through."""

from __future__ import annotations

import pytest
import trio
from helpers.hashes import sha_digest

from axonfs.errors import HitLimit
from axonfs.store.store import Limits
from store.storetools import OpenAxon, collect, spool_files


async def test_max_count(open_axon: OpenAxon) -> None:
    async with open_axon(Limits(max_count=10)) as axon:
        for i in range(10):
            await axon.put(b"file %d" % i)
        with pytest.raises(HitLimit) as caught:
            await axon.put(b"one too many")
        assert caught.value.message == "Axon is at file:count limit: 10"
        assert not await axon.has(sha_digest(b"one too many"))
        assert await axon.metrics() == {"size:bytes": 60, "file:count": 10}
        assert len(await collect(axon.hashes(0))) == 10
        assert spool_files(axon.store.root) == []
        # Deleting lowers the counters, so puts succeed again.
        assert await axon.del_(sha_digest(b"file 0")) is True
        assert await axon.put(b"one too many") == (12, sha_digest(b"one too many"))
        with pytest.raises(HitLimit):
            await axon.put(b"and another")


async def test_max_bytes_of_320_holds_ten_32_byte_files(open_axon: OpenAxon) -> None:
    async with open_axon(Limits(max_bytes=320)) as axon:
        for i in range(10):
            await axon.put(b"%032d" % i)
        with pytest.raises(HitLimit) as caught:
            await axon.put(b"%032d" % 10)
        assert caught.value.message == "Axon is at size:bytes limit: 320"
        assert await axon.metrics() == {"size:bytes": 320, "file:count": 10}


async def test_a_save_that_would_cross_max_bytes_is_refused(open_axon: OpenAxon) -> None:
    """Unlike the reference (which checks only the total so far), a blob that
    would take the store past max_bytes is refused: df shows the limit as the
    mount's size, and one large blob must not overshoot it."""
    async with open_axon(Limits(max_bytes=10)) as axon:
        await axon.put(b"8 bytes!")
        with pytest.raises(HitLimit) as caught:
            await axon.put(b"8 more!!")
        assert caught.value.message == (
            "a blob of 8 bytes would pass the size:bytes limit: 10 (2 bytes left)"
        )
        with pytest.raises(HitLimit):
            async with await axon.upload() as upload:
                await upload.write(b"third, streamed")
                await upload.save()
        await axon.put(b"2!")  # exactly up to the limit
        assert await axon.metrics() == {"size:bytes": 10, "file:count": 2}
        with pytest.raises(HitLimit) as caught:
            await axon.put(b"")
        assert caught.value.message == "Axon is at size:bytes limit: 10"
        await axon.spill_journal()  # small blobs' files are written in batches
        listing = list(axon.backend.list())
        assert sorted(item.sha256 for item in listing) == sorted(
            [sha_digest(b"8 bytes!"), sha_digest(b"2!")]
        )


async def test_dedup_succeeds_at_the_limit(open_axon: OpenAxon) -> None:
    async with open_axon(Limits(max_count=1, max_bytes=12)) as axon:
        first = await axon.put(b"already here")
        assert await axon.put(b"already here") == first
        assert await axon.puts([b"already here"]) == [first]
        async with await axon.upload() as upload:
            await upload.write(b"already here")
            assert await upload.save() == first
        with pytest.raises(HitLimit):
            await axon.put(b"new")
        assert await axon.metrics() == {"size:bytes": 12, "file:count": 1}


async def test_puts_stores_the_files_before_the_limit(open_axon: OpenAxon) -> None:
    """Like the reference's sequential puts: earlier files stay, the failing one raises."""
    async with open_axon(Limits(max_count=2)) as axon:
        with pytest.raises(HitLimit):
            await axon.puts([b"a", b"b", b"c"])
        assert await axon.has(sha_digest(b"a")) and await axon.has(sha_digest(b"b"))
        assert not await axon.has(sha_digest(b"c"))
        assert await axon.metrics() == {"size:bytes": 2, "file:count": 2}
        assert spool_files(axon.store.root) == []


async def test_limits_count_what_is_already_stored(open_axon: OpenAxon) -> None:
    async with open_axon() as axon:
        await axon.puts([b"one", b"two"])
    async with open_axon(Limits(max_count=2)) as axon:
        with pytest.raises(HitLimit):
            await axon.put(b"three")


async def test_an_upload_is_reusable_after_hitting_the_limit(open_axon: OpenAxon) -> None:
    async with open_axon(Limits(max_count=1)) as axon:
        await axon.put(b"first")
        async with await axon.upload() as upload:
            await upload.write(b"second")
            with pytest.raises(HitLimit):
                await upload.save()
            await axon.del_(sha_digest(b"first"))
            await upload.write(b"third")
            assert await upload.save() == (5, sha_digest(b"third"))
        wanted = await axon.wants([sha_digest(b"second"), sha_digest(b"third")])
        assert wanted == [sha_digest(b"second")]
        assert spool_files(axon.store.root) == []


async def test_concurrent_puts_stop_exactly_at_max_count(open_axon: OpenAxon) -> None:
    outcomes: list[bool] = []

    async def put(i: int) -> None:
        try:
            await axon.put(b"concurrent %d" % i)
        except HitLimit:
            outcomes.append(False)
        else:
            outcomes.append(True)

    async with open_axon(Limits(max_count=5)) as axon:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(put, i)
        assert outcomes.count(True) == 5 and len(outcomes) == 20
        assert (await axon.metrics())["file:count"] == 5
        assert len(await collect(axon.hashes(0))) == 5
        await axon.spill_journal()  # small blobs' files are written in batches
        listing = await trio.to_thread.run_sync(lambda: list(axon.backend.list()))
        assert len(listing) == 5
        assert spool_files(axon.store.root) == []
