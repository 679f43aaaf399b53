"""Run a parser off the trio thread and stream its rows back, batch by batch.

A parser is a plain generator yielding ``(row, cost)`` pairs, where *cost*
approximates the row's size. :func:`stream_rows` advances it in a worker
thread one batch at a time (at most :data:`BATCH_ROWS` rows or
:data:`BATCH_COST` of cost), then yields the batch's rows on the trio thread.
Nothing runs between batches, so a consumer that stops pulling stops the
parser: an abandoned ``csvrows`` over a 10 GiB blob parses one more batch at
most. A generator may be advanced from different threads as long as only one
runs it at a time, which the loop guarantees.

Blob bytes reach the parser through :class:`BlobRaw`, a raw file over a
:class:`~axonfs.backends.base.BlobReader`; memory stays at one buffer.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from typing import Any, TypeVar

import trio

from axonfs.backends.base import BlobReader

T = TypeVar("T")

BATCH_ROWS = 1000
BATCH_COST = 1 << 20
READ_BUFFER = 1 << 20
PARSE_THREADS = 4
"""Parser batches running at once, per Axon."""

_limiters: weakref.WeakKeyDictionary[object, trio.CapacityLimiter] = weakref.WeakKeyDictionary()


def parse_limiter(owner: object) -> trio.CapacityLimiter:
    """The parse-thread limiter of *owner* (an Axon), made on first use."""
    limiter = _limiters.get(owner)
    if limiter is None:
        limiter = _limiters[owner] = trio.CapacityLimiter(PARSE_THREADS)
    return limiter


class BlobRaw(io.RawIOBase):
    """A read-only raw file over an open blob (closes the reader when closed)."""

    def __init__(self, reader: BlobReader) -> None:
        super().__init__()
        self._reader = reader
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._reader.read(self._offset, len(buffer))
        size = len(data)
        buffer[:size] = data
        self._offset += size
        return size

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def open_text(reader: BlobReader, errors: str | None) -> io.TextIOWrapper:
    """A UTF-8 text file over *reader* with universal newlines, as the reference reads."""
    buffered = io.BufferedReader(BlobRaw(reader), READ_BUFFER)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors or "strict", newline=None)


def _take(rows: Iterator[tuple[T, int]]) -> tuple[list[T], bool, Exception | None]:
    """Advance *rows* by one batch: ``(rows, finished, error)``."""
    batch: list[T] = []
    cost = 0
    try:
        for row, row_cost in rows:
            batch.append(row)
            cost += row_cost
            if len(batch) >= BATCH_ROWS or cost >= BATCH_COST:
                return batch, False, None
    except Exception as exc:
        return batch, True, exc
    return batch, True, None


async def stream_rows(
    limiter: trio.CapacityLimiter, factory: Callable[[], Generator[tuple[T, int], None, None]]
) -> AsyncGenerator[T, None]:
    """Yield the rows of the generator *factory* makes, parsed in worker threads.

    An error the parser raises comes after the rows it produced before it.
    """
    rows = factory()
    try:
        while True:
            batch, finished, error = await trio.to_thread.run_sync(_take, rows, limiter=limiter)
            for row in batch:
                yield row
            if error is not None:
                raise error
            if finished:
                return
    finally:
        rows.close()  # runs the parser's cleanup (closes the blob) inline: it is quick
