"""Local reads on the trio thread never wait for a disk.

``LocalReader.read_cached`` (``preadv2`` with ``RWF_NOWAIT``) answers only
from the page cache; a blob evicted from it must come back as None, so the
caller reads it from a worker thread instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.backends.local import (
    DIRECT_BUFFER,
    DIRECT_READ_MIN,
    LocalBackend,
    LocalReader,
    _direct_buffers,
)
from axonfs.hashing import Sha256
from axonfs.store.spool import STAGE

EVICTIONS = 5


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        # A read waits for pages still being read in (the store asks for a blob's
        # pages after an upload): dropped before that ends, they would come back.
        while os.read(fd, 1 << 20):
            pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def probe_after_evicting(path: Path, probe: Callable[[], bool]) -> bool:
    """Evict *path*'s pages, then run *probe*: one try of an ``any()``."""
    evict(path)
    return probe()


async def test_evicted_blob_is_not_read_inline(store_dir: Path) -> None:
    data = os.urandom(256 << 10)
    async with Axon.open(store_dir) as axon:
        await axon.put(data)
    backend = LocalBackend(store_dir / "blobs")
    try:
        path = backend.path_of(Sha256(sha_digest(data)))
        with backend.open(Sha256(sha_digest(data))) as reader:
            # Evicted before each probe: a refused RWF_NOWAIT read may start the
            # kernel's readahead, which caches the pages a moment later. On a busy
            # machine an eviction is now and then undone before the probe (about
            # one run in thirty), so each probe gets a few evictions.
            assert isinstance(reader, LocalReader)
            assert any(
                probe_after_evicting(path, lambda: reader.read_cached(4096, 4096) is None)
                for _ in range(EVICTIONS)
            )
            assert any(
                probe_after_evicting(path, lambda: not reader.is_cached(4096, 4096))
                for _ in range(EVICTIONS)
            )
            assert reader.read(0, len(data)) == data  # brings it into the page cache
            assert reader.read_cached(4096, 4096) == data[4096:8192]
            assert reader.is_cached(0, len(data))
            assert reader.read_cached(len(data) - 10, 100) == data[-10:]
    finally:
        backend.close()


async def test_axon_read_falls_back_to_a_thread_when_cold(store_dir: Path) -> None:
    data = os.urandom(100_000)
    async with Axon.open(store_dir) as axon:
        _, sha = await axon.put(data)
        await axon.spill_journal()  # a file, not the journal's bytes
        reader = await axon.open_reader(sha)
        try:
            assert isinstance(axon.backend, LocalBackend)
            evict(axon.backend.path_of(Sha256(sha)))
            assert await axon.read(reader, 1000, 5000) == data[1000:6000]
        finally:
            reader.close()


def resident_bytes(path: Path) -> int:
    """Bytes of *path* in the page cache, by util-linux's fincore (mincore(2)):
    unlike a probing read, asking does not bring anything in."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


async def test_an_upload_and_its_get_leave_the_page_cache_alone(store_dir: Path) -> None:
    """Uploads bypass the page cache (O_DIRECT), and a get of the cold blob
    reads round it: the bytes come back whole and nothing is cached."""
    data = os.urandom(3 * STAGE + 5)
    async with Axon.open(store_dir) as axon:
        async with await axon.upload() as upload:
            await upload.write(data)
            _, sha = await upload.save()
        assert isinstance(axon.backend, LocalBackend)
        path = axon.backend.path_of(Sha256(sha))
        assert b"".join([piece async for piece in axon.get(sha)]) == data
        assert resident_bytes(path) < 1 << 20  # what the probes of the cache brought in


def stored_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path


def test_a_large_cold_read_goes_round_the_page_cache(tmp_path: Path) -> None:
    """A large read of pages not in memory is read ``O_DIRECT``: right bytes,
    wherever the range starts and ends, and nothing left in the page cache."""
    data = os.urandom(DIRECT_BUFFER + 3 * DIRECT_READ_MIN + 777)  # the end is not aligned
    path = stored_file(tmp_path, data)
    fd = os.open(path, os.O_RDONLY)
    with LocalReader(fd, len(data)) as reader:
        ranges = [
            (0, DIRECT_READ_MIN),
            (12345, DIRECT_BUFFER),  # unaligned, and wider than one buffer once aligned
            (len(data) - DIRECT_READ_MIN - 10, DIRECT_READ_MIN + 100),  # past the end
        ]
        for offset, size in ranges:
            evict(path)
            assert reader.read(offset, size) == data[offset : offset + size]
            # The probes of the cache may bring in a page or two, never the range.
            assert resident_bytes(path) < 1 << 20


def test_a_large_read_of_cached_pages_comes_from_memory(tmp_path: Path) -> None:
    data = os.urandom(2 * DIRECT_READ_MIN)
    path = stored_file(tmp_path, data)
    fd = os.open(path, os.O_RDONLY)
    with LocalReader(fd, len(data)) as reader:
        assert resident_bytes(path) == len(data)  # written through the cache
        assert reader.read(0, len(data)) == data
        assert isinstance(reader, LocalReader)
        assert reader._direct_fd < 0  # never needed a direct descriptor


def test_reads_go_through_the_cache_when_no_direct_buffer_is_free(tmp_path: Path) -> None:
    data = os.urandom(DIRECT_READ_MIN + 4096)
    path = stored_file(tmp_path, data)
    taken = []
    while (buffer := _direct_buffers.take()) is not None:
        taken.append(buffer)
    try:
        fd = os.open(path, os.O_RDONLY)
        with LocalReader(fd, len(data)) as reader:
            evict(path)
            assert reader.read(0, len(data)) == data
            assert resident_bytes(path) == len(data)  # read through the cache
    finally:
        for buffer in taken:
            _direct_buffers.give(buffer)
