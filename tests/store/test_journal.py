"""The small-blob journal: one synced index commit makes a small blob durable.

Small blobs' bytes ride in the index transaction; their files are written and
synced later in batches: in the background once JOURNAL_SPILL_START are
journaled or after SPILL_IDLE quiet seconds, inline past JOURNAL_SPILL_COUNT,
and at close and open. These tests check the journal empties when it should,
that reads, deletes and spills running at once never lose or resurrect a
blob, and that a file damaged by a power cut comes back from the journal.
"""

from __future__ import annotations

import os
import random
import subprocess
import textwrap
import threading
from functools import partial
from pathlib import Path

import pytest
import trio
from helpers.cli import run_axonfs
from helpers.hashes import sha_digest

from axonfs import axon as axon_module
from axonfs.axon import Axon
from axonfs.hashing import Sha256
from axonfs.store import store as store_module
from axonfs.store.index import BlobRow
from axonfs.store.store import JOURNAL_MAX, Store

from .storetools import PYTHON, REPO, blob_file, read_all


async def test_small_blobs_are_journaled_until_close(store_dir: Path) -> None:
    blobs = [os.urandom(4096) for _ in range(10)]
    async with Axon.open(store_dir) as axon:
        await axon.puts(blobs)
        assert axon.index.journal_entries() == 10
        for blob in blobs:
            assert not blob_file(store_dir, sha_digest(blob)).exists()  # written later, in a batch
            assert await read_all(axon, sha_digest(blob)) == blob  # served from the journal
    with Store(store_dir) as reopened:
        assert reopened.index.journal_entries() == 0  # close synced and dropped them
    for blob in blobs:
        assert blob_file(store_dir, sha_digest(blob)).read_bytes() == blob


