"""Hashing behind the writes: a spool's running sha256, extended off the writer's path.

Used by ``/incoming`` (:mod:`axonfs.incoming`), whose large ``WRITE`` requests
return once their bytes are in the spool; see :class:`HashBehind`.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

import trio

from axonfs.axon import Spool

log = logging.getLogger(__name__)

HASH_BEHIND_MAX = 8 << 20
"""Bytes of a file's writes that may wait to be hashed; then the writer waits too."""


class HashBehind:
    """Extends one spool's running sha256 in a worker thread, behind its writes.

    A 1 MiB ``WRITE`` used to wait for its own hash (~0.56 ms, the slower half
    of the request, even with the copy beside it). Now it waits only for the
    copy into the spool, and the hash runs while the kernel brings the next
    request. Pieces are hashed in the order they were written (that is what
    the running hash needs); at most :data:`HASH_BEHIND_MAX` bytes wait, then
    the writer waits too. The commit waits (:meth:`wait`) for the last piece.

    The pieces go to the worker through a deque under a condition variable,
    not through the event loop: the event loop is what limits a large copy
    into ``/incoming`` (it reads every request from the kernel), so a thread
    round trip per piece would cost more than it saves. The worker is one of
    trio's cached threads; it stays while pieces keep coming and leaves after
    :data:`_LINGER` seconds without one.
    """

    _LINGER = 0.05

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._pieces: collections.deque[tuple[bytes, int]] = collections.deque()
        self._queued = 0  # bytes in _pieces or being hashed
        self._busy = False  # a piece is being hashed, or the worker waits for more
        self._cond = threading.Condition()

    @property
    def idle(self) -> bool:
        """True if nothing is waiting or being hashed."""
        with self._cond:
            return self._queued == 0

    async def add(self, data: bytes, offset: int) -> None:
        """Queue a piece written at *offset* (waits while too much is queued)."""
        with self._cond:
            full = self._queued >= HASH_BEHIND_MAX
        if full:
            await trio.to_thread.run_sync(self._wait_until, lambda: self._queued < HASH_BEHIND_MAX)
        with self._cond:
            self._pieces.append((data, offset))
            self._queued += len(data)
            self._cond.notify_all()
            start = not self._busy
            self._busy = True
        if start:
            trio.lowlevel.start_thread_soon(
                self._work, lambda outcome: None, name="axonfs hash-behind"
            )

    async def wait(self) -> None:
        """Until every queued piece is hashed."""
        if not self.idle:
            await trio.to_thread.run_sync(self._wait_until, lambda: self._queued == 0)

    def cancel(self) -> None:
        """Drop what is still queued (the upload is being thrown away)."""
        with self._cond:
            self._queued -= sum(len(data) for data, _ in self._pieces)
            self._pieces.clear()
            self._cond.notify_all()

    def _wait_until(self, ready: Callable[[], bool]) -> None:
        with self._cond:
            self._cond.wait_for(ready)

    def _work(self) -> None:
        """The worker thread: hash pieces in order until none come for a while."""
        try:
            while True:
                with self._cond:
                    if not self._pieces:
                        self._cond.wait_for(lambda: bool(self._pieces), timeout=self._LINGER)
                    if not self._pieces:
                        self._busy = False
                        return
                    data, offset = self._pieces.popleft()
                try:
                    self.spool.hash_bytes(data, offset)
                finally:
                    with self._cond:
                        self._queued -= len(data)
                        self._cond.notify_all()
        except Exception:  # nobody to raise to: the commit re-hashes instead
            log.exception("hashing an incoming file behind its writes failed")
            self.spool.forget_hash()
            self.cancel()
            with self._cond:
                self._busy = False
