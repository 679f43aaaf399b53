"""A whole-range read of a remote blob: one request, the cache filled behind.

A blob read from end to end (``Axon.get`` of the whole blob or a large range)
is fetched with one ranged GET instead of the block reader's windows of
blocks: each request costs the server's per-request overhead, and a reader
that waits for every block to be written to the read cache waits for the
disk as well as the network. Here the blocks go to the reader as they
arrive, through a queue of at most :data:`AHEAD` blocks (when the reader
falls behind, the request waits: the server's socket holds the rest), and to
a writer thread that puts them in the read cache behind the reader, at most
:data:`CACHE_BEHIND` blocks behind (past that the request waits for the
disk). The writer puts all the blocks waiting for it at once, so the cache
writes them with few large writes rather than one per block. A stream read
to its end is closed once its blocks are cached, so a read that follows
finds them.

Errors of the request (after the backend's retries, which resume from the
first block not yet delivered) reach the reader at the point of the stream
where they happened. Closing the stream stops the request at its next block.
"""

from __future__ import annotations

import queue
import threading

from axonfs.backends.base import BlobStream
from axonfs.backends.cache import BlockCache
from axonfs.backends.readahead import GetBlocks

AHEAD = 16
"""Blocks received and not yet taken by the reader, at most."""
CACHE_BEHIND = 16
"""Blocks waiting for the cache writer, at most."""
_END = object()


class _Stopped(BaseException):
    """Ends the request when the reader went away (not an error: never logged)."""


class RangeStream(BlobStream):
    """``[start, end)`` of one blob, fetched by *get_blocks* in a thread of its own.

    The request covers whole blocks (the range rounded out to block
    boundaries), so that every block it brings can be cached; the reader gets
    exactly ``[start, end)``.
    """

    def __init__(
        self,
        get_blocks: GetBlocks,
        cache: BlockCache,
        sha_hex: str,
        blob_size: int,
        start: int,
        end: int,
        block_size: int,
    ) -> None:
        self._get_blocks = get_blocks
        self._cache = cache
        self._sha_hex = sha_hex
        self._blob_size = blob_size
        self._block_size = block_size
        self._start, self._end = start, end
        self._pieces: queue.Queue[object] = queue.Queue(AHEAD)
        self._to_cache: queue.Queue[tuple[int, bytes] | None] = queue.Queue(CACHE_BEHIND)
        self._stopped = threading.Event()
        self._done = False
        self._complete = False  # the reader saw the end: every block was handed on
        self._error: Exception | None = None
        first = start - start % block_size
        last = min(blob_size, -(-end // block_size) * block_size)
        threading.Thread(
            target=self._fetch, args=(first, last), name="s3 stream", daemon=True
        ).start()
        self._writer = threading.Thread(
            target=self._write_cache, name="s3 stream cache", daemon=True
        )
        self._writer.start()

    def next_pieces(self) -> list[bytes]:
        if self._error is not None:
            error, self._error = self._error, None
            self._done = True
            raise error
        if self._done:
            return []
        pieces: list[bytes] = []
        item = self._pieces.get()
        while True:
            if item is _END:
                self._done = self._complete = True
                return pieces
            if isinstance(item, Exception):
                if pieces:  # what came before the failure first, the failure next call
                    self._error = item
                    return pieces
                self._done = True
                raise item
            assert isinstance(item, bytes)
            pieces.append(item)
            try:
                item = self._pieces.get_nowait()
            except queue.Empty:
                return pieces

    def close(self) -> None:
        """Stop the request, or, if the reader saw the end, wait for the last
        cache writes (the request is over then: nothing waits on the network)."""
        if self._complete:
            self._writer.join()
            return
        self._stopped.set()
        self._done = True
        # Unblock the fetching thread if it waits for room.
        while True:
            try:
                self._pieces.get_nowait()
            except queue.Empty:
                break

    def _fetch(self, first: int, last: int) -> None:
        try:
            try:
                self._get_blocks(self._sha_hex, first, last, self._block_size, self._deliver)
            except Exception as exc:  # the backend's error, for the reader
                self._put(exc)
            else:
                self._put(_END)
        except _Stopped:
            pass
        finally:
            self._to_cache.put(None)

    def _deliver(self, offset: int, data: bytes) -> None:
        """One whole block of the request: its part of the range to the reader,
        the block itself to the cache writer (waiting while it is full)."""
        begin, stop = max(offset, self._start), min(offset + len(data), self._end)
        if begin < stop:
            whole = begin == offset and stop == offset + len(data)
            self._put(data if whole else data[begin - offset : stop - offset])
        self._to_cache.put((offset // self._block_size, data))

    def _put(self, item: object) -> None:
        """Queue *item* for the reader, waiting for room; stop if the reader left."""
        while True:
            if self._stopped.is_set():
                raise _Stopped
            try:
                self._pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _write_cache(self) -> None:
        """Put the blocks in the cache, all those waiting at once (they are
        consecutive: one write per segment file for them)."""
        while (block := self._to_cache.get()) is not None:
            first, data = block
            blocks = [data]
            while len(blocks) < CACHE_BEHIND:
                try:
                    block = self._to_cache.get_nowait()
                except queue.Empty:
                    break
                if block is None:  # the end: seen again by the loop, after this put
                    self._to_cache.put_nowait(None)
                    break
                blocks.append(block[1])
            self._cache.put_blocks(self._sha_hex, first, self._blob_size, blocks)
