"""Local reads on the trio thread never wait for a disk.

``LocalReader.read_cached`` (``preadv2`` with ``RWF_NOWAIT``) answers only
from the page cache; a blob evicted from it must come back as None, so the
caller reads it from a worker thread instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from axonfs.axon import Axon
from axonfs.backends.local import LocalBackend
from axonfs.hashing import Sha256

from .storetools import sha256


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def test_evicted_blob_is_not_read_inline(store_dir: Path) -> None:
    data = os.urandom(256 << 10)
    async with Axon.open(store_dir) as axon:
        await axon.put(data)
    backend = LocalBackend(store_dir / "blobs")
    try:
        path = backend.path_of(Sha256(sha256(data)))
        evict(path)
        with backend.open(Sha256(sha256(data))) as reader:
            assert reader.read_cached(4096, 4096) is None
            assert not reader.is_cached(4096, 4096)  # type: ignore[attr-defined]
            assert reader.read(0, len(data)) == data  # brings it into the page cache
            assert reader.read_cached(4096, 4096) == data[4096:8192]
            assert reader.is_cached(0, len(data))  # type: ignore[attr-defined]
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
            evict(axon.backend.path_of(Sha256(sha)))  # type: ignore[attr-defined]
            assert await axon.read(reader, 1000, 5000) == data[1000:6000]
        finally:
            reader.close()
