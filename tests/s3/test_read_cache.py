"""The read cache of remote backends on its own: segment files on a real disk.

No server here: ``BlockCache`` is fed blocks directly, as the block fetcher
and the stream's cache writer do.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import threading
from pathlib import Path

from axonfs.backends.cache import BlockCache
from axonfs.backends.direct import pages_cached

BLOCK = 64 << 10
PUTS = 3000


def block_of(sha_hex: str, index: int, blob_size: int) -> bytes:
    """Block *index* of a made-up blob: different for every blob and block."""
    size = min(BLOCK, blob_size - index * BLOCK)
    seed = hashlib.sha256(f"{sha_hex}/{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def blob_name(number: int) -> str:
    return hashlib.sha256(b"blob %d" % number).hexdigest()


def segment_files(cache: BlockCache) -> list[Path]:
    return sorted(path for path in cache.root.rglob("*") if path.is_file())


def test_blocks_share_segment_files_and_survive_a_restart(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    assert cache.blocks_per_segment == 16
    sha, size = blob_name(1), 40 * BLOCK - 1000  # the last block is short
    for index in range(10):
        cache.put(sha, index, size, block_of(sha, index, size))
    # As a stream's cache writer puts them: many at once, across segments.
    cache.put_blocks(sha, 10, size, [block_of(sha, index, size) for index in range(10, 40)])
    assert len(segment_files(cache)) == 3  # 16 + 16 + 8 blocks
    assert cache.stats().bytes == size

    again = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    assert again.known_size(sha) == size
    assert again.stats().blocks == 40 and again.stats().bytes == size
    for index in range(40):
        assert again.get(sha, index, size) == block_of(sha, index, size)
        assert again.get(sha, index, size, bulk=True) == block_of(sha, index, size)


def test_a_block_not_wholly_written_is_not_found_after_a_restart(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    sha, size = blob_name(2), 16 * BLOCK
    for index in range(4):
        cache.put(sha, index, size, block_of(sha, index, size))
    (segment,) = segment_files(cache)
    # What a crash can leave: a range never written (a hole) and a file cut short.
    subprocess.run(
        ["fallocate", "--punch-hole", "--offset", str(BLOCK), "--length", "4096", segment],
        check=True,
    )
    os.truncate(segment, 3 * BLOCK + 100)

    again = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    assert [again.contains(sha, index) for index in range(4)] == [True, False, True, False]
    assert again.get(sha, 0, size) == block_of(sha, 0, size)
    assert again.get(sha, 1, size) is None
    assert again.stats().bytes == 2 * BLOCK


def test_eviction_is_by_least_recently_used_segment(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, capacity=32 * BLOCK, block_size=BLOCK)
    assert cache.blocks_per_segment == 4
    size = 4 * BLOCK
    blobs = [blob_name(10 + i) for i in range(9)]
    for sha in blobs[:8]:
        for index in range(4):
            cache.put(sha, index, size, block_of(sha, index, size))
    assert cache.get(blobs[0], 2, size) == block_of(blobs[0], 2, size)  # now the newest
    for index in range(4):
        cache.put(blobs[8], index, size, block_of(blobs[8], index, size))
    stats = cache.stats()
    assert stats.bytes == 32 * BLOCK and stats.evictions == 1
    assert not cache.contains(blobs[1], 0)  # the least recently used went whole
    assert all(cache.contains(blobs[0], index) for index in range(4))
    assert len(segment_files(cache)) == 8


def test_blocks_are_written_round_the_page_cache(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    sha, size = blob_name(3), 8 * BLOCK
    for index in range(8):
        cache.put(sha, index, size, block_of(sha, index, size))
    (segment,) = segment_files(cache)
    fd = os.open(segment, os.O_RDONLY)
    try:
        assert not pages_cached(fd, 0, size, size)
        # A bulk read leaves the pages out of memory; a small read caches them.
        assert cache.get(sha, 3, size, bulk=True) == block_of(sha, 3, size)
        assert not pages_cached(fd, 3 * BLOCK, BLOCK, size)
        assert cache.get(sha, 3, size) == block_of(sha, 3, size)
        assert pages_cached(fd, 3 * BLOCK, BLOCK, size)
    finally:
        os.close(fd)


def test_reads_racing_evictions_get_the_block_or_a_miss(tmp_path: Path) -> None:
    # Twelve segments fit: putting blocks of three blobs evicts all the time,
    # and segments of the same blob come back in new files while readers
    # still read the old ones. A reader must never see another block's
    # bytes, nor the zeros of a hole.
    cache = BlockCache(tmp_path, capacity=24 * BLOCK, block_size=BLOCK)
    assert cache.blocks_per_segment == 2
    size = 9 * BLOCK
    blobs = [blob_name(100 + i) for i in range(3)]
    wrong: list[str] = []
    hits = [0]
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(PUTS):
            sha, index = rng.choice(blobs), rng.randrange(9)
            cache.put(sha, index, size, block_of(sha, index, size))

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            sha, index = rng.choice(blobs), rng.randrange(9)
            got = cache.get(sha, index, size, bulk=rng.random() < 0.5)
            if got is not None:
                hits[0] += 1
                if got != block_of(sha, index, size):
                    wrong.append(f"{sha[:8]} block {index}")

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2)]
    readers = [threading.Thread(target=reader, args=(seed,)) for seed in (3, 4)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in writers + readers)
    assert wrong == []
    assert hits[0] > 0 and cache.stats().evictions > 100
    assert cache.stats().bytes <= 24 * BLOCK
    # What the cache counts is what its files hold, nothing left behind.
    held = sum(len(segment.blocks) for segment in cache._segments.values())
    assert held == cache.stats().blocks
    assert len(segment_files(cache)) == len(cache._segments)


class _EvictedMidRead(BlockCache):
    """Between a get's lookup and its file read, the segment is evicted and
    comes back in a new file holding another block (the interleaving the
    stress test above can only hope to hit)."""

    def _read(
        self, key: tuple[str, int], blob_size: int, index: int, size: int, bulk: bool
    ) -> bytes | None:
        sha_hex = key[0]
        self.discard(sha_hex)
        other = index + 1
        self.put(sha_hex, other, blob_size, block_of(sha_hex, other, blob_size))
        return super()._read(key, blob_size, index, size, bulk)


def test_a_read_whose_segment_was_evicted_meanwhile_is_a_miss(tmp_path: Path) -> None:
    cache = _EvictedMidRead(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    sha, size = blob_name(5), 4 * BLOCK
    BlockCache.put(cache, sha, 1, size, block_of(sha, 1, size))
    # The new file has a hole where block 1 was: zeros, had the read been used.
    assert cache.get(sha, 1, size) is None
    assert cache.contains(sha, 2) and not cache.contains(sha, 1)


def test_a_new_capacity_keeps_the_cached_blocks(tmp_path: Path) -> None:
    sha, size = blob_name(8), 4 * BLOCK
    cache = BlockCache(tmp_path, capacity=1 << 30, block_size=BLOCK)
    cache.put_blocks(sha, 0, size, [block_of(sha, index, size) for index in range(4)])
    bigger = BlockCache(tmp_path, capacity=20 << 30, block_size=BLOCK)
    assert bigger.blocks_per_segment == cache.blocks_per_segment == 1024
    assert bigger.get(sha, 3, size) == block_of(sha, 3, size)
    # A capacity below what the cache holds keeps the newest blocks that fit.
    smaller = BlockCache(tmp_path, capacity=600 << 20, block_size=BLOCK)
    assert smaller.root == cache.root and smaller.stats().blocks == 4


def test_blocks_of_an_older_layout_are_removed(tmp_path: Path) -> None:
    old = tmp_path / str(BLOCK) / "ab"
    old.mkdir(parents=True)
    (old / f"{blob_name(4)}.{BLOCK}.0").write_bytes(b"x" * BLOCK)
    kept = tmp_path / "notes"
    kept.mkdir()
    cache = BlockCache(tmp_path, capacity=128 * BLOCK, block_size=BLOCK)
    assert cache.stats().blocks == 0
    assert not (tmp_path / str(BLOCK)).exists()
    assert kept.exists()  # not the cache's: left alone


def test_blocks_o_direct_cannot_align_go_through_the_page_cache(tmp_path: Path) -> None:
    odd = 5000  # offsets in a segment file are multiples of the block size
    cache = BlockCache(tmp_path, capacity=128 * odd, block_size=odd)
    sha, size = blob_name(6), 3 * odd - 7
    blocks = [os.urandom(min(odd, size - i * odd)) for i in range(3)]
    cache.put_blocks(sha, 0, size, blocks)
    (segment,) = segment_files(cache)
    fd = os.open(segment, os.O_RDONLY)
    try:
        assert pages_cached(fd, 0, size, size)  # written through the page cache
    finally:
        os.close(fd)
    again = BlockCache(tmp_path, capacity=128 * odd, block_size=odd)
    assert [again.get(sha, i, size, bulk=True) for i in range(3)] == blocks
