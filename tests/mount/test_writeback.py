"""Performance-driven behaviour of the mount, proven through the kernel.

* Commit-on-flush sees every byte whatever order and size the application
  writes in (reversed, scattered, tiny appends, shared mmap), and large
  writes, hashed in a worker behind the writes, keep the running hash. The
  writeback cache stays off: with it the kernel ignores the
  size the daemon reports for regular files, and ``tail -f /history.log``
  (the test in test_history.py) stops seeing it grow.
* Blobs are read from a sliding memory map: reads across window boundaries,
  at the end, and from several readers at once are byte-exact.
* Only ``user.*`` extended attributes exist: other namespaces answer ENOTSUP,
  which lets ``ls -l`` stop asking after one request.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import trio
from helpers.daemon import MakeMount, MountDaemon
from helpers.hashes import sha_hex

import axonfs.incoming
from axonfs.axon import INLINE_IO_MAX, Axon
from axonfs.hashbehind import HashBehind
from axonfs.incoming import Incoming
from axonfs.ops import Operations
from axonfs.tree.blobs import MAP_WINDOW
from mount.storeapi import get_blob, put_blobs

MIB = 1 << 20


def committed_sha(path: Path) -> str:
    return os.getxattr(path, "user.axonfs.sha256").decode()


def test_writeback_cache_stays_off() -> None:
    # Turning it on freezes /history.log's size in the kernel (see Operations).
    assert Operations.enable_writeback_cache is False


def test_reverse_order_writes_commit_every_byte(mounted: MountDaemon) -> None:
    data = os.urandom(9 * MIB + 12345)
    path = mounted.path("incoming", "reversed")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        offsets = list(range(0, len(data), MIB))
        for offset in reversed(offsets):  # last MiB first
            os.pwrite(fd, data[offset : offset + MIB], offset)
    finally:
        os.close(fd)
    assert committed_sha(path) == sha_hex(data)
    assert mounted.path("by-sha256", sha_hex(data)).read_bytes() == data


def test_scattered_unaligned_rewrites_commit_the_final_bytes(mounted: MountDaemon) -> None:
    rng = random.Random(3)
    data = bytearray(os.urandom(3 * MIB + 777))
    path = mounted.path("incoming", "scattered")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        for _ in range(300):  # rewrite random unaligned ranges, some twice
            offset = rng.randrange(len(data))
            piece = os.urandom(rng.randrange(1, 20000))[: len(data) - offset]
            data[offset : offset + len(piece)] = piece
            os.pwrite(fd, piece, offset)
        assert os.pread(fd, len(data) + 10, 0) == data  # read back before close
    finally:
        os.close(fd)
    assert committed_sha(path) == sha_hex(bytes(data))
    assert mounted.path("by-sha256", sha_hex(bytes(data))).read_bytes() == data


def test_many_small_appends_commit_every_byte(mounted: MountDaemon) -> None:
    pieces = [os.urandom(random.Random(i).randrange(1, 3000)) for i in range(500)]
    path = mounted.path("incoming", "appends")
    with open(path, "wb", buffering=0) as file:
        for piece in pieces:
            file.write(piece)
    data = b"".join(pieces)
    assert committed_sha(path) == sha_hex(data)
    assert os.stat(path).st_size == len(data)


def test_shared_mmap_writes_commit_every_byte(mounted: MountDaemon) -> None:
    data = os.urandom(5 * MIB + 100)
    path = mounted.path("incoming", "mapped")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, len(data))
        with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            for offset in reversed(range(0, len(data), 64 << 10)):
                m[offset : offset + (64 << 10)] = data[offset : offset + (64 << 10)]
    finally:
        os.close(fd)
    assert committed_sha(path) == sha_hex(data)


def test_cp_of_large_file_then_store_api_reads_it(mounted: MountDaemon, tmp_path: Path) -> None:
    data = os.urandom(20 * MIB + 1)
    source = tmp_path / "big"
    source.write_bytes(data)
    subprocess.run(["cp", str(source), str(mounted.path("incoming", "big"))], check=True)
    sha = committed_sha(mounted.path("incoming", "big"))
    assert sha == sha_hex(data)
    mounted.umount()
    assert get_blob(mounted, bytes.fromhex(sha)) == data


async def test_incoming_write_out_of_order_large_pieces(tmp_path: Path) -> None:
    """The daemon side alone: large pieces (written in a thread, hashed behind)
    and small ones (inline), delivered out of order, then committed."""
    piece = INLINE_IO_MAX * 4
    data = os.urandom(piece * 6 + 1000)
    order = [3, 0, 1, 5, 2, 4, 6]
    async with Axon.open(tmp_path / "store") as axon:
        incoming = Incoming(axon)
        handle = incoming.create(3, "f", 0o644, 0, 0, os.getpid())
        for i in order:
            await incoming.write(handle, i * piece, data[i * piece : (i + 1) * piece])
        await incoming.write(handle, 10, data[10:20])  # rewrite inside the hashed prefix
        await incoming.flush(handle)
        assert handle.node.committed and handle.node.sha256 == hashlib.sha256(data).digest()
        assert b"".join([p async for p in axon.get(handle.node.sha256)]) == data
        await incoming.release(handle)


async def test_incoming_sequential_large_pieces_keep_the_running_hash(tmp_path: Path) -> None:
    piece = INLINE_IO_MAX * 8
    data = os.urandom(piece * 5)
    async with Axon.open(tmp_path / "store") as axon:
        incoming = Incoming(axon)
        handle = incoming.create(3, "f", 0o644, 0, 0, os.getpid())
        for offset in range(0, len(data), piece):
            await incoming.write(handle, offset, data[offset : offset + piece])
        spool, lane = handle.node.spool, handle.node.hashing
        assert spool is not None and lane is not None and lane.spool is spool
        await lane.wait()  # large pieces are hashed behind the writes, in order
        assert spool.fully_hashed  # no re-hash needed at commit
        await incoming.flush(handle)
        assert handle.node.sha256 == hashlib.sha256(data).digest()
        await incoming.release(handle)


async def test_hashing_behind_holds_back_the_writer_and_stops_on_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(axonfs.hashbehind, "HASH_BEHIND_MAX", 3 * MIB)
    async with Axon.open(tmp_path / "store") as axon:
        spool = axon.store.new_spool()
        lane = HashBehind(spool)
        seen: list[int] = []
        real_hash = spool.hash_bytes

        def slow_hash(data: bytes, offset: int) -> None:
            seen.append(lane._queued)
            time.sleep(0.005)
            real_hash(data, offset)

        monkeypatch.setattr(spool, "hash_bytes", slow_hash)
        data = os.urandom(20 * MIB)
        for offset in range(0, len(data), MIB):
            spool.write_bytes(data[offset : offset + MIB], offset)
            await lane.add(data[offset : offset + MIB], offset)
        await lane.wait()
        assert lane.idle and spool.fully_hashed and spool.digest() == hashlib.sha256(data).digest()
        assert max(seen) <= 4 * MIB  # the limit, plus the piece that crossed it
        for offset in range(0, 10 * MIB, MIB):
            await lane.add(data[offset : offset + MIB], offset)
        lane.cancel()
        with trio.fail_after(5):
            await lane.wait()  # only the piece in the worker's hands is finished
        spool.discard()


async def test_a_failed_hash_behind_falls_back_to_a_rehash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(6 * MIB)
    async with Axon.open(tmp_path / "store") as axon:
        incoming = Incoming(axon)
        handle = incoming.create(3, "f", 0o644, 0, 0, os.getpid())
        await incoming.write(handle, 0, data[:MIB])
        spool = handle.node.spool
        assert spool is not None

        def broken(data: bytes, offset: int) -> None:
            raise RuntimeError("simulated")

        monkeypatch.setattr(spool, "hash_bytes", broken)
        for offset in range(MIB, len(data), MIB):
            await incoming.write(handle, offset, data[offset : offset + MIB])
        with trio.fail_after(10):
            await incoming.flush(handle)  # logs the failure, then re-reads the spool
        assert handle.node.sha256 == hashlib.sha256(data).digest()
        await incoming.release(handle)


# -- reads from the memory map ----------------------------------------------------------


BigBlob = tuple[MountDaemon, bytes, Path]
"""A mounted store, a blob bigger than a map window, and its path under /by-sha256."""


@pytest.fixture
def big_blob(make_mount: MakeMount) -> BigBlob:
    mounted = make_mount(mount=False)
    data = os.urandom(2 * MAP_WINDOW + 5 * MIB + 333)
    (sha,) = put_blobs(mounted, [data])
    mounted.start()
    return mounted, data, mounted.path("by-sha256", sha.hex())


def test_mapped_reads_across_windows_are_byte_exact(big_blob: BigBlob) -> None:
    mounted, data, path = big_blob
    rng = random.Random(7)
    offsets = [
        0,
        MAP_WINDOW - 1,
        MAP_WINDOW - 4096,
        MAP_WINDOW,
        2 * MAP_WINDOW - 100,
        len(data) - 1,
        len(data) - 5000,
        len(data),
        len(data) + 10,
    ]
    offsets += [rng.randrange(len(data)) for _ in range(50)]
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in offsets:
            size = rng.choice([1, 4096, 100_000, MIB, 3 * MIB])
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # force requests to the daemon
            assert os.pread(fd, size, offset) == data[offset : offset + size], offset
    finally:
        os.close(fd)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_mapped_reads_from_several_readers_at_once(big_blob: BigBlob) -> None:
    mounted, data, path = big_blob
    expected = sha_hex(data)
    results: list[str] = []

    def reader(start: int) -> None:
        with open(path, "rb") as file:
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            file.seek(start)
            head = file.read()
            file.seek(0)
            results.append(sha_hex(file.read(start) + head))

    threads = [threading.Thread(target=reader, args=(i * 7 * MIB,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_empty_blob_reads_empty(make_mount: MakeMount) -> None:
    mounted = make_mount(mount=False)
    (sha,) = put_blobs(mounted, [b""])
    mounted.start()
    assert mounted.path("by-sha256", sha.hex()).read_bytes() == b""


# -- extended attribute namespaces ----------------------------------------------------


def test_other_xattr_namespaces_are_unsupported(big_blob: BigBlob) -> None:
    mounted, _, path = big_blob
    for target in (path, mounted.mnt, mounted.path("incoming")):
        for name in (
            "security.selinux",
            "security.capability",
            "system.posix_acl_access",
            "trusted.x",
        ):
            with pytest.raises(OSError) as info:
                os.getxattr(target, name, follow_symlinks=False)
            assert info.value.errno == errno.EOPNOTSUPP, (target, name)
        with pytest.raises(OSError) as info:
            os.getxattr(target, "user.nothing")
        assert info.value.errno == errno.ENODATA
    assert os.getxattr(path, "user.axonfs.sha256").decode() == path.name


def test_ls_l_shows_no_acl_or_context_marks(big_blob: BigBlob) -> None:
    mounted, data, path = big_blob
    out = subprocess.run(
        ["ls", "-l", str(mounted.path("by-sha256"))],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    line = next(line for line in out.splitlines() if path.name in line)
    assert line.startswith("-r--r--r-- ") and f" {len(data)} " in line
