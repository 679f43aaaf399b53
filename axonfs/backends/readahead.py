"""Block reads of remote blobs: shared fetches, spans and sequential readahead.

A remote blob is read in aligned blocks of ``block_size`` bytes, each kept in
the local :class:`~axonfs.backends.cache.BlockCache`. :class:`BlockFetcher`
makes sure a block is fetched once however many threads want it (an in-flight
table of futures), and can fetch a *span* of consecutive blocks with one
ranged request, which is how readahead saves requests: a sequential reader
asks for many blocks at a time instead of one request per block. A span's
blocks are cached and handed out as they arrive, so a reader waits for the
block it needs, not for the whole span.

:class:`BlockReader` is the :class:`~axonfs.backends.base.BlobReader` handed
out by remote backends. A read that continues where the previous one ended,
or starts at offset 0 (as the kernel's readahead assumes), extends a
sequential run; the longer the run, the wider the window of blocks kept
fetched (or being fetched) beyond the read, up to ``readahead_blocks``. The
window is refilled when less than half of it is left, so steady sequential
reading costs one request per half window. Any other read resets the run,
so a small random read fetches only the block it touches; a larger one
fetches the blocks it lacks with one request too.

Concurrency: thread-safe. Spans run on the backend's thread pool; a waiter
for a block in flight blocks on its future. A span task is never cancelled
once its blocks are claimed, so no waiter is left hanging; at most one
window of blocks is fetched in vain when a reader stops early.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from axonfs.backends.base import BlobReader
from axonfs.backends.cache import BlockCache
from axonfs.errors import BackendError

log = logging.getLogger(__name__)

BULK_READ_MIN = 4 << 20
"""Reads of at least this many bytes read cached blocks that are not in the
page cache round it (:meth:`BlockCache.get`); smaller reads, such as the
mount's, are likely to come back to the same block and keep it in memory."""

Deliver = Callable[[int, bytes], None]
"""``deliver(offset, data)``: one block of a span, as it arrives."""
GetBlocks = Callable[[str, int, int, int, Deliver], None]
"""``get_blocks(sha_hex, start, end, block_size, deliver)``: fetch the bytes
``[start, end)`` of a blob (``start`` block-aligned) and hand each block to
``deliver`` in order, as it arrives."""


class BlockFetcher:
    """Fetches blocks of blobs through the cache, each block at most once at a time."""

    def __init__(
        self,
        cache: BlockCache,
        block_size: int,
        readahead_blocks: int,
        get_blocks: GetBlocks,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.cache = cache
        self.block_size = block_size
        self.readahead_blocks = readahead_blocks
        self._get_blocks = get_blocks
        self._pool = pool
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, int], Future[bytes]] = {}

    def block(self, sha_hex: str, index: int, blob_size: int, bulk: bool = False) -> bytes:
        """Return block *index*: from the cache, a fetch in flight, or a new fetch.

        *bulk*: the block is part of a large read (see :meth:`BlockCache.get`).
        """
        data = self.cache.get(sha_hex, index, blob_size, bulk)
        if data is not None:
            return data
        claimed = self._claim(sha_hex, index, 1)
        if claimed:
            self._fetch(sha_hex, claimed, blob_size)
            return claimed[index].result()
        with self._lock:
            future = self._inflight.get((sha_hex, index))
        if future is not None:
            return future.result()
        return self.block(sha_hex, index, blob_size, bulk)  # it just landed in the cache

    def prefetch(
        self, sha_hex: str, first: int, count: int, blob_size: int
    ) -> dict[int, Future[bytes]]:
        """Start fetching up to *count* blocks from *first* with one request.

        The span stops before the first block that is cached or already in
        flight; returns the futures of the blocks it claimed (maybe none).
        """
        claimed = self._claim(sha_hex, first, count)
        if claimed:
            self._pool.submit(self._fetch, sha_hex, claimed, blob_size)
        return claimed

    def fail_all(self, exc: BaseException) -> None:
        """Fail every fetch still in flight (the pool is shutting down)."""
        with self._lock:
            pending, self._inflight = self._inflight, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    def _claim(self, sha_hex: str, first: int, count: int) -> dict[int, Future[bytes]]:
        claimed: dict[int, Future[bytes]] = {}
        with self._lock:
            for index in range(first, first + count):
                key = (sha_hex, index)
                if key in self._inflight or (claimed and self.cache.contains(sha_hex, index)):
                    break
                claimed[index] = self._inflight[key] = Future()
        return claimed

    def _fetch(self, sha_hex: str, claimed: dict[int, Future[bytes]], blob_size: int) -> None:
        """Fetch the claimed consecutive blocks with one request; settle their futures.

        Failures reach whoever waits for a block, if anyone.
        """
        first, last = min(claimed), max(claimed)

        def deliver(offset: int, data: bytes) -> None:
            index = offset // self.block_size
            future = claimed[index]
            self.cache.put(sha_hex, index, blob_size, data)
            if not future.done():  # fail_all may have settled it (closing)
                future.set_result(data)
            with self._lock:
                if self._inflight.get((sha_hex, index)) is future:
                    del self._inflight[(sha_hex, index)]

        try:
            self._get_blocks(
                sha_hex,
                first * self.block_size,
                min(blob_size, (last + 1) * self.block_size),
                self.block_size,
                deliver,
            )
        except BaseException as exc:
            for future in claimed.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            with self._lock:
                for index, future in claimed.items():
                    if self._inflight.get((sha_hex, index)) is future:
                        del self._inflight[(sha_hex, index)]
            for future in claimed.values():
                if not future.done():  # the stream ended early without an error
                    future.set_exception(BackendError(f"blob {sha_hex}: a block never came"))


