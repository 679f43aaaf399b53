"""The small-blob journal: one synced index commit makes a small blob durable.

Small blobs' bytes ride in the index transaction; their files are written
without a sync and synced later in batches (at JOURNAL_SPILL_COUNT, at close,
at open). These tests check the journal empties when it should, and that a
blob whose file was lost with the page cache (a power cut, simulated by
damaging the file of a killed process) comes back from the journal.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import trio

from axonfs.axon import Axon
from axonfs.store import store as store_module
from axonfs.store.store import JOURNAL_MAX, Store

from .storetools import PYTHON, REPO, blob_file, read_all, sha256


async def test_small_blobs_are_journaled_until_close(store_dir: Path) -> None:
    blobs = [os.urandom(4096) for _ in range(10)]
    async with Axon.open(store_dir) as axon:
        await axon.puts(blobs)
        assert axon.index.journal_entries() == 10
        for blob in blobs:
            assert blob_file(store_dir, sha256(blob)).read_bytes() == blob
    with Store(store_dir) as reopened:
        assert reopened.index.journal_entries() == 0  # close synced and dropped them


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


async def test_spill_when_the_journal_is_full(store_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_COUNT", 8)
    async with Axon.open(store_dir) as axon:
        await axon.puts([os.urandom(100) for _ in range(7)])
        assert axon.index.journal_entries() == 7
        await axon.put(b"the eighth")
        assert axon.index.journal_entries() == 0


async def test_spill_when_the_journal_is_big(store_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SPILL_BYTES", 1 << 20)
    async with Axon.open(store_dir) as axon:
        await axon.puts([os.urandom(100_000) for _ in range(5)])  # ~0.5 MiB
        assert axon.index.journal_entries() == 5
        await axon.puts([os.urandom(100_000) for _ in range(6)])  # past 1 MiB
        assert axon.index.journal_entries() == 0


def test_lost_file_is_restored_from_the_journal(store_dir: Path) -> None:
    """A process killed after its puts returned; then the files' contents are lost."""
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
    done = subprocess.run([PYTHON, "-c", script], cwd=REPO, capture_output=True, timeout=60,
                          input=" ".join("x" + b.hex() for b in blobs).encode())
    assert done.returncode == -9, done.stderr.decode()
    # What a power cut can do to files the kernel had not written yet.
    blob_file(store_dir, sha256(blobs[1])).unlink()
    os.truncate(blob_file(store_dir, sha256(blobs[2])), 10)
    with open(blob_file(store_dir, sha256(blobs[3])), "r+b") as damaged:
        damaged.write(b"\0" * 100)

    async def check() -> None:
        async with Axon.open(store_dir) as axon:
            assert axon.index.journal_entries() == 0
            for blob in blobs:
                assert await read_all(axon, sha256(blob)) == blob
                assert blob_file(store_dir, sha256(blob)).read_bytes() == blob

    trio.run(check)
    fsck = subprocess.run([PYTHON, "-m", "axonfs", "fsck", "--store", str(store_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
