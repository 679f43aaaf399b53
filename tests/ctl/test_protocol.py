"""The wire protocol: frames, versions, errors, and a server that survives bad clients."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from helpers.daemon import InProcessDaemon

from axonfs import client
from axonfs.errors import BadArg, NoSuchFile
from axonfs.protocol import (
    HEADER,
    MAX_REQUEST_FRAME,
    VERSION,
    FrameDecoder,
    ProtocolError,
    decode_body,
    encode,
)


def test_frame_roundtrip_keeps_bytes_and_makes_tuples() -> None:
    decoder = FrameDecoder(1 << 20)
    frame = encode({"id": 1, "call": "put", "args": [b"\x00\xff", [1, 2]], "kwargs": {}})
    for byte in frame[:-1]:  # byte by byte: nothing until the last one
        decoder.feed(bytes([byte]))
        assert decoder.next_message() is None
    decoder.feed(frame[-1:])
    message = decoder.next_message()
    assert message == {
        "v": VERSION,
        "id": 1,
        "call": "put",
        "args": (b"\x00\xff", (1, 2)),
        "kwargs": {},
    }
    assert decoder.pending == 0


def test_decoder_refuses_oversized_frames_from_the_header() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(HEADER.pack(101))
    with pytest.raises(ProtocolError, match="larger than the limit"):
        decoder.next_message()


@pytest.mark.parametrize(
    "body, match",
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 99, "id": 1}), "unsupported protocol version"),
    ],
)
def test_decode_body_errors(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_body(body)


async def _raw(in_process: InProcessDaemon) -> trio.SocketStream:
    stream = await trio.open_unix_socket(str(in_process.socket))
    hello = await _read_frame(stream)
    assert hello["t"] == "hello" and hello["version"] == VERSION
    return stream


async def _read_frame(stream: trio.SocketStream) -> dict[str, Any]:
    decoder = FrameDecoder(1 << 30)
    while (message := decoder.next_message()) is None:
        data = await stream.receive_some(65536)
        assert data, "connection closed before a frame arrived"
        decoder.feed(data)
    return message


async def _assert_closed(stream: trio.SocketStream) -> None:
    try:
        with trio.fail_after(5):
            while True:
                try:
                    if not await stream.receive_some(65536):
                        return
                except trio.BrokenResourceError:
                    return
    finally:
        await stream.aclose()


async def _still_serving(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        assert await axon.put(b"still here") == (
            10,
            __import__("hashlib").sha256(b"still here").digest(),
        )


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a huge length prefix
        HEADER.pack(3) + b"\xc1\xc1\xc1",  # not msgpack
        HEADER.pack(3) + msgpack.packb([1, 2]),  # not a map
        encode({"id": "seven", "call": "has"}),  # bad id
        encode({"id": 1, "t": "dance"}),  # unknown kind
        encode({"v": 2, "id": 1, "call": "has"}),  # another version
    ],
)
async def test_garbage_gets_an_error_and_a_close(
    in_process: InProcessDaemon, garbage: bytes
) -> None:
    stream = await _raw(in_process)
    await stream.send_all(garbage)
    reply = await _read_frame(stream)
    assert reply["t"] == "err" and reply["error"]["code"] == "ProtocolError"
    await _assert_closed(stream)
    await _still_serving(in_process)
    assert in_process.server.statistics().protocol_errors >= 1


async def test_oversized_frame_is_refused_before_its_body(in_process: InProcessDaemon) -> None:
    stream = await _raw(in_process)
    await stream.send_all(HEADER.pack(MAX_REQUEST_FRAME + 1) + b"x" * 1000)
    reply = await _read_frame(stream)
    assert reply["error"]["code"] == "ProtocolError"
    assert reply["error"]["limit"] == MAX_REQUEST_FRAME
    await _assert_closed(stream)
    await _still_serving(in_process)


async def test_errors_carry_the_exception_code_and_fields(in_process: InProcessDaemon) -> None:
    stream = await _raw(in_process)
    await stream.send_all(encode({"id": 1, "call": "get", "args": [b"\x01" * 32], "kwargs": {}}))
    reply = await _read_frame(stream)
    assert reply["id"] == 1 and reply["t"] == "err"
    assert reply["error"] == {
        "code": "NoSuchFile",
        "message": "Axon does not contain the requested file.",
        "sha256": "01" * 32,
    }
    # unknown calls and bad arguments are BadArg, and the connection stays usable
    await stream.send_all(encode({"id": 2, "call": "format_disk", "args": [], "kwargs": {}}))
    assert (await _read_frame(stream))["error"]["code"] == "BadArg"
    await stream.send_all(encode({"id": 3, "call": "has", "args": [], "kwargs": {"x": 1}}))
    assert (await _read_frame(stream))["error"]["code"] == "BadArg"
    await stream.send_all(encode({"id": 4, "call": "metrics", "args": [], "kwargs": {}}))
    assert (await _read_frame(stream)) == {
        "v": VERSION,
        "id": 4,
        "t": "ok",
        "result": {"size:bytes": 0, "file:count": 0},
    }
    await stream.aclose()


async def test_client_reraises_axonfs_errors(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        with pytest.raises(NoSuchFile):
            await axon.hashset(b"\x02" * 32)
        with pytest.raises(BadArg, match="Offs must be >= 0"):
            [chunk async for chunk in axon.get((await axon.put(b"abc"))[1], -1, 1)]


async def test_requests_are_multiplexed_and_cancellable(in_process: InProcessDaemon) -> None:
    stream = await _raw(in_process)
    # a follow that would wait forever, then a quick call on the same connection
    await stream.send_all(
        encode({"id": 1, "call": "hashes", "args": [0, True, None], "kwargs": {}})
    )
    await stream.send_all(encode({"id": 2, "call": "has", "args": [b"\x00" * 32], "kwargs": {}}))
    assert await _read_frame(stream) == {"v": VERSION, "id": 2, "t": "ok", "result": False}
    await stream.send_all(encode({"id": 1, "t": "cancel"}))
    assert await _read_frame(stream) == {"v": VERSION, "id": 1, "t": "cancelled"}
    with trio.fail_after(5):
        while in_process.server.statistics().requests:
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)
    await stream.aclose()


async def test_a_put_is_answered_alone_and_behind_a_waiting_request(
    in_process: InProcessDaemon,
) -> None:
    """A put on an idle connection is answered by its reading task; one pipelined
    behind a request in progress gets a task, and neither waits for the other."""
    stream = await _raw(in_process)
    sha = hashlib.sha256(b"alone").digest()
    await stream.send_all(encode({"id": 1, "call": "put", "args": [b"alone"], "kwargs": {}}))
    assert await _read_frame(stream) == {"v": VERSION, "id": 1, "t": "ok", "result": (5, sha)}
    # A follow from far ahead of the log waits forever and yields nothing.
    await stream.send_all(
        encode({"id": 2, "call": "hashes", "args": [1 << 40, True, None], "kwargs": {}})
    )
    await stream.send_all(encode({"id": 3, "call": "put", "args": [b"behind"], "kwargs": {}}))
    reply = await _read_frame(stream)
    assert reply["id"] == 3 and reply["t"] == "ok", reply
    assert await in_process.axon.has(hashlib.sha256(b"behind").digest())
    await stream.send_all(encode({"id": 2, "t": "cancel"}))
    assert await _read_frame(stream) == {"v": VERSION, "id": 2, "t": "cancelled"}
    # A put with arguments it does not take is the caller's mistake, either way.
    await stream.send_all(encode({"id": 4, "call": "put", "args": [], "kwargs": {"x": 1}}))
    assert (await _read_frame(stream))["error"]["code"] == "BadArg"
    await stream.send_all(encode({"id": 5, "call": "has", "args": [sha], "kwargs": {}}))
    assert (await _read_frame(stream))["result"] is True
    await stream.aclose()


async def test_frame_header_is_big_endian_u32() -> None:
    frame = encode({"id": 5, "t": "cancel"})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4


async def _read_exactly(stream: trio.SocketStream, decoder: FrameDecoder, size: int) -> bytes:
    got = bytearray(decoder.take(size))
    while len(got) < size:
        data = await stream.receive_some(size - len(got))
        assert data, "connection closed inside a raw payload"
        got += data
    return bytes(got)


async def _frames_of_get(
    in_process: InProcessDaemon, digest: bytes, *, raw: bool, **kwargs: int
) -> tuple[list[str], bytes]:
    """Frame kinds of a get on the wire, and the bytes they carried."""
    stream = await _raw(in_process)
    await stream.send_all(
        encode(
            {
                "id": 1,
                "call": "get",
                "args": [digest],
                "kwargs": kwargs,
                **({"raw": True} if raw else {}),
            }
        )
    )
    decoder = FrameDecoder(1 << 30)
    kinds: list[str] = []
    data = bytearray()
    while not kinds or kinds[-1] not in ("end", "err"):
        while (message := decoder.next_message()) is None:
            decoder.feed(await stream.receive_some(1 << 20))
        kinds.append(message["t"])
        if message["t"] == "items":
            data += b"".join(message["items"])
        elif message["t"] == "raw":
            data += await _read_exactly(stream, decoder, message["size"])
    assert decoder.pending == 0
    await stream.aclose()
    return kinds, bytes(data)


async def test_big_bytes_items_go_raw_only_to_a_call_that_asks(in_process: InProcessDaemon) -> None:
    blob = bytes(range(256)) * (5 << 12)  # 5 MiB: two 4 MiB wire pieces
    _, digest = await in_process.axon.put(blob)
    kinds, data = await _frames_of_get(in_process, digest, raw=True)
    assert kinds == ["raw", "raw", "end"] and data == blob
    kinds, data = await _frames_of_get(in_process, digest, raw=False)
    assert "raw" not in kinds and kinds[-1] == "end" and data == blob


async def test_small_bytes_items_stay_in_items_frames(in_process: InProcessDaemon) -> None:
    blob = b"tiny but raw-capable"
    _, digest = await in_process.axon.put(blob)
    assert await _frames_of_get(in_process, digest, raw=True) == (["items", "end"], blob)
    kinds, data = await _frames_of_get(in_process, digest, raw=True, offs=3, size=5)
    assert (kinds, data) == (["items", "end"], blob[3:8])


async def test_the_client_reads_raw_items_across_many_receives(in_process: InProcessDaemon) -> None:
    blob = os.urandom(9 << 20)
    _, digest = await in_process.axon.put(blob)
    async with client.connect(in_process.socket) as axon:
        pieces = [piece async for piece in axon.get(digest)]
        assert b"".join(pieces) == blob and all(pieces)
        ranged = [piece async for piece in axon.get(digest, (4 << 20) - 10, 100)]
        assert b"".join(ranged) == blob[(4 << 20) - 10 : (4 << 20) + 90]
        assert await axon.has(digest)  # the connection is still in step after raw frames


async def test_a_frame_cut_short_by_a_cancel_closes_the_connection(
    in_process: InProcessDaemon,
) -> None:
    """A cancel that lands while a raw payload is half sent must not leave the
    client reading a frame header out of the middle of blob bytes."""
    _, digest = await in_process.axon.put(os.urandom(1 << 20) * 24)
    stream = await _raw(in_process)
    await stream.send_all(
        encode({"id": 1, "call": "get", "args": [digest], "kwargs": {}, "raw": True})
    )
    # Not reading: the daemon's send blocks inside a payload, and then every
    # task of this run (the server's included) is blocked.
    with trio.fail_after(20):
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
    await stream.send_all(encode({"id": 1, "t": "cancel"}))
    with trio.fail_after(10):
        while await stream.receive_some(1 << 20):
            pass  # drain what was sent, up to the end of the stream
    await stream.aclose()
    await _still_serving(in_process)