async def wait_for_empty_journal(axon: Axon, seconds: float) -> None:
    """Poll: the spill runs in a worker thread and signals nothing."""
    with trio.fail_after(seconds):
        while axon.index.journal_entries():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_background_spill_after_a_batch(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_START", 8)
    monkeypatch.setattr(axon_module, "SPILL_IDLE", 3600)  # only the batch can trigger it
    blobs = [os.urandom(100) for _ in range(8)]
    async with Axon.open(store_dir) as axon:
        await axon.puts(blobs[:7])
        await trio.sleep(0.2)
        assert axon.index.journal_entries() == 7  # below the batch: left alone
        await axon.put(blobs[7])
        await wait_for_empty_journal(axon, 10)
        for blob in blobs:
            assert blob_file(store_dir, sha_digest(blob)).read_bytes() == blob


async def test_background_spill_when_idle(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(axon_module, "SPILL_IDLE", 0.1)
    async with Axon.open(store_dir) as axon:
        _, sha = await axon.put(b"a lone small blob")
        await wait_for_empty_journal(axon, 10)
        assert blob_file(store_dir, sha).read_bytes() == b"a lone small blob"


async def test_spills_puts_deletes_and_reads_at_once(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deletes and re-adds racing the spiller: no blob lost, none resurrected."""
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_START", 4)
    monkeypatch.setattr(store_module, "JOURNAL_BATCH", 8)
    pool = [os.urandom(size) for size in random.Random(7).choices(range(3000), k=40)]
    async with Axon.open(store_dir) as axon:

        async def churn(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(150):
                blob = rng.choice(pool)
                if rng.random() < 0.6:
                    await axon.put(blob)
                else:
                    await axon.del_(sha_digest(blob))
                if rng.random() < 0.3:
                    for present in pool[:5]:
                        if await axon.has(sha_digest(present)):
                            assert await read_all(axon, sha_digest(present)) == present

        async with trio.open_nursery() as nursery:
            for seed in range(4):
                nursery.start_soon(churn, seed)
        for blob in pool:
            if await axon.has(sha_digest(blob)):
                assert await read_all(axon, sha_digest(blob)) == blob
        await axon.spill_journal()
        present = {sha_digest(blob) for blob in pool if await axon.has(sha_digest(blob))}
        await axon.spill_journal()  # small blobs' files are written in batches
        on_disk = {item.sha256 for item in axon.backend.list()}
        assert on_disk == present
    fsck = await trio.to_thread.run_sync(partial(run_axonfs, "fsck", "--store", store_dir))
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


async def test_large_blobs_are_not_journaled(store_dir: Path) -> None:
    async with Axon.open(store_dir) as axon:
        await axon.put(os.urandom(JOURNAL_MAX + 1))
        assert axon.index.journal_entries() == 0


async def test_delete_drops_the_journal_row(store_dir: Path) -> None:
    async with Axon.open(store_dir) as axon:
        _, sha = await axon.put(b"small and soon gone")
        assert axon.index.journal_entries() == 1
        assert await axon.del_(sha)
        assert axon.index.journal_entries() == 0
        assert not blob_file(store_dir, sha).exists()


async def test_spill_when_the_journal_is_full(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_COUNT", 8)
    async with Axon.open(store_dir) as axon:
        await axon.puts([os.urandom(100) for _ in range(7)])
        assert axon.index.journal_entries() == 7
        await axon.put(b"the eighth")
        assert axon.index.journal_entries() == 0


async def test_spill_when_the_journal_is_big(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_BYTES", 1 << 20)
    async with Axon.open(store_dir) as axon:
        await axon.puts([os.urandom(100_000) for _ in range(5)])  # ~0.5 MiB
        assert axon.index.journal_entries() == 5
        await axon.puts([os.urandom(100_000) for _ in range(6)])  # past 1 MiB
        assert axon.index.journal_entries() == 0


def test_lost_file_is_restored_from_the_journal(store_dir: Path) -> None:
    """A process killed after its puts returned, in the middle of a spill
    that a power cut then undid: files missing, truncated or zeroed."""
    blobs = [os.urandom(size) for size in (0, 1, 4096, 70_000)]
    script = textwrap.dedent(f"""
        import os, sys, trio
        from pathlib import Path
        from axonfs.axon import Axon
        async def main():
            async with Axon.open(Path({str(store_dir)!r})) as axon:
                await axon.puts([bytes.fromhex(h[1:]) for h in sys.stdin.read().split()])
                os.kill(os.getpid(), 9)   # no close: the journal stays
        trio.run(main)
    """)
    done = subprocess.run(
        [PYTHON, "-c", script],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        input=" ".join("x" + b.hex() for b in blobs).encode(),
    )
    assert done.returncode == -9, done.stderr.decode()
    # What a power cut during a spill can leave: renamed files whose data never
    # reached the disk (the spill had not synced them, so it kept their rows).
    for blob, damage in zip(blobs[1:], (b"", b"short", b"\0" * 70_000), strict=True):
        path = blob_file(store_dir, sha_digest(blob))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(damage)

    async def check() -> None:
        async with Axon.open(store_dir) as axon:
            assert axon.index.journal_entries() == 0
            for blob in blobs:
                assert await read_all(axon, sha_digest(blob)) == blob
                assert blob_file(store_dir, sha_digest(blob)).read_bytes() == blob

    trio.run(check)
    fsck = run_axonfs("fsck", "--store", store_dir)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_delete_racing_an_add_in_memory_leaves_the_bytes(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An add committed in memory does not take the commit lock: a delete of
    the same blob may land between its look at the index and its index
    commit. The add then stores the bytes it has at hand; it never leaves a
    row without them."""
    data = b"raced" * 100
    sha = Sha256(sha_digest(data))
    store = Store(store_dir, deferred=True)
    try:
        store.commit([store_module.AddBlob(sha, len(data), data=data)])
        store.spill_journal()  # its file is written: the delete removes it
        looked = store_module._Plan.is_present
        looks = 0

        def delete_after_looking(plan: store_module._Plan, sha256: Sha256) -> bool:
            nonlocal looks
            present = looked(plan, sha256)
            looks += 1
            if looks == 2:  # the commit's last look, the one that decides
                monkeypatch.setattr(store_module._Plan, "is_present", looked)
                deleter = threading.Thread(
                    target=store.commit, args=([store_module.DeleteBlob(sha)],)
                )
                deleter.start()
                deleter.join()
            return present

        monkeypatch.setattr(store_module._Plan, "is_present", delete_after_looking)
        results = store.commit_in_memory([store_module.AddBlob(sha, len(data), data=data)])
        assert results is not None and isinstance(results[0], BlobRow)
        assert store.index.has(sha) and not store.backend.exists(sha)
        assert store.index.journal_get(sha) == data  # the bytes came along
        with store.open_blob(sha) as reader:
            assert reader.read(0, len(data)) == data
    finally:
        store.close()
    # And after a restart, from its file.
    with Store(store_dir) as reopened, reopened.open_blob(sha) as reader:
        assert reader.read(0, len(data)) == data


async def test_a_spill_step_does_not_spill_what_it_dropped_already(store_dir: Path) -> None:
    """With a sync interval a spill step drops the journal rows it wrote files
    for as a deferred commit: the next step must not take those rows again
    before the interval's sync makes the drop durable."""
    async with Axon.open(store_dir, sync_interval=600) as axon:
        for _ in range(50):
            await axon.put(os.urandom(1000))
        store = axon.store
        assert store.sync() == 50  # the puts are durable: their files may be written
        assert store.spill_step(sync_first=False) == 50
        assert store.journaled() == 0
        assert store.index.deferred() == 1  # the drop
        assert store.spill_step(sync_first=False) == 0
        assert store.sync() == 1 and store.journaled() == 0
