"""``axonfs fsck``: each kind of damage is reported (exit 1) and ``--repair`` fixes it.

These run the real command in a subprocess, on the default local store.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import lmdb
import pytest
import trio
from helpers.cli import run_axonfs
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.errors import BlobMissing, StoreCorrupt
from axonfs.hashing import Sha256
from store.storetools import PYTHON, REPO, blob_file, collect, read_all

GOOD = [b"first blob", b"second blob" * 1000, b"", b"third"]


@pytest.fixture
def store(store_dir: Path) -> Path:
    """A closed store holding GOOD (sync, so that sync tests can use it too)."""

    async def populate() -> None:
        async with Axon.open(store_dir) as axon:
            await axon.puts(GOOD)

    trio.run(populate)
    return store_dir


def fsck(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_axonfs("fsck", "--store", store, *args)


def assert_clean(store: Path) -> None:
    result = fsck(store)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout


def writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_a_healthy_store_is_clean(store: Path) -> None:
    result = fsck(store)
    assert result.returncode == 0
    assert result.stdout.startswith(f"checked {len(GOOD)} indexed blobs")
    assert result.stderr == ""  # and no progress bar: stderr is not a terminal


def test_corrupt_blob(store: Path) -> None:
    victim = sha_digest(GOOD[1])
    data = bytearray(GOOD[1])
    data[5000] ^= 0xFF  # same size, one bit pattern off
    writable(blob_file(store, victim)).write_bytes(data)
    result = fsck(store)
    assert result.returncode == 1
    assert "1 blob not matching their hash" in result.stdout
    assert victim.hex() in result.stdout
    assert fsck(store, "--quick").returncode == 0  # sizes still agree
    repaired = fsck(store, "--repair")
    assert repaired.returncode == 1
    assert repaired.stderr == ""  # the report alone, on stdout
    assert repaired.stdout.splitlines()[-4:] == [
        "repaired:",
        f"  1 bad blob file moved to quarantine/ {store / 'quarantine'}",
        "  1 index row of missing or bad blobs dropped",
        "  the counters recomputed",
    ]
    assert (store / "quarantine" / victim.hex()).read_bytes() == data
    assert not blob_file(store, victim).exists()
    assert_clean(store)


def test_blob_with_the_wrong_size(store: Path) -> None:
    victim = sha_digest(GOOD[0])
    writable(blob_file(store, victim)).write_bytes(GOOD[0][:-1])
    result = fsck(store, "--quick")
    assert result.returncode == 1
    assert "1 blob with the wrong size" in result.stdout and victim.hex() in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert_clean(store)


def test_missing_blob(store: Path) -> None:
    victim = sha_digest(GOOD[3])
    blob_file(store, victim).unlink()
    result = fsck(store)
    assert result.returncode == 1
    assert "1 blob missing from the backend" in result.stdout and victim.hex() in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert_clean(store)


async def test_orphan_blob_is_indexed_by_repair(store: Path) -> None:
    orphan = b"bytes nobody indexed"
    path = blob_file(store, sha_digest(orphan))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orphan)
    result = fsck(store)
    assert result.returncode == 1
    assert "1 blob in the backend but not the index" in result.stdout
    assert "'axonfs recover'" in result.stdout
    assert sha_digest(orphan).hex() in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert_clean(store)
    async with Axon.open(store) as axon:
        assert await read_all(axon, sha_digest(orphan)) == orphan
        assert (await collect(axon.hashes(0)))[-1] == (len(GOOD), (sha_digest(orphan), len(orphan)))


def test_orphan_that_does_not_match_its_name_is_quarantined(store: Path) -> None:
    name = sha_digest(b"what the name says")
    path = blob_file(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"something else")
    result = fsck(store)
    assert result.returncode == 1
    assert "1 blob unindexed and not matching their name" in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert (store / "quarantine" / name.hex()).read_bytes() == b"something else"
    assert_clean(store)


def break_counter(store: Path, counter: bytes) -> None:
    """Overwrite one of the index's meta counters behind the store's back."""
    env = lmdb.open(str(store / "index.lmdb"), max_dbs=8)
    try:
        meta = env.open_db(b"meta")
        with env.begin(write=True, db=meta) as txn:
            txn.put(counter, (12345).to_bytes(8, "big", signed=True))
    finally:
        env.close()


@pytest.mark.parametrize("counter", [b"size:bytes", b"file:count"])
async def test_broken_counter(store: Path, counter: bytes) -> None:
    break_counter(store, counter)
    result = fsck(store)
    assert result.returncode == 1
    assert "counters were wrong" in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert_clean(store)
    async with Axon.open(store) as axon:
        assert await axon.metrics() == {
            "size:bytes": sum(len(b) for b in set(GOOD)),
            "file:count": len(GOOD),
        }


async def test_everything_at_once(store: Path) -> None:
    writable(blob_file(store, sha_digest(GOOD[1]))).write_bytes(b"x" * len(GOOD[1]))
    blob_file(store, sha_digest(GOOD[0])).unlink()
    orphan = b"orphan"
    blob_file(store, sha_digest(orphan)).parent.mkdir(parents=True, exist_ok=True)
    blob_file(store, sha_digest(orphan)).write_bytes(orphan)
    break_counter(store, b"file:count")
    result = fsck(store)
    assert result.returncode == 1
    for phrase in (
        "not matching their hash",
        "missing from the backend",
        "in the backend but not the index",
        "counters were wrong",
    ):
        assert phrase in result.stdout
    assert fsck(store, "--repair").returncode == 1
    assert_clean(store)
    async with Axon.open(store) as axon:
        assert await axon.wants([sha_digest(b) for b in (*GOOD, orphan)]) == [
            sha_digest(GOOD[0]),
            sha_digest(GOOD[1]),
        ]
        assert await axon.metrics() == {
            "size:bytes": len(GOOD[2] + GOOD[3] + orphan),
            "file:count": 3,
        }


def test_progress_bar_only_on_a_terminal(store: Path) -> None:
    piped = fsck(store)
    assert piped.stderr == ""
    # The same command with stderr on a pseudo-terminal does draw the bar.
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.Popen(
            [PYTHON, "-m", "axonfs", "fsck", "--store", str(store)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        os.close(terminal)
        drawn = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    finally:
        os.close(controller)
    assert b"checking blobs" in drawn


async def test_readers_notice_damage_instead_of_returning_wrong_bytes(store: Path) -> None:
    truncated, corrupted, deleted = (sha_digest(GOOD[1]), sha_digest(GOOD[0]), sha_digest(GOOD[3]))
    writable(blob_file(store, truncated)).write_bytes(GOOD[1][:100])
    writable(blob_file(store, corrupted)).write_bytes(b"X" * len(GOOD[0]))
    blob_file(store, deleted).unlink()
    async with Axon.open(store) as axon:
        with pytest.raises(StoreCorrupt):
            await read_all(axon, truncated)
        with pytest.raises(StoreCorrupt):
            await axon.hashset(corrupted)
        assert axon.index.get_hashset(Sha256(corrupted)) is None  # nothing wrong was cached
        with pytest.raises(BlobMissing):
            await read_all(axon, deleted)