class BlockReader(BlobReader):
    """Random reads of one blob through a :class:`BlockFetcher`, with readahead."""

    def __init__(self, fetcher: BlockFetcher, sha_hex: str, size: int) -> None:
        self.size = size
        self._fetcher = fetcher
        self._sha_hex = sha_hex
        self._block_size = fetcher.block_size
        self._blocks = -(-size // self._block_size)
        self._lock = threading.Lock()
        self._ahead: dict[int, Future[bytes]] = {}
        self._next_offset = 0  # a first read at 0 starts a sequential run
        self._run = 0

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset < 0 or offset >= end:
            return b""
        first, last = offset // self._block_size, (end - 1) // self._block_size
        self._read_ahead(offset, end, first, last)
        bulk = end - offset >= BULK_READ_MIN
        pieces = [self._block(index, bulk) for index in range(first, last + 1)]
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        skip = offset - first * self._block_size
        if skip == 0 and len(data) == end - offset:
            return data
        return data[skip : skip + end - offset]

    def _read_ahead(self, offset: int, end: int, first: int, last: int) -> None:
        """Start fetching what this read lacks (if several blocks) and, if it
        continues a run, the window beyond it."""
        with self._lock:
            sequential = offset == self._next_offset
            self._run = self._run + (end - offset) if sequential else 0
            self._next_offset = end
            for index in [i for i in self._ahead if i < first]:
                del self._ahead[index]  # skipped over; its fetch completes unobserved
            window = 0
            if sequential:
                window = min(self._fetcher.readahead_blocks, 1 + self._run // self._block_size)
            stop = min(last + 1 + window, self._blocks)
            index = first if last > first else last + 1
            while index < stop and self._is_coming(index):
                index += 1
            if index > last and (index - last - 1) * 2 > window:
                return  # more than half the window is still ahead
            while index < stop:
                claimed = self._fetcher.prefetch(self._sha_hex, index, stop - index, self.size)
                self._ahead.update(claimed)
                index = max(claimed) + 1 if claimed else index + 1
                while index < stop and self._is_coming(index):
                    index += 1

    def _is_coming(self, index: int) -> bool:
        return index in self._ahead or self._fetcher.cache.contains(self._sha_hex, index)

    def _block(self, index: int, bulk: bool) -> bytes:
        with self._lock:
            future = self._ahead.pop(index, None)
        if future is not None:
            try:
                return future.result()
            except BackendError:
                log.debug(
                    "readahead of block %d of %s failed; fetching it again", index, self._sha_hex
                )
        return self._fetcher.block(self._sha_hex, index, self.size, bulk)

    def close(self) -> None:
        with self._lock:
            self._ahead.clear()
