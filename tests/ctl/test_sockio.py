"""SocketWire: the control socket's I/O, on real socket pairs, under trio and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import anyio
import anyio.lowlevel
import pytest
import trio

from axonfs.sockio import YIELD_EVERY, SocketWire


def trio_wire(sock: socket.socket) -> SocketWire:
    return SocketWire(
        sock.fileno(),
        wait_readable=trio.lowlevel.wait_readable,
        wait_writable=trio.lowlevel.wait_writable,
        checkpoint=trio.lowlevel.checkpoint,
    )


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_a_large_send_waits_for_room_and_arrives_whole() -> None:
    a, b = pair()
    data = os.urandom(8 << 20)  # far more than a socket buffer holds
    got = bytearray()
    with a, b:
        sender, receiver = trio_wire(a), trio_wire(b)

        async def send() -> None:
            await sender.send_all(data)
            a.shutdown(socket.SHUT_WR)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while piece := await receiver.receive_some(1 << 16):
                got += piece
    assert got == data


async def test_end_of_stream_reads_empty_and_a_gone_peer_fails_the_send() -> None:
    a, b = pair()
    with a:
        wire = trio_wire(a)
        b.close()
        assert await wire.receive_some(100) == b""
        with pytest.raises(ConnectionError):
            for _ in range(100):  # the first send may still land in the buffer
                await wire.send_all(b"x" * 65536)


async def test_a_socket_that_stays_ready_does_not_starve_other_tasks() -> None:
    """Reads that never wait must still let the scheduler run others."""
    a, b = pair()
    ticks = 0
    reads = 0
    with a, b:
        a.sendall(b"x" * (50 * YIELD_EVERY))
        wire = trio_wire(b)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            while reads < 50 * YIELD_EVERY:
                await wire.receive_some(1)
                reads += 1
            nursery.cancel_scope.cancel()
    assert ticks >= 50  # about one tick per YIELD_EVERY reads
    assert ticks <= 50 * YIELD_EVERY // 2  # and it did skip passes: not one per read


async def test_a_waiting_receive_can_be_cancelled() -> None:
    a, b = pair()
    with a, b:
        wire = trio_wire(b)
        with trio.move_on_after(0.05) as scope:
            await wire.receive_some(10)
        assert scope.cancelled_caught


def test_under_asyncio_through_anyio() -> None:
    """The client's loop: anyio's waits, under asyncio."""
    data = os.urandom(3 << 20)

    async def main() -> bytes:
        a, b = pair()
        with a, b:
            sender, receiver = (
                SocketWire(
                    s.fileno(),
                    wait_readable=anyio.wait_readable,
                    wait_writable=anyio.wait_writable,
                    checkpoint=anyio.lowlevel.checkpoint,
                )
                for s in (a, b)
            )
            got = bytearray()

            async def send() -> None:
                await sender.send_all(data)
                a.shutdown(socket.SHUT_WR)

            task = asyncio.ensure_future(send())
            while piece := await receiver.receive_some(1 << 16):
                got += piece
            await task
            return bytes(got)

    assert asyncio.run(main()) == data


async def test_mid_send_tells_a_send_cut_short_from_one_never_started() -> None:
    a, b = pair()
    with a, b:
        wire = trio_wire(a)
        with trio.move_on_after(0.2):
            await wire.send_all(b"h" * 10, os.urandom(16 << 20))  # the peer never reads
        assert wire.mid_send  # part of it is out: the stream is no longer framed
    a, b = pair()
    with a, b:
        with contextlib.suppress(BlockingIOError):
            while True:
                a.send(bytes(1 << 16))  # fill the socket: the next send must wait
        wire = trio_wire(a)
        with trio.move_on_after(0.2):
            await wire.send_all(b"header", b"body")
        assert not wire.mid_send  # cancelled before any byte of it went out
