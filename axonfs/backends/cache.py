"""A local, size-capped LRU cache of blob blocks for remote backends.

A remote blob is read in aligned blocks (``block_size`` bytes, the last one
shorter). Blocks are kept in *segment* files, each holding up to
``blocks_per_segment`` consecutive blocks of one blob at their offsets (a
block never fetched is a hole)::

    <cache dir>/segments-<block size>x<blocks per segment>/
        <hex[:2]>/<sha256hex>.<blob size>.<segment number>

One file per block cost a file create per block, and on the machines measured
a create (and the unlink of an evicted block) took more kernel time than
writing the block's bytes. Blobs are immutable, so a cached block never goes
stale and needs no validation beyond being whole. The blob's size in the file
name lets a reader open a blob whose blocks are cached without asking the
server (so cached blobs stay readable while the server is down, even after a
restart); the block and segment sizes in the directory name keep the files of
another configuration apart.

The cache holds at most ``capacity`` bytes of blocks. The unit of recency and
eviction is the segment: using a block refreshes its segment, and putting a
block evicts the least recently used segments (their files are unlinked) until
the blocks fit. Segments are small beside the capacity (at most an eighth of
it), so a small cache still holds several; their number of blocks is a power
of two, so that changing the capacity of a cache of 512 MiB or more keeps
its files (the segment size is in the directory's name). Recency lives in
memory; on start-up the directory is scanned, each file's written ranges are
found with ``SEEK_DATA``/``SEEK_HOLE`` (a block counts only if it is wholly
written), and segments are ordered by modification time (the best guess left
after a restart). Blocks are written round the page cache (``O_DIRECT``, see
:mod:`axonfs.backends.direct`): a cold read then fills the cache as fast as
the network brings blocks, which buffered writes could not match once the
page cache had to grow. A block is read through the page cache, unless it is
part of a bulk read and its pages are not in memory.

Crashes: a block is recorded as cached only once its write returned; a write
that a crash cut short leaves an unwritten range (a hole, or an extent the
filesystem still marks unwritten), which the scan does not count.

Concurrency: thread-safe. One lock guards the bookkeeping, and eviction
unlinks segment files under it; block reads and writes run outside it. Every
segment has a generation, new each time it is created: a write is recorded
only if its segment is still the one it started in, and a read is used only
if its block was still cached, in the same generation, after the read. So a
reader that races an eviction sees a miss, never the zeros of a hole in a
file created after the eviction.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from axonfs.backends.direct import (
    ALIGN,
    O_DIRECT,
    DirectBuffers,
    pages_cached,
    read_direct,
    refused,
    set_direct,
    write_direct,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SEGMENT_MAX = 64 << 20
"""A segment file covers at most this many bytes of a blob."""
RUN_MAX = 8 << 20
"""Consecutive blocks put together are written with one write of up to this size."""
_DIRECT_BUFFERS = 4

SegmentKey = tuple[str, int]
"""(sha256 hex, segment number)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of the cache's counters."""

    hits: int
    misses: int
    evictions: int
    blocks: int
    bytes: int
    capacity: int


@dataclass(slots=True)
class _Segment:
    """What the cache holds of one segment of one blob."""

    blob_size: int
    generation: int
    blocks: dict[int, int] = field(default_factory=dict)  # block index -> bytes
    bytes: int = 0


