"""Telepath's wire format: a stream of msgpack messages, and its error form.

Sans-IO, like :mod:`axonfs.protocol`: :class:`MessageDecoder` cuts received
bytes into messages, :func:`encode` packs one; the server does the reading and
writing. A Telepath message is a msgpack array ``(name, info)`` with ``name`` a
string and ``info`` a map; there is no length prefix, so the only way to bound
memory is to bound the bytes buffered while a message is incomplete, which
:class:`MessageDecoder` does (:data:`MAX_MESSAGE`).

Encoding follows Synapse's: bin type for bytes, ``surrogatepass`` for text,
and integers beyond 64 bits as ext types 0 (unsigned) and 1 (signed), big
endian. Decoding gives tuples for arrays, as every Synapse peer expects.

Errors travel as ``(False, (ClassName, info))`` with ``info["mesg"]`` the
message: :func:`error_retn` builds that from an axonfs exception with the
class names of ``synapse.exc``, so Synapse's client raises, say,
``synapse.exc.NoSuchFile``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from axonfs.errors import AxonError
from axonfs.protocol import _plain

MAX_MESSAGE = 160 << 20
"""Bytes one message may take. The reference documents ``put()`` for up to
128 MiB; this leaves room for the message around such a blob."""

_U64_MAX = 0xFFFFFFFFFFFFFFFF
_I64_MIN = -0x8000000000000000

Message = tuple[str, dict[str, Any]]
Retn = tuple[bool, Any]


class BadMessage(AxonError):
    """Bytes that are not a Telepath message (Synapse's ``BadMesgFormat``)."""


def _ext_encode(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value > _U64_MAX:
            return msgpack.ExtType(0, value.to_bytes((value.bit_length() + 7) // 8, "big"))
        if value < _I64_MIN:
            size = value.bit_length() // 8 + 1
            return msgpack.ExtType(1, value.to_bytes(size, "big", signed=True))
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} over Telepath")


def _ext_decode(code: int, data: bytes) -> int:
    if code in (0, 1):
        return int.from_bytes(data, "big", signed=code == 1)
    raise ValueError(f"unknown msgpack ext type {code}")


def encode(name: str, info: dict[str, Any]) -> bytes:
    """One message, packed as Synapse packs it."""
    packed: bytes = msgpack.packb(
        (name, info), use_bin_type=True, unicode_errors="surrogatepass", default=_ext_encode
    )
    return packed


_YIELD_PREFIX = encode("t2:yield", {"retn": (True, b"")})[:-2]
"""``t2:yield {retn: (True, <bin>)}`` up to the bin's header (an empty bin8 is the
two bytes ``c4 00`` at the end)."""


def yielded_bytes(data: bytes) -> tuple[bytes, bytes]:
    """``encode("t2:yield", {"retn": (True, data)})`` as (header, *data*), so a large
    piece goes out by ``writev`` without being copied into one message."""
    size = len(data)
    if size < 1 << 8:
        header = b"\xc4" + size.to_bytes(1, "big")
    elif size < 1 << 16:
        header = b"\xc5" + size.to_bytes(2, "big")
    else:
        header = b"\xc6" + size.to_bytes(4, "big")
    return _YIELD_PREFIX + header, data


_ROW_PREFIX = encode("t2:yield", {"retn": (True, None)})[:-1]
"""``t2:yield {retn: (True, <value>)}`` up to the value (``None`` is the last byte)."""
_ROW = struct.Struct(f">{len(_ROW_PREFIX)}s2sQ3s32sBQ")
"""A row ``(n, (sha256, size))`` after the prefix: a 2-array holding a uint64 and a
2-array of a 32-byte bin and a uint64 (wider than msgpack's shortest form, which
every decoder reads the same)."""


def yielded_rows(rows: Sequence[Any], other: Callable[[Any], bytes]) -> bytes:
    """``encode("t2:yield", {"retn": (True, row)})`` of each row, joined.

    ``hashes`` and ``history`` rows, ``(n, (sha256, size))``, are packed by one
    precompiled struct (about a fifth of msgpack's time, which was most of the
    server's work per row); *other* encodes a row of any other shape.
    """
    pack, out = _ROW.pack, []
    for row in rows:
        try:
            first, (sha256, size) = row
            if type(first) is not int or type(sha256) is not bytes or len(sha256) != 32:
                raise TypeError("not a row")
            out.append(pack(_ROW_PREFIX, b"\x92\xcf", first, b"\x92\xc4\x20", sha256, 0xCF, size))
        except (TypeError, ValueError, struct.error):
            out.append(other(row))
    return b"".join(out)


class MessageDecoder:
    """Received bytes in, complete messages out, with a cap on what is buffered.

    Args:
        limit: bytes that may be buffered for one incomplete message.
    """

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self._fed = 0
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=False,
            strict_map_key=False,
            ext_hook=_ext_decode,
            unicode_errors="surrogatepass",
            max_buffer_size=MAX_MESSAGE,
        )

    @property
    def pending(self) -> int:
        """Bytes received and not yet returned as part of a message."""
        consumed: int = self._unpacker.tell()
        return self._fed - consumed

    def feed(self, data: bytes | bytearray) -> list[Message]:
        """Add *data*; return the messages it completed.

        Raises:
            BadMessage: not msgpack, not ``(str, map)``, or over the limit.
        """
        if self.pending + len(data) > self.limit:
            raise BadMessage(f"a message is larger than {self.limit} bytes", limit=self.limit)
        try:
            self._unpacker.feed(data)
            self._fed += len(data)
            messages = list(self._unpacker)
        except Exception as exc:  # msgpack raises ValueError, BufferFull, StackError...
            raise BadMessage(f"not a msgpack stream: {type(exc).__name__}: {exc}") from None
        for message in messages:
            if not (
                isinstance(message, tuple)
                and len(message) == 2
                and isinstance(message[0], str)
                and isinstance(message[1], dict)
            ):
                raise BadMessage(f"a message must be (name, map), not {_preview(message)}")
        return messages


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


SYNAPSE_NAMES: dict[str, str] = {
    "ProtocolError": "BadMesgFormat",
    "BadMessage": "BadMesgFormat",
    "StoreCorrupt": "BadDataValu",
    "BackendError": "SynErr",
    "BlobMissing": "SynErr",
    "StoreLocked": "SynErr",
    "AxonError": "SynErr",
}
"""axonfs classes whose name ``synapse.exc`` lacks, and the class sent instead.
NoSuchFile, BadArg, BadDataValu, BadJsonText, HitLimit, AuthDeny... are
spelled alike on both sides and need no entry."""


class TelepathError(AxonError):
    """An error with a Synapse class name of its own (``AuthDeny``, ``NoSuchMeth``...).

    ``synapse_name`` is the class Synapse's client raises.
    """

    def __init__(self, synapse_name: str, message: str, /, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.synapse_name = synapse_name

    @property
    def code(self) -> str:
        return self.synapse_name


def error_retn(exc: AxonError) -> Retn:
    """``(False, (ClassName, info))`` for *exc*, as ``synapse.common.retnexc`` makes."""
    name = SYNAPSE_NAMES.get(exc.code, exc.code)
    info = {key: _plain(value) for key, value in exc.fields.items()}
    info["mesg"] = exc.message
    if name != exc.code:
        info.setdefault("axonfs", exc.code)
    return False, (name, info)
