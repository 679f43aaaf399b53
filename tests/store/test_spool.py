"""Spool direct mode (staged appends written ``O_DIRECT``, and every way out of
it) and memory mode (small uploads that never get a file).

Each test checks the bytes that reach the file and the sha256 the spool
reports against a plain model of what was written.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.store.spool import STAGE, Spool
from store.storetools import MiB, read_all, spool_files

SIZES = [0, 1, 4095, 4096, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 12345]
PIECE_SIZES = [1, 7, 4095, 4097, 64 << 10, (64 << 10) + 1, MiB + 3, STAGE + 5]
"""Odd write sizes: below and above the inline threshold, one larger than a stage."""


def odd_pieces(data: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    offset = 0
    while offset < len(data):
        step = rng.choice(PIECE_SIZES)
        yield data[offset : offset + step]
        offset += step


def write_like_upload(spool: Spool, piece: bytes | memoryview) -> None:
    """What Upload.write does (there in two threads): the write half, then the hash half."""
    offset = spool.size
    spool.write_bytes(piece, offset)
    spool.hash_bytes(piece, offset)


def direct_io_works(directory: Path) -> bool:
    """Whether this filesystem takes an aligned O_DIRECT write (checked without Spool)."""
    path = directory / "probe-o-direct"
    buf = mmap.mmap(-1, STAGE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    try:
        return os.pwrite(fd, buf, 0) == STAGE
    except OSError:
        return False
    finally:
        os.close(fd)
        path.unlink()
        buf.close()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", [bytes, memoryview])  # copied without / with the GIL
def test_direct_spool_holds_exactly_what_was_appended(
    spool_dir: Path, size: int, kind: type[bytes] | type[memoryview]
) -> None:
    data = random.Random(size).randbytes(size)
    spool = Spool(spool_dir, direct=True)
    for piece in odd_pieces(data, size):
        write_like_upload(spool, kind(piece))
    assert spool.size == size and spool.fully_hashed
    if direct_io_works(spool_dir):
        assert spool.direct_bytes == size // STAGE * STAGE
    assert spool.digest() == sha_digest(data)
    path = spool.detach()
    assert path.read_bytes() == data
    path.unlink()


def test_nothing_reaches_the_file_until_a_stage_fills(spool_dir: Path) -> None:
    spool = Spool(spool_dir, direct=True)
    path = spool.path  # a direct spool is a file from the start
    assert path is not None
    spool.append(b"x" * (STAGE - 1))
    assert spool.staged == STAGE - 1 and os.path.getsize(path) == 0
    spool.append(b"yz")
    assert spool.staged == 1 and os.path.getsize(path) == STAGE
    spool.sync()  # writes the staged byte, leaves direct mode
    assert not spool.direct and spool.staged == 0
    assert path.read_bytes() == b"x" * (STAGE - 1) + b"yz"
    spool.discard()
    assert not path.exists()


def test_appends_then_random_writes_and_truncates(spool_dir: Path) -> None:
    rng = random.Random(5)
    model = bytearray()
    spool = Spool(spool_dir, direct=True)
    for piece in odd_pieces(rng.randbytes(2 * STAGE + 777), 1):
        write_like_upload(spool, piece)
        model += piece
    assert spool.direct
    # Rewrite bytes that went out O_DIRECT and bytes still staged, then cut and grow.
    for offset, length in [(100, 5000), (2 * STAGE + 10, 300), (STAGE - 3, 9)]:
        patch = rng.randbytes(length)
        spool.pwrite(patch, offset)
        model[offset : offset + length] = patch
        assert not spool.direct
    spool.truncate(STAGE + 12)
    del model[STAGE + 12 :]
    for piece in odd_pieces(rng.randbytes(STAGE + 3), 2):
        spool.append(piece)
        model += piece
    assert spool.size == len(model) and not spool.fully_hashed
    assert spool.read(STAGE - 10, 40) == bytes(model[STAGE - 10 : STAGE + 30])
    assert spool.digest() == sha_digest(bytes(model))
    assert spool.detach().read_bytes() == model


def test_digest_rehashes_staged_bytes_that_were_never_hashed(spool_dir: Path) -> None:
    data = random.Random(2).randbytes(STAGE + 4097)
    spool = Spool(spool_dir, direct=True)
    spool.write_bytes(data, 0)  # the write half alone: the hash must come from the file
    assert not spool.fully_hashed and spool.staged == 4097
    assert spool.digest() == sha_digest(data)
    assert spool.detach().read_bytes() == data


@pytest.mark.parametrize("leave", ["truncate", "read", "hole"])
def test_leaving_direct_mode_keeps_the_staged_bytes(spool_dir: Path, leave: str) -> None:
    head = random.Random(9).randbytes(STAGE + 4321)
    spool = Spool(spool_dir, direct=True)
    spool.append(head)
    model = bytearray(head)
    if leave == "truncate":
        spool.truncate(STAGE + 4000)  # inside the staged part
        del model[STAGE + 4000 :]
    elif leave == "read":
        assert spool.read(STAGE - 1, 10) == head[STAGE - 1 : STAGE + 9]
    else:
        spool.pwrite(b"after a hole", len(head) + 100)
        model += bytes(100) + b"after a hole"
    assert not spool.direct
    spool.append(b"tail")
    model += b"tail"
    assert spool.digest() == hashlib.sha256(model).digest()
    assert spool.detach().read_bytes() == model


class RefusedOpen(Spool):
    """A filesystem that refuses O_DIRECT when the file is opened (older tmpfs)."""

    def _open_direct(self) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")


class RefusedWrite(Spool):
    """A filesystem that opens O_DIRECT but refuses the write itself."""

    def _pwrite_direct(self, stage: mmap.mmap, offset: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")


class ShortWrite(Spool):
    """A disk that takes only part of a direct write (as one nearly full may)."""

    def _pwrite_direct(self, stage: mmap.mmap, offset: int) -> int:
        with memoryview(stage) as view:
            return os.pwrite(self._direct_fd, view[: STAGE // 2], offset)


@pytest.mark.parametrize("kind", [RefusedOpen, RefusedWrite, ShortWrite])
def test_refused_or_short_direct_writes_fall_back_to_buffered(
    spool_dir: Path, kind: type[Spool]
) -> None:
    data = random.Random(3).randbytes(3 * STAGE + 12345)
    spool = kind(spool_dir, direct=True)
    for piece in odd_pieces(data, 4):
        write_like_upload(spool, piece)
    assert not spool.direct  # dropped out at the first full stage
    expected_direct = STAGE // 2 if kind is ShortWrite and direct_io_works(spool_dir) else 0
    assert spool.direct_bytes == expected_direct
    assert spool.fully_hashed and spool.digest() == sha_digest(data)
    assert spool.detach().read_bytes() == data


class FullDisk(Spool):
    def _pwrite_direct(self, stage: mmap.mmap, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_reported_not_swallowed(spool_dir: Path) -> None:
    spool = FullDisk(spool_dir, direct=True)
    with pytest.raises(OSError) as full:
        spool.append(bytes(STAGE))
    assert full.value.errno == errno.ENOSPC
    spool.discard()
    assert list(spool_dir.iterdir()) == []


# -- memory mode ----------------------------------------------------------------------

MEMORY_MAX = 64 << 10


def test_a_small_spool_stays_in_memory_through_every_operation(spool_dir: Path) -> None:
    rng = random.Random(8)
    spool = Spool(spool_dir, memory_max=MEMORY_MAX)
    model = bytearray()
    for piece in odd_pieces(rng.randbytes(20_000), 3):
        spool.append(piece)
        model += piece
    assert spool.fully_hashed
    spool.pwrite(b"patch", 100)  # a rewrite: the hash goes stale
    model[100:105] = b"patch"
    spool.pwrite(b"far", 30_000)  # past the end: a hole of zeros
    model += bytes(30_000 - len(model)) + b"far"
    spool.truncate(25_000)
    del model[25_000:]
    spool.truncate(26_000)
    model += bytes(1000)
    assert spool.in_memory and list(spool_dir.iterdir()) == []
    assert spool.size == len(model) and spool.contents() == model
    assert spool.read(24_990, 100) == model[24_990:25_090]
    assert spool.digest() == sha_digest(bytes(model))
    spool.discard()
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize("growth", ["append", "hole", "truncate"])
def test_outgrowing_memory_moves_every_byte_to_a_file(spool_dir: Path, growth: str) -> None:
    rng = random.Random(9)
    spool = Spool(spool_dir, memory_max=MEMORY_MAX)
    model = bytearray(rng.randbytes(MEMORY_MAX - 10))
    spool.append(bytes(model))
    assert not spool.creates_file(MEMORY_MAX) and spool.creates_file(MEMORY_MAX + 1)
    if growth == "append":
        tail = rng.randbytes(5000)
        spool.append(tail)
        model += tail
    elif growth == "hole":
        spool.pwrite(b"end", 3 * MEMORY_MAX)
        model += bytes(3 * MEMORY_MAX - len(model)) + b"end"
    else:
        spool.truncate(2 * MEMORY_MAX)
        model += bytes(2 * MEMORY_MAX - len(model))
    assert not spool.in_memory and len(list(spool_dir.iterdir())) == 1
    assert spool.digest() == sha_digest(bytes(model))
    assert spool.detach().read_bytes() == model


def test_detaching_a_memory_spool_writes_its_file(spool_dir: Path) -> None:
    spool = Spool(spool_dir, memory_max=MEMORY_MAX)
    spool.append(b"small but wanted as a file")
    path = spool.detach()
    assert path.parent == spool_dir and path.read_bytes() == b"small but wanted as a file"


async def test_a_small_incoming_style_spool_commits_from_memory(axon: Axon) -> None:
    spool = axon.store.new_spool(memory_max=MEMORY_MAX)
    spool.append(b"committed without a spool file")
    row = await axon.save_spool(spool)
    assert row.sha256 == sha_digest(b"committed without a spool file")
    assert spool.path is None and list(axon.store.tmp.iterdir()) == []  # no file, ever
    assert (
        b"".join([piece async for piece in axon.get(row.sha256)])
        == b"committed without a spool file"
    )


# -- on a real tmpfs (root only) -------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "tmpfs"
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={3 * STAGE // 2}", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_on_tmpfs_whichever_way_it_takes_o_direct(small_tmpfs: Path) -> None:
    data = random.Random(6).randbytes(STAGE + 99)
    spool = Spool(small_tmpfs, direct=True)
    for piece in odd_pieces(data, 6):
        write_like_upload(spool, piece)
    assert spool.direct_bytes in (0, STAGE)
    assert spool.digest() == sha_digest(data)
    path = spool.detach()
    assert path.read_bytes() == data
    path.unlink()


def test_on_a_full_tmpfs_appends_raise_enospc(small_tmpfs: Path) -> None:
    spool = Spool(small_tmpfs, direct=True)
    with pytest.raises(OSError) as full:
        for _ in range(4):
            spool.append(bytes(STAGE))
        spool.sync()
    assert full.value.errno == errno.ENOSPC
    spool.discard()
    assert list(small_tmpfs.iterdir()) == []


# -- through Axon.upload() --------------------------------------------------------------


async def test_upload_sizes_round_trip_through_get(axon: Axon) -> None:
    direct = direct_io_works(axon.store.tmp)
    async with await axon.upload() as upload:
        for size in SIZES:
            data = random.Random(size).randbytes(size)
            for piece in odd_pieces(data, size + 1):
                await upload.write(piece)
            if direct and size >= STAGE:
                assert upload._spool is not None
                assert upload._spool.direct_bytes == size // STAGE * STAGE
            assert await upload.save() == (size, sha_digest(data))
            assert await read_all(axon, sha_digest(data)) == data
    assert spool_files(axon.store.root) == []


async def test_upload_of_small_writes_across_stages(axon: Axon) -> None:
    data = random.Random(8).randbytes(2 * STAGE + 3)
    async with await axon.upload() as upload:
        for offset in range(0, len(data), 64 << 10):  # inline writes, some fill a stage
            await upload.write(data[offset : offset + (64 << 10)])
        assert await upload.save() == (len(data), sha_digest(data))
    assert await read_all(axon, sha_digest(data)) == data