class BlockCache:
    """Blocks of immutable blobs on local disk, least recently used evicted."""

    def __init__(self, directory: Path, capacity: int, block_size: int) -> None:
        self.capacity = max(0, capacity)
        self.block_size = block_size
        fit = max(1, min(SEGMENT_MAX, self.capacity // 8) // block_size)
        self.blocks_per_segment = 1 << (fit.bit_length() - 1)
        self.directory = directory
        self.root = directory / f"segments-{block_size}x{self.blocks_per_segment}"
        self._lock = threading.Lock()
        self._segments: OrderedDict[SegmentKey, _Segment] = OrderedDict()  # LRU first
        self._sizes: dict[str, tuple[int, int]] = {}  # hex -> (blob size, cached segments)
        self._generations = itertools.count(1)
        self._bytes = self._blocks = 0
        self._hits = self._misses = self._evictions = 0
        self._loaded = False
        # One buffer per thread that may read or write a block at once: a
        # stream's cache writer, a few readahead fetches, a reader.
        self._buffers = DirectBuffers(_DIRECT_BUFFERS, max(block_size, RUN_MAX))
        # Offsets in a segment are multiples of the block size.
        self._direct_refused = not O_DIRECT or block_size % ALIGN != 0

    # -- lookups -------------------------------------------------------------------

    def get(self, sha_hex: str, index: int, blob_size: int, bulk: bool = False) -> bytes | None:
        """Return the cached block, or None (and count a miss).

        *bulk*: the block is part of a large read, so it is read round the
        page cache unless its pages are there already.
        """
        self._load()
        key = self._key(sha_hex, index)
        with self._lock:
            segment = self._segments.get(key)
            size = segment.blocks.get(index) if segment is not None else None
            if segment is None or size is None:
                self._misses += 1
                return None
            self._segments.move_to_end(key)
            generation = segment.generation
        data = self._read(key, blob_size, index, size, bulk)
        with self._lock:
            segment = self._segments.get(key)
            if (
                data is None
                or segment is None
                or segment.generation != generation
                or index not in segment.blocks
            ):
                self._misses += 1
                return None
            self._hits += 1
        return data

    def contains(self, sha_hex: str, index: int) -> bool:
        """True if the block is cached (no file access, no recency change)."""
        self._load()
        with self._lock:
            segment = self._segments.get(self._key(sha_hex, index))
            return segment is not None and index in segment.blocks

    def known_size(self, sha_hex: str) -> int | None:
        """The size of a blob of which at least one block is cached."""
        self._load()
        with self._lock:
            known = self._sizes.get(sha_hex)
        return None if known is None else known[0]

    # -- changes -------------------------------------------------------------------

    def put(self, sha_hex: str, index: int, blob_size: int, data: bytes) -> None:
        """Keep *data* as block *index* of the blob, evicting older segments to fit."""
        self.put_blocks(sha_hex, index, blob_size, [data])

    def put_blocks(self, sha_hex: str, first: int, blob_size: int, blocks: Sequence[bytes]) -> None:
        """Keep consecutive *blocks* of the blob, from block *first* on.

        Blocks bound for the same segment file go in one write of up to
        :data:`RUN_MAX` bytes: each write waits for the disk, and a stream
        brings blocks faster than one write at a time can take them.
        """
        if not self.capacity:
            return
        self._load()
        per_run = max(1, RUN_MAX // self.block_size)
        run: list[bytes] = []
        for index, data in enumerate(blocks, first):
            if run and (
                self._key(sha_hex, index) != self._key(sha_hex, index - 1) or len(run) == per_run
            ):
                self._put_run(sha_hex, index - len(run), blob_size, run)
                run = []
            run.append(data)
        if run:
            self._put_run(sha_hex, first + len(blocks) - len(run), blob_size, run)

    def _put_run(self, sha_hex: str, first: int, blob_size: int, blocks: list[bytes]) -> None:
        """Write consecutive blocks of one segment with one write, then record them."""
        if sum(len(data) for data in blocks) > self.capacity:
            return
        key = self._key(sha_hex, first)
        with self._lock:
            segment = self._segments.get(key)
            if segment is None:
                segment = self._segments[key] = _Segment(blob_size, next(self._generations))
                known, count = self._sizes.get(sha_hex, (blob_size, 0))
                self._sizes[sha_hex] = (known, count + 1)
            self._segments.move_to_end(key)
            if all(first + i in segment.blocks for i in range(len(blocks))):
                return
            generation = segment.generation
        path = self._path(key, blob_size)
        try:
            fd = self._open_for_write(path)
            try:
                self._write(fd, self._offset(first), blocks)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("read cache: cannot store blocks of %s: %s", sha_hex, exc)
            with self._lock:
                self._drop_if_empty_locked(key, generation)
            return
        with self._lock:
            segment = self._segments.get(key)
            if segment is None or segment.generation != generation:
                # Evicted while written. A file this write created after the
                # eviction's unlink belongs to nobody: remove it. A segment
                # created since owns the file (same blob, same bytes).
                if segment is None:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                return
            for index, data in enumerate(blocks, first):
                if index not in segment.blocks:
                    segment.blocks[index] = len(data)
                    segment.bytes += len(data)
                    self._bytes += len(data)
                    self._blocks += 1
            self._evict_locked()

    def discard(self, sha_hex: str) -> None:
        """Forget every cached block of a blob (it was deleted)."""
        self._load()
        with self._lock:
            for key in [key for key in self._segments if key[0] == sha_hex]:
                self._remove_locked(key)

    def stats(self) -> CacheStats:
        self._load()
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._blocks,
                self._bytes,
                self.capacity,
            )

    # -- file I/O ------------------------------------------------------------------

    def _key(self, sha_hex: str, index: int) -> SegmentKey:
        return sha_hex, index // self.blocks_per_segment

    def _offset(self, index: int) -> int:
        return (index % self.blocks_per_segment) * self.block_size

    def _path(self, key: SegmentKey, blob_size: int) -> Path:
        sha_hex, number = key
        return self.root / sha_hex[:2] / f"{sha_hex}.{blob_size}.{number}"

    @staticmethod
    def _open_for_write(path: Path) -> int:
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the first block under this hex prefix
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _write(self, fd: int, offset: int, blocks: list[bytes]) -> None:
        """Write consecutive *blocks* at *offset* of the segment file *fd*:
        ``O_DIRECT`` if a buffer is free and the filesystem allows it, else
        through the page cache."""
        if self._try_direct(fd, lambda buffer: write_direct(fd, buffer, blocks, offset)):
            return
        for data in blocks:
            with memoryview(data) as view:
                done = 0
                while done < len(view):
                    done += os.pwrite(fd, view[done:], offset + done)
            offset += len(data)

    def _read(
        self, key: SegmentKey, blob_size: int, index: int, size: int, bulk: bool
    ) -> bytes | None:
        """Block *index* (*size* bytes) from its segment file; None if the file
        is gone (evicted meanwhile) or unreadable."""
        try:
            fd = os.open(self._path(key, blob_size), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("read cache: cannot read a block of %s: %s", key[0], exc)
            return None
        try:
            data = self._read_file(fd, self._offset(index), size, bulk)
        except OSError as exc:
            log.warning("read cache: cannot read a block of %s: %s", key[0], exc)
            return None
        finally:
            os.close(fd)
        if len(data) != size:
            log.warning(
                "read cache: block %d of %s has %d bytes, not %d; dropped",
                index,
                key[0],
                len(data),
                size,
            )
            with self._lock:
                self._remove_locked(key)
            return None
        return data

    def _read_file(self, fd: int, offset: int, size: int, bulk: bool) -> bytes:
        """*size* bytes at *offset* of *fd*: ``O_DIRECT`` for a bulk read of
        pages not in memory (if a buffer is free), else through the page cache."""
        if bulk and not self._direct_refused and not pages_cached(fd, offset, size, offset + size):
            data = self._try_direct(
                fd, lambda buffer: read_direct(fd, buffer, offset, size, offset + size)
            )
            if data is not None:
                return data
        return os.pread(fd, size, offset)

    def _try_direct(self, fd: int, io: Callable[[mmap.mmap], _T]) -> _T | None:
        """``io(buffer)`` with *fd* switched to ``O_DIRECT`` and a free aligned
        buffer; None if no buffer is free or the filesystem refuses
        ``O_DIRECT`` (the caller then goes through the page cache)."""
        if self._direct_refused or (buffer := self._buffers.take()) is None:
            return None
        try:
            set_direct(fd, True)
            return io(buffer)
        except OSError as exc:
            if not refused(exc):
                raise
            log.debug("read cache: O_DIRECT refused, blocks go through the page cache")
            self._direct_refused = True
            set_direct(fd, False)
            return None
        finally:
            self._buffers.give(buffer)

    # -- bookkeeping ---------------------------------------------------------------

    def _evict_locked(self) -> None:
        while self._bytes > self.capacity and self._segments:
            self._remove_locked(next(iter(self._segments)))
            self._evictions += 1

    def _drop_if_empty_locked(self, key: SegmentKey, generation: int) -> None:
        segment = self._segments.get(key)
        if segment is not None and segment.generation == generation and not segment.blocks:
            self._remove_locked(key)

    def _remove_locked(self, key: SegmentKey) -> None:
        """Forget a segment and unlink its file, under the lock: a segment of
        the same key created later must not lose its file to this unlink."""
        segment = self._segments.pop(key, None)
        if segment is None:
            return
        self._bytes -= segment.bytes
        self._blocks -= len(segment.blocks)
        blob_size, count = self._sizes[key[0]]
        if count <= 1:
            del self._sizes[key[0]]
        else:
            self._sizes[key[0]] = (blob_size, count - 1)
        try:
            os.unlink(self._path(key, segment.blob_size))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("read cache: cannot remove blocks of %s: %s", key[0], exc)

    def _load(self) -> None:
        """Scan the directory once, on first use (it does disk I/O)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._remove_other_layouts()
            found = sorted(self._scan(), key=lambda item: item[0])
            for _, key, segment in found:
                segment.generation = next(self._generations)
                self._segments[key] = segment
                self._bytes += segment.bytes
                self._blocks += len(segment.blocks)
                blob_size, count = self._sizes.get(key[0], (segment.blob_size, 0))
                self._sizes[key[0]] = (blob_size, count + 1)
            self._evict_locked()
            self._loaded = True
        if found:
            log.info("read cache %s: %d blocks, %d bytes", self.root, self._blocks, self._bytes)

    def _remove_other_layouts(self) -> None:
        """Remove what older versions and other block sizes left in the
        cache directory: those blocks would never be read, and they would
        hold disk space the capacity does not count."""
        try:
            others = [
                entry
                for entry in os.scandir(self.directory)
                if entry.is_dir(follow_symlinks=False)
                and entry.path != str(self.root)
                and (entry.name.isdigit() or entry.name.startswith("segments-"))
            ]
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("read cache: cannot use %s: %s", self.directory, exc)
            return
        for entry in others:
            log.info("read cache: removing %s (another block size or layout)", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)

    def _scan(self) -> list[tuple[float, SegmentKey, _Segment]]:
        found: list[tuple[float, SegmentKey, _Segment]] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tops = list(os.scandir(self.root))
        except OSError as exc:
            log.warning("read cache: cannot use %s: %s", self.root, exc)
            return found
        for top in tops:
            if not top.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(top.path):
                parsed = _parse_name(entry.name)
                if parsed is None:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)  # a stranger
                    continue
                sha_hex, blob_size, number = parsed
                try:
                    mtime, segment = self._scan_file(entry.path, blob_size, number)
                except OSError as exc:
                    log.warning("read cache: cannot read %s: %s", entry.path, exc)
                    continue
                if segment.blocks:
                    found.append((mtime, (sha_hex, number), segment))
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        return found

    def _scan_file(self, path: str, blob_size: int, number: int) -> tuple[float, _Segment]:
        """The whole blocks written in one segment file."""
        segment = _Segment(blob_size, 0)
        first = number * self.blocks_per_segment
        blocks = min(self.blocks_per_segment, -(-blob_size // self.block_size) - first)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            ranges = _data_ranges(fd, st.st_size)
        finally:
            os.close(fd)
        for index in range(first, first + max(0, blocks)):
            start = self._offset(index)
            size = min(self.block_size, blob_size - index * self.block_size)
            if any(low <= start and start + size <= high for low, high in ranges):
                segment.blocks[index] = size
                segment.bytes += size
        return st.st_mtime, segment


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of *fd* that hold data, holes left out."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past offset
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        ranges.append((start, min(end, size)))
        offset = end
    return ranges


def _parse_name(name: str) -> tuple[str, int, int] | None:
    """Split ``<hex>.<blob size>.<segment>``; None for anything else."""
    parts = name.split(".")
    if len(parts) != 3 or len(parts[0]) != 64 or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return parts[0], int(parts[1]), int(parts[2])
