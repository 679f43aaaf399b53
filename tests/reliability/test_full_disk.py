"""Full disk: the store on a 64 MiB tmpfs.

A ballast file takes most of the disk; writers copy big and small files into
/incoming until the disk is full. They must get ENOSPC from ``write()`` or
``close()`` and nothing else; nothing partial may be committed; while the
failed handles are still open (the disk full) the daemon keeps serving reads
through the mount and the socket and refuses a socket ``put`` with a clear
error; once they are closed the spool directory is empty; after the ballast is
removed, writes work again; ``fsck`` is clean.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest
import trio
from helpers.daemon import MountDaemon
from helpers.fuse import wait_until
from helpers.hashes import file_sha

from axonfs import client
from axonfs.axon import Axon
from axonfs.errors import AxonError

from .conftest import Figures, MakeDaemon
from .tools import assert_fsck_clean, spools, tmpfs, write_file

DISK = "64m"
BALLAST = 40 << 20
BIG = 6 << 20
SMALL_MAX = 64 << 10
MAX_FILES_PER_WRITER = 2000
PHASE_TIMEOUT = 60.0


class Filler:
    """Writers that copy files until the disk refuses; failed handles are held open."""

    def __init__(self, mnt: Path, seed: int) -> None:
        self.mnt = mnt
        self.seed = seed
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.attempted: set[str] = set()
        self.enospc = {"write": 0, "close": 0}
        self.other: list[str] = []
        self.held: list[int] = []  # descriptors whose write() failed: the disk stays full

    def writer(self, index: int, big: bool) -> None:
        rng = random.Random(self.seed * 100 + index)
        deadline = time.monotonic() + PHASE_TIMEOUT
        for n in range(MAX_FILES_PER_WRITER):
            if time.monotonic() > deadline:
                with self.lock:
                    self.other.append(f"writer {index} never hit ENOSPC")
                return
            data = rng.randbytes(BIG if big else rng.randrange(1, SMALL_MAX))
            sha = hashlib.sha256(data).hexdigest()
            with self.lock:
                self.attempted.add(sha)
            fd = os.open(
                self.mnt / "incoming" / f"{'big' if big else 'small'}{index}-{n}",
                os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                0o644,
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view[: 128 << 10]) :]
            except OSError as exc:
                self._failed("write", exc)
                with self.lock:
                    self.held.append(fd)
                return
            try:
                os.close(fd)
            except OSError as exc:
                self._failed("close", exc)
                return
            with self.lock:
                self.acked[sha] = len(data)

    def _failed(self, where: str, exc: OSError) -> None:
        with self.lock:
            if exc.errno == errno.ENOSPC:
                self.enospc[where] += 1
            else:
                self.other.append(f"{where}: {exc!r}")


async def _socket_checks(socket: Path, seeds: dict[str, bytes]) -> str:
    """Reads work over the socket; a put is refused with a clear error."""
    async with client.connect(socket) as axon:
        for name, data in seeds.items():
            assert await axon.has(bytes.fromhex(name))
            got = b"".join([piece async for piece in axon.get(bytes.fromhex(name))])
            assert got == data
        await axon.metrics()
        with pytest.raises(AxonError) as refused:
            await axon.put(os.urandom(2 << 20))
        with pytest.raises(AxonError) as streamed:  # an upload session: large writes
            async with await axon.upload() as upload:
                await upload.write(os.urandom(3 << 20))
                await upload.save()
        assert "No space left" in streamed.value.message, streamed.value
        assert await axon.has(bytes.fromhex(next(iter(seeds))))
        return f"{refused.value.code}: {refused.value.message}"


async def _socket_put(socket: Path, data: bytes) -> bytes:
    async with client.connect(socket) as axon:
        size, sha = await axon.put(data)
        assert size == len(data)
        return sha


def test_full_disk(tmp_path: Path, daemons: MakeDaemon, figures: Figures) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    with tmpfs(tmp_path / "disk", DISK) as disk:
        daemon = daemons(store=disk / "store", name="full")
        try:
            _run(daemon, disk, seed, figures)
        finally:
            daemon.close()  # before the tmpfs goes


def _run(daemon: MountDaemon, disk: Path, seed: int, figures: Figures) -> None:
    assert daemon.mnt is not None
    mnt = daemon.mnt
    daemon.start()
    seeds = {}
    for i in range(4):
        data = random.Random(seed + i).randbytes(1 << 20)
        write_file(mnt / "incoming" / f"seed{i}", data)
        seeds[hashlib.sha256(data).hexdigest()] = data
    with open(disk / "ballast", "wb") as ballast:
        ballast.write(bytes(BALLAST))

    filler = Filler(mnt, seed)
    threads = [
        threading.Thread(target=filler.writer, args=(i, i < 3), daemon=True) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PHASE_TIMEOUT + 30)
        assert not thread.is_alive(), "a writer hangs on the full disk"
    assert not filler.other, filler.other
    refusals = filler.enospc["write"] + filler.enospc["close"]
    assert refusals == len(threads), filler.enospc  # every writer ended with ENOSPC

    for fd in filler.held:  # handles whose write() failed: close() reports the same error
        with pytest.raises(OSError) as closing:
            os.close(fd)
        assert closing.value.errno == errno.ENOSPC
    assert wait_until(lambda: not spools(daemon.store), timeout=10), spools(daemon.store)
    free_after_close = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize

    # Take every last block: reads through the mount and the socket still work, and
    # writes are refused with ENOSPC.
    with open(disk / "ballast2", "wb", buffering=0) as rest, pytest.raises(OSError) as full:
        while True:
            rest.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC
    for name in seeds:
        assert file_sha(mnt / "by-sha256" / name) == name
    refused = trio.run(_socket_checks, daemon.socket, seeds)
    with pytest.raises(OSError) as denied:
        write_file(mnt / "incoming" / "while-full", os.urandom(1 << 20))
    assert denied.value.errno == errno.ENOSPC
    # The entry goes when the kernel's RELEASE arrives, which close() does not wait for.
    assert wait_until(lambda: not os.path.exists(mnt / "incoming" / "while-full"), timeout=10)
    assert wait_until(lambda: not spools(daemon.store), timeout=10), spools(daemon.store)
    (disk / "ballast2").unlink()

    visible = set(os.listdir(mnt / "by-sha256"))
    assert set(seeds) | set(filler.acked) <= visible
    assert visible <= set(seeds) | filler.attempted, "a blob nobody wrote whole is visible"
    for name in visible:
        assert file_sha(mnt / "by-sha256" / name) == name
    # Failed uploads left no entry behind in /incoming.
    listed = os.listdir(mnt / "incoming")
    assert len(listed) == len(seeds) + len(filler.acked), sorted(listed)
    for name in listed:
        assert os.getxattr(mnt / "incoming" / name, "user.axonfs.sha256"), name  # committed

    (disk / "ballast").unlink()  # space comes back: writes work again
    again = random.Random(seed - 1).randbytes(BIG)
    write_file(mnt / "incoming" / "after", again)
    assert (
        file_sha(mnt / "by-sha256" / hashlib.sha256(again).hexdigest())
        == hashlib.sha256(again).hexdigest()
    )
    put_data = os.urandom(2 << 20)
    assert trio.run(_socket_put, daemon.socket, put_data) == hashlib.sha256(put_data).digest()
    assert not spools(daemon.store)

    daemon.stop()
    assert_fsck_clean(daemon.store)
    figures["full_disk"] = {
        "disk": "64 MiB tmpfs",
        "writers": len(threads),
        "files_committed_before_full": len(filler.acked),
        "ENOSPC_from_write": filler.enospc["write"],
        "ENOSPC_from_close": filler.enospc["close"],
        "socket_put_while_full": refused[:120].replace("|", "/"),
        "free_bytes_after_failed_handles_closed": free_after_close,
        "partial_blobs_committed": 0,
        "spool_files_left": 0,
        "lost": 0,
    }


async def test_a_write_left_behind_fails_at_the_next_call(tmp_path: Path) -> None:
    """``write(behind=True)`` answers before its bytes are on disk: when the
    disk fills meanwhile, the next write or save raises the error and drops
    the upload's unsaved bytes, so nothing saved later includes the hole."""
    with tmpfs(tmp_path / "disk", "16m") as disk:
        async with Axon.open(disk / "store") as axon, await axon.upload() as upload:
            with pytest.raises(OSError) as full:
                for _ in range(64):  # far past the disk
                    await upload.write(os.urandom(1 << 20), behind=True)
                await upload.save()
            assert full.value.errno == errno.ENOSPC
            await upload.write(b"after the error")
            size, sha = await upload.save()
            assert (size, sha) == (15, hashlib.sha256(b"after the error").digest())


async def test_writes_left_behind_store_what_was_written(tmp_path: Path) -> None:
    pieces = [os.urandom(size) for size in (3 << 20, 100, 5 << 20, 70_000, 1)]
    async with Axon.open(tmp_path / "store") as axon, await axon.upload() as upload:
        for piece in pieces:
            await upload.write(piece, behind=True)
        size, sha = await upload.save()
        assert (size, sha) == (sum(map(len, pieces)), hashlib.sha256(b"".join(pieces)).digest())
        got = b"".join([chunk async for chunk in axon.get(sha)])
        assert got == b"".join(pieces)
