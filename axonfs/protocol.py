"""The control protocol: length-prefixed msgpack frames over a unix stream socket.

This module is sans-IO: it builds and parses frames and knows the message
shapes; the daemon side (:mod:`axonfs.ctlserver`) and the client side
(:mod:`axonfs.client`) do the reading and writing. ``docs/PROTOCOL.md`` is the
prose specification; keep the two in step.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of
one msgpack map. Every map carries ``"v": 1`` (:data:`VERSION`). A client
sends calls (``{"v", "id", "call", "args", "kwargs"}``) and control frames
(``{"v", "id", "t": "cancel" | "write" | "save" | "close"}``); the server
answers with frames whose ``"t"`` is ``hello``, ``ok``, ``items``, ``raw``,
``end``, ``saved``, ``cancelled`` or ``err``, each naming the request ``id`` it
belongs to. A ``raw`` frame (``{"t": "raw", "size": N}``, sent only to a call
that asked with ``"raw": true``) is followed on the stream by N bytes outside
msgpack: one bytes item of a stream, spared two copies on each side. Errors
travel as :func:`axonfs.errors.to_wire` dictionaries.

Unpacking uses ``use_list=False``, so arrays come back as tuples: the same
shapes a Synapse Telepath client sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from axonfs.errors import AxonError, HitLimit, to_wire

if TYPE_CHECKING:  # the client side never needs it (nor trio, which it imports)
    from axonfs.budget import MemoryBudget

VERSION = 1
"""Protocol version carried in every frame as ``"v"``."""

HEADER = struct.Struct(">I")
MAX_REQUEST_FRAME = 32 << 20
"""Largest frame the server accepts (a call or an upload ``write``)."""
MAX_REPLY_FRAME = 256 << 20
"""Largest frame a client accepts."""
WRITE_CHUNK = 4 << 20
"""Clients split upload data into ``write`` frames of at most this many bytes."""
RECEIVE_SIZE = 1 << 20
"""Bytes asked of the socket per receive."""

UNCOUNTED_FRAME = 64 << 10
"""Frames up to this size are decoded without counting them against a request
budget: they decode to a few MiB at worst, and point lookups stay as cheap as
they were."""
MAX_CONTAINER = 1 << 20
"""Most elements one array or map of a counted frame may have; a longer one is
refused from its header, before it is built (a million hashes fit)."""
DECODED_ITEM_COST = 64
"""Bytes a decoded element is counted as: a pointer and a small object. A
32 MiB frame of 33 million nils decodes to 545 MiB, 16 bytes of it per byte."""

RAW_MIN = 64 << 10
"""Bytes items of at least this size go as ``raw`` frames to calls that accept them."""

# Reply kinds ("t") from the server.
HELLO, OK, ITEMS, RAW, END, SAVED, CANCELLED, ERR = (
    "hello",
    "ok",
    "items",
    "raw",
    "end",
    "saved",
    "cancelled",
    "err",
)
# Control kinds ("t") from the client.
CANCEL, WRITE, SAVE, CLOSE = "cancel", "write", "save", "close"
CLIENT_KINDS = frozenset({CANCEL, WRITE, SAVE, CLOSE})

SOCKET_PATH_MAX = 100
"""Unix socket paths longer than this are reached through ``/proc/self/fd``."""


class ProtocolError(AxonError):
    """A frame was oversized, not msgpack, or not a valid message."""


class AccessDenied(AxonError):
    """The daemon refused this peer (SO_PEERCRED uid/gid not admitted)."""


class DaemonUnreachable(AxonError):
    """No daemon answers on the control socket (or it went away)."""


class Cancelled(AxonError):
    """The server stopped a request because the client cancelled it."""


def _default(obj: Any) -> Any:
    """msgpack fallback: dataclasses as dicts, paths as strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the control socket")


def encode(message: dict[str, Any]) -> bytes:
    """Return *message* as one frame (header and body), adding ``"v"``."""
    message.setdefault("v", VERSION)
    body: bytes = msgpack.packb(message, use_bin_type=True, default=_default)
    return HEADER.pack(len(body)) + body


def encode_parts(message: dict[str, Any]) -> tuple[bytes, bytes]:
    """Like :func:`encode` but header and body apart (spares a copy of big bodies)."""
    message.setdefault("v", VERSION)
    body: bytes = msgpack.packb(message, use_bin_type=True, default=_default)
    return HEADER.pack(len(body)), body


def decode_body(body: bytes | memoryview, cost: _DecodedCost | None = None) -> dict[str, Any]:
    """Parse one frame body into a message map, or raise :class:`ProtocolError`.

    With *cost*, every array and map is counted against its budget as it is
    built, and :class:`~axonfs.errors.HitLimit` stops the decode once the
    budget is spent.
    """
    try:
        if cost is None:
            message = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)
        else:
            message = msgpack.unpackb(
                body,
                raw=False,
                use_list=False,
                strict_map_key=False,
                list_hook=cost.array,
                object_hook=cost.map,
                max_array_len=MAX_CONTAINER,
                max_map_len=MAX_CONTAINER,
            )
    except HitLimit:
        raise
    except Exception as exc:  # msgpack raises ValueError, TypeError, UnicodeDecodeError...
        raise ProtocolError(f"frame is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame is a msgpack {type(message).__name__}, not a map")
    version = message.get("v")
    if version != VERSION:
        raise ProtocolError(
            f"unsupported protocol version {version!r}; this end speaks {VERSION}",
            version=VERSION,
            id=_request_id(message),
        )
    return message


