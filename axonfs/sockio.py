"""Stream-socket I/O that enters the event loop only when the kernel is not ready.

A control-socket call is one small request and one small reply. Through the
event loop's own socket streams, every successful ``send`` and ``recv`` ends
with a scheduler pass (trio's checkpoint; anyio's the same), so a lookup
round trip costs about three passes of the loop where two are needed: one to
wake the server, one to wake the client. :class:`SocketWire` tries the
syscall first and waits for readiness only when it would block, which is
where both sides park anyway between requests.

Fairness: a peer that keeps the socket ready (pipelined requests, a fast
reader of a long stream) would never make the task yield, so every
:data:`YIELD_EVERY` operations that did not wait, the wire checkpoints once.

The same class serves the daemon (trio) and the client (anyio, under asyncio
or trio): the caller passes its loop's wait and checkpoint functions.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

YIELD_EVERY = 16
"""Operations in a row that may complete without a pass through the scheduler."""

Wait = Callable[[int], Awaitable[None]]

_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF}


class SocketWire:
    """Non-blocking ``receive_some``/``send_all`` on a connected stream socket.

    Args:
        fd: the socket's file descriptor (non-blocking; its owner closes it).
        wait_readable, wait_writable: the event loop's readiness waits.
        checkpoint: the event loop's checkpoint (a cancellation point that yields).

    Errors: a peer that went away raises :class:`ConnectionError`; ``receive_some``
    returns ``b""`` at end of stream.
    """

    def __init__(
        self,
        fd: int,
        *,
        wait_readable: Wait,
        wait_writable: Wait,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        self.fd = fd
        self._wait_readable = wait_readable
        self._wait_writable = wait_writable
        self._checkpoint = checkpoint
        self._unyielded = 0
        self.mid_send = False
        """True while a send waits for room with part of its bytes already out."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* (at least one unless the peer closed its end)."""
        while True:
            try:
                data = os.read(self.fd, max_bytes)
            except BlockingIOError:
                self._unyielded = 0
                await self._wait_readable(self.fd)
                continue
            except OSError as exc:
                raise _gone(exc) from None
            await self._maybe_yield()
            return data

    async def send_all(self, *parts: bytes | bytearray | memoryview) -> None:
        """Send every byte of *parts*, in order (one ``writev`` when they fit).

        The periodic checkpoint comes before the first byte, so a cancellation
        can cut a send short only while it waits for room; :attr:`mid_send`
        then says whether part of it had gone out.
        """
        await self._maybe_yield()
        views = [view for view in (memoryview(part).cast("B") for part in parts) if view]
        sent_any = False
        while views:
            try:
                sent = os.writev(self.fd, views)
            except BlockingIOError:
                self._unyielded = 0
                self.mid_send = sent_any
                await self._wait_writable(self.fd)
                continue
            except OSError as exc:
                raise _gone(exc) from None
            sent_any = True
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if sent:
                views[0] = views[0][sent:]
        self.mid_send = False

    async def _maybe_yield(self) -> None:
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await self._checkpoint()


def _gone(exc: OSError) -> OSError:
    if exc.errno in _GONE and not isinstance(exc, ConnectionError):
        return ConnectionResetError(exc.errno, exc.strerror)
    return exc
