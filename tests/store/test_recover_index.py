"""Rebuilding the index from the blobs: ``Axon.recover()`` (every backend) and
the offline ``axonfs recover`` command (local store)."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import trio
from helpers.cli import run_axonfs
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.hashing import Sha256
from store.storetools import MiB, OpenAxon, blob_file, collect, read_all

BLOBS = [b"alpha", b"", random.Random(11).randbytes(3 * MiB), b"gamma" * 100]


def lose_index(store_dir: Path) -> None:
    shutil.rmtree(store_dir / "index.lmdb")


async def stage_corrupt(axon: Axon, name: bytes, content: bytes) -> None:
    """Put *content* in the backend under the wrong *name*, unindexed."""
    path = axon.store.tmp / f"staged-{os.urandom(4).hex()}"
    path.write_bytes(content)

    def put() -> None:
        axon.backend.put_file(Sha256(name), path)
        axon.backend.flush()

    await trio.to_thread.run_sync(put)


async def test_recover_readds_every_blob_dated_now(open_axon: OpenAxon, store_dir: Path) -> None:
    async with open_axon() as axon:
        await axon.puts(BLOBS)
        await axon.put(b"deleted before the loss")
        await axon.del_(sha_digest(b"deleted before the loss"))
    lose_index(store_dir)
    async with open_axon() as axon:
        assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}
        assert await axon.wants([sha_digest(b) for b in BLOBS]) == [sha_digest(b) for b in BLOBS]
        before = time.time_ns() // 1_000_000
        report = await axon.recover()
        after = time.time_ns() // 1_000_000
        assert (report.listed, report.added, report.skipped, report.corrupt) == (4, 4, 0, [])
        for data in BLOBS:
            assert await read_all(axon, sha_digest(data)) == data
        assert await axon.metrics() == {"size:bytes": sum(map(len, BLOBS)), "file:count": 4}
        rows = await collect(axon.hashes(0))
        assert [indx for indx, _ in rows] == [0, 1, 2, 3]
        assert sorted(row for _, row in rows) == sorted((sha_digest(b), len(b)) for b in BLOBS)
        history = await collect(axon.history(0))
        assert len(history) == 4
        assert all(before <= tick <= after for tick, _ in history)
        assert not await axon.has(sha_digest(b"deleted before the loss"))
        # Idempotent: a second run finds everything indexed.
        again = await axon.recover()
        assert (again.listed, again.added, again.skipped) == (4, 0, 4)
        assert len(await collect(axon.hashes(0))) == 4


async def test_recover_skips_blobs_a_partial_index_has(
    open_axon: OpenAxon, store_dir: Path
) -> None:
    async with open_axon() as axon:
        await axon.put(b"old")
    shutil.copytree(store_dir / "index.lmdb", store_dir / "backup.lmdb")
    async with open_axon() as axon:
        await axon.puts([b"newer", b"newest"])
        old_history = await collect(axon.history(0))
    lose_index(store_dir)
    (store_dir / "backup.lmdb").rename(store_dir / "index.lmdb")  # restore an older backup
    async with open_axon() as axon:
        report = await axon.recover()
        assert (report.listed, report.added, report.skipped) == (3, 2, 1)
        rows = await collect(axon.hashes(0))
        assert rows[0] == (0, (sha_digest(b"old"), 3))  # kept its row and its date
        assert sorted(row for _, row in rows[1:]) == sorted(
            [(sha_digest(b"newer"), 5), (sha_digest(b"newest"), 6)]
        )
        assert (await collect(axon.history(0)))[0] == old_history[0]
        assert await axon.metrics() == {"size:bytes": 14, "file:count": 3}


async def test_recover_reports_corrupt_blobs_without_adopting_them(
    open_axon: OpenAxon, store_dir: Path
) -> None:
    liar = sha_digest(b"what the name promises")
    async with open_axon() as axon:
        await axon.puts(BLOBS[:2])
        await stage_corrupt(axon, liar, b"what the bytes are")
    lose_index(store_dir)
    async with open_axon() as axon:
        report = await axon.recover(verify=True)  # the default only for local backends
        assert report.corrupt == [liar.hex()]
        assert (report.listed, report.added) == (3, 2)
        assert not await axon.has(liar)
        assert await axon.metrics() == {"size:bytes": 5, "file:count": 2}
        # Without verification, recover trusts the names (as the reference's recoverIndices).
        trusting = await axon.recover(verify=False)
        assert (trusting.added, trusting.corrupt) == (1, [])
        assert await axon.has(liar)


async def test_recover_verifies_by_default_only_where_reads_are_local(
    open_axon: OpenAxon, store_dir: Path
) -> None:
    liar = sha_digest(b"the name")
    async with open_axon() as axon:
        await stage_corrupt(axon, liar, b"other bytes")
    lose_index(store_dir)
    async with open_axon() as axon:
        report = await axon.recover()
        local = axon.backend.reads_are_local
        assert report.corrupt == ([liar.hex()] if local else [])
        assert await axon.has(liar) is not local


async def test_recover_reports_progress(open_axon: OpenAxon, store_dir: Path) -> None:
    async with open_axon() as axon:
        await axon.puts([b"blob %d" % i for i in range(25)])
    lose_index(store_dir)
    calls: list[tuple[int, int]] = []
    async with open_axon() as axon:
        await axon.recover(progress=lambda listed, added: calls.append((listed, added)))
    assert calls and calls[-1] == (25, 25)


async def test_recover_of_an_empty_store(axon: Axon) -> None:
    report = await axon.recover()
    assert (report.listed, report.added, report.skipped, report.corrupt) == (0, 0, 0, [])


async def test_offline_recover_command(store_dir: Path) -> None:
    async with Axon.open(store_dir) as axon:
        await axon.puts(BLOBS)
    lose_index(store_dir)
    result = run_axonfs("recover", "--store", store_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "listed 4, added 4, already indexed 0" in result.stdout
    assert "corrupt 0" in result.stdout
    assert "recovering" not in result.stderr  # no progress bar without a terminal
    async with Axon.open(store_dir) as axon:
        for data in BLOBS:
            assert await read_all(axon, sha_digest(data)) == data
        assert await axon.metrics() == {"size:bytes": sum(map(len, BLOBS)), "file:count": 4}
    fsck = run_axonfs("fsck", "--store", store_dir)
    assert fsck.returncode == 0, fsck.stdout


async def test_offline_recover_command_reports_corrupt_files(store_dir: Path) -> None:
    async with Axon.open(store_dir) as axon:
        await axon.put(b"fine")
    lose_index(store_dir)
    liar = sha_digest(b"promised")
    path = blob_file(store_dir, liar)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"delivered")
    result = run_axonfs("recover", "--store", store_dir)
    assert result.returncode == 1
    assert "added 1" in result.stdout and "corrupt 1" in result.stdout
    async with Axon.open(store_dir) as axon:
        assert not await axon.has(liar)
        assert await axon.has(sha_digest(b"fine"))