def _request_id(message: dict[str, Any]) -> int | None:
    rid = message.get("id")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


class _DecodedCost:
    """msgpack hooks that count decoded elements against a budget."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.taken = 0

    def _take(self, elements: int) -> None:
        size = elements * DECODED_ITEM_COST
        if not self.budget.try_take(size):
            raise HitLimit(
                f"the daemon's request memory budget of {self.budget.limit} bytes "
                "is spent; try again later",
                limit=self.budget.limit,
            )
        self.taken += size

    def array(self, items: tuple[Any, ...]) -> tuple[Any, ...]:
        self._take(len(items) + 1)
        return items

    def map(self, items: dict[Any, Any]) -> dict[Any, Any]:
        self._take(2 * len(items) + 4)
        return items


class FrameDecoder:
    """Accumulate received bytes and cut them into messages.

    Oversized frames are refused as soon as their header arrives, before any
    of the body is buffered.

    With a *budget*, a frame larger than :data:`UNCOUNTED_FRAME` takes its
    size from the budget when its header arrives, and its decoded elements
    when it is decoded; a frame the budget cannot hold is refused with
    :class:`~axonfs.errors.HitLimit`. What a message took is handed to the
    caller by :meth:`take_charge`, to release once the request is done (the
    frame's bytes live on as the decoded strings and bytes). :meth:`close`
    releases what a frame part way in took.
    """

    def __init__(self, max_frame: int, budget: MemoryBudget | None = None) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame
        self._budget = budget
        self._charged = 0  # taken for the frame being received
        self._handed = 0  # taken for the message next_message returned last

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def take(self, size: int) -> bytes:
        """Up to *size* bytes from the front of the buffer, outside any frame
        (the start of a ``raw`` item's payload)."""
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def next_message(self) -> dict[str, Any] | None:
        """The next complete message, None if more bytes are needed."""
        if len(self._buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        if size > self._max_frame:
            raise ProtocolError(
                f"frame of {size} bytes is larger than the limit of {self._max_frame}",
                size=size,
                limit=self._max_frame,
            )
        if self._budget is not None and size > UNCOUNTED_FRAME and not self._charged:
            if not self._budget.try_take(size):
                raise HitLimit(
                    f"a frame of {size} bytes does not fit the daemon's request "
                    f"memory budget of {self._budget.limit} bytes now; try again "
                    "later",
                    size=size,
                    limit=self._budget.limit,
                )
            self._charged = size
        end = HEADER.size + size
        if len(self._buffer) < end:
            return None
        # After a ProtocolError the stream cannot be resynchronised: callers close it.
        cost = _DecodedCost(self._budget) if self._charged and self._budget else None
        try:
            with memoryview(self._buffer) as view, view[HEADER.size : end] as body:
                message = decode_body(body, cost)
        except AxonError:
            if cost is not None:
                cost.budget.release(cost.taken)
            raise
        del self._buffer[:end]
        self._handed = self._charged + (cost.taken if cost is not None else 0)
        self._charged = 0
        return message

    def frame_to_charge(self) -> int:
        """The size of the frame whose header has arrived, if it must be taken
        from the budget and has not been yet (else 0): a caller that can wait
        takes it itself and calls :meth:`charged`."""
        if self._budget is None or self._charged or len(self._buffer) < HEADER.size:
            return 0
        (size,) = HEADER.unpack_from(self._buffer)
        return size if UNCOUNTED_FRAME < size <= self._max_frame else 0

    def charged(self, size: int) -> None:
        """The caller took *size* bytes for the current frame from the budget."""
        self._charged = size

    def take_charge(self) -> int:
        """The budget bytes the last message took (0 once taken, or if uncounted)."""
        handed, self._handed = self._handed, 0
        return handed

    def close(self) -> None:
        """Release what a frame part way in (and an untaken charge) took."""
        if self._budget is not None:
            self._budget.release(self._charged + self._handed)
        self._charged = self._handed = 0


def error_message(rid: int | None, exc: AxonError) -> dict[str, Any]:
    """The ``err`` reply for *exc*; fields that msgpack cannot carry become text."""
    wire = {key: _plain(value) for key, value in to_wire(exc).items()}
    return {"v": VERSION, "id": rid, "t": ERR, "error": wire}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


@contextlib.contextmanager
def bindable_path(path: Path) -> Iterator[str]:
    """Yield a path string for bind()/connect() that fits ``sun_path``.

    Linux limits unix socket paths to 107 bytes; a longer one is reached
    through ``/proc/self/fd/N/name``, N being an open descriptor of the
    socket's directory, kept open while the caller binds or connects.
    """
    text = os.fspath(path)
    if len(os.fsencode(text)) <= SOCKET_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
