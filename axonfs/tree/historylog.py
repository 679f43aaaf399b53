"""``/history.log``: the sequence as a text file that only ever grows.

One line per row of the index's ``seqn`` database, in indx order, deleted
blobs included (it is a log)::

    indx<TAB>2024-05-01T12:34:56.789Z<TAB>sha256hex<TAB>size

A line's length depends only on the digits of *indx* and *size*, so the file
is served without ever being materialised: :class:`HistoryLog` keeps one
``(byte offset, indx)`` mark every :data:`MARK_STRIDE` rows (16 bytes per 256
rows) and renders the lines of a read from the index on demand.

Concurrency: catching up with new rows and reading hold one
:class:`trio.Lock`; large scans and reads run in a worker thread (LMDB read
transactions may move between threads: :meth:`Axon.sequence_rows
<axonfs.axon.Axon.sequence_rows>` may run in one).
"""

from __future__ import annotations

import bisect
import datetime
import errno
import logging
import stat
import time
from array import array

import trio

from axonfs.axon import Axon, SeqnRow
from axonfs.inodes import HISTORY_LOG_INODE
from axonfs.tree.base import (
    GID,
    IMMUTABLE_TIMEOUT,
    UID,
    Attributes,
    OpenFile,
    ReadOnlySubtree,
    error,
    is_writing,
)

log = logging.getLogger(__name__)

MARK_STRIDE = 256
"""Rows between two offset marks."""
SCAN_BATCH = 1024
"""Index rows read per transaction."""
INLINE_ROWS = 512
"""Catch-ups and reads touching fewer rows than this stay on the trio thread."""
_FIXED_LINE_CHARS = 3 + 24 + 64 + 1  # three tabs, the time, the hash, the newline


def iso_time(ns: int) -> str:
    """``2024-05-01T12:34:56.789Z`` for a time in nanoseconds since the epoch (UTC)."""
    moment = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{(ns // 1_000_000) % 1000:03d}Z"


def format_line(row: SeqnRow) -> str:
    return f"{row.indx}\t{iso_time(row.added_ns)}\t{row.sha256.hex()}\t{row.size}\n"


def line_length(row: SeqnRow) -> int:
    """``len(format_line(row))`` without formatting it."""
    return len(str(row.indx)) + len(str(row.size)) + _FIXED_LINE_CHARS


class HistoryLog:
    """The growing text view of the sequence."""

    def __init__(self, axon: Axon) -> None:
        self._axon = axon
        self._mark_offsets = array("Q", [0])
        self._mark_indxs = array("Q", [0])
        self._rows = 0
        self._next_indx = 0
        self.known_size = 0
        """Size as of the last catch-up (no index access)."""
        self._lock = trio.Lock()

    async def size(self) -> int:
        """The current size, after taking in rows committed since last time."""
        await self._catch_up()
        return self.known_size

    async def read(self, offset: int, size: int) -> bytes:
        await self._catch_up()
        if offset >= self.known_size or size <= 0:
            return b""
        async with self._lock:
            if size // 128 < INLINE_ROWS:
                return self._read(offset, size)
            return await trio.to_thread.run_sync(self._read, offset, size)

    async def _catch_up(self) -> None:
        if self._axon.next_indx() <= self._next_indx:
            return
        async with self._lock:
            if self._axon.next_indx() - self._next_indx < INLINE_ROWS:
                self._scan()
            else:
                await trio.to_thread.run_sync(self._scan)

    def _scan(self) -> None:
        """Count the lines of rows not seen yet, setting marks on the way."""
        while batch := self._axon.sequence_rows(self._next_indx, SCAN_BATCH):
            for row, _ in batch:
                if self._rows % MARK_STRIDE == 0:
                    if self._rows == 0:
                        self._mark_indxs[0] = row.indx
                    else:
                        self._mark_offsets.append(self.known_size)
                        self._mark_indxs.append(row.indx)
                self.known_size += line_length(row)
                self._rows += 1
            self._next_indx = batch[-1][0].indx + 1

    def _read(self, offset: int, size: int) -> bytes:
        mark = bisect.bisect_right(self._mark_offsets, offset) - 1
        position, indx = self._mark_offsets[mark], self._mark_indxs[mark]
        pieces: list[bytes] = []
        wanted_end = min(offset + size, self.known_size)
        while position < wanted_end:
            batch = self._axon.sequence_rows(indx, SCAN_BATCH)
            if not batch:
                break
            for row, _ in batch:
                if row.indx >= self._next_indx or position >= wanted_end:
                    break
                length = line_length(row)
                if position + length > offset:
                    line = format_line(row).encode()
                    pieces.append(line[max(0, offset - position) : wanted_end - position])
                position += length
            indx = batch[-1][0].indx + 1
            if batch[-1][0].indx + 1 >= self._next_indx:
                break
        return b"".join(pieces)


class HistoryLogTree(ReadOnlySubtree):
    """``/history.log``: a single read-only file."""

    name = "history.log"
    inode = HISTORY_LOG_INODE
    inodes = (range(HISTORY_LOG_INODE, HISTORY_LOG_INODE + 1),)

    def __init__(self, axon: Axon) -> None:
        self.history_log = HistoryLog(axon)

    async def lookup(self, parent: int, name: str) -> Attributes:
        raise error(errno.ENOTDIR)

    async def getattr(self, inode: int) -> Attributes:
        return _attrs(await self.history_log.size())

    def listed(self) -> Attributes:
        return _attrs(self.history_log.known_size)

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        if is_writing(flags):
            raise error(errno.EROFS)
        return HistoryLogFile(self.history_log)


class HistoryLogFile(OpenFile):
    """An open /history.log; direct I/O so ``tail -f`` always sees new lines."""

    direct_io = True

    def __init__(self, history_log: HistoryLog) -> None:
        self.history_log = history_log

    async def read(self, offset: int, size: int) -> bytes:
        return await self.history_log.read(offset, size)


def _attrs(size: int) -> Attributes:
    # attr_timeout 0: tail -f polls fstat() and must see the size grow.
    now_ns = time.time_ns()
    return Attributes(
        HISTORY_LOG_INODE,
        stat.S_IFREG | 0o444,
        1,
        UID,
        GID,
        size,
        (size + 511) // 512,
        now_ns,
        now_ns,
        IMMUTABLE_TIMEOUT,
        0,
    )
