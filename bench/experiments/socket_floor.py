"""Transport floors for the control socket, no axonfs code involved.

1. ping-pong of ~120-byte msgpack frames over a unix socket, sequential:
   a) two processes, blocking sockets (the floor for any cross-process design);
   b) two processes, asyncio client (anyio-free, plain sock_recv) + blocking server;
   c) one process, one asyncio loop, client and server tasks (how the reference's
      Telepath ``getLocalProxy()`` runs: no cross-process wake-up).
2. bulk 1 GiB (page-cached file) from a server process to a client over a unix socket:
   a) read 1 MiB + sendall; b) os.sendfile; client recv_into a reused 1 MiB buffer;
   c) as a) with SO_SNDBUF/SO_RCVBUF raised to 4 MiB (capped by net.core.[rw]mem_max).

Usage: python bench/experiments/socket_floor.py [--n 20000] [--mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import tempfile
import time
from multiprocessing import Process
from pathlib import Path

import msgpack

HDR = struct.Struct(">I")
MSG = msgpack.packb({"v": 1, "id": 1, "call": "has", "args": (os.urandom(32),), "kwargs": {}})
REPLY = msgpack.packb({"v": 1, "id": 1, "t": "ok", "result": True})


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def echo_server(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    conn, _ = srv.accept()
    try:
        while True:
            (size,) = HDR.unpack(recv_exact(conn, 4))
            msgpack.unpackb(recv_exact(conn, size))
            conn.sendall(HDR.pack(len(REPLY)) + REPLY)
    except (EOFError, ConnectionError):
        pass


def connect(path: str) -> socket.socket:
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.01)
    raise RuntimeError("no server")


def pingpong_blocking(n: int, tmp: str) -> float:
    path = os.path.join(tmp, "pp.sock")
    p = Process(target=echo_server, args=(path,))
    p.start()
    s = connect(path)
    frame = HDR.pack(len(MSG)) + MSG
    t0 = time.perf_counter()
    for _ in range(n):
        s.sendall(frame)
        (size,) = HDR.unpack(recv_exact(s, 4))
        msgpack.unpackb(recv_exact(s, size))
    secs = time.perf_counter() - t0
    s.close()
    p.join()
    os.unlink(path)
    return n / secs


def pingpong_asyncio_client(n: int, tmp: str) -> float:
    path = os.path.join(tmp, "pa.sock")
    p = Process(target=echo_server, args=(path,))
    p.start()

    async def client() -> float:
        reader, writer = await asyncio.open_unix_connection(path)
        frame = HDR.pack(len(MSG)) + MSG
        t0 = time.perf_counter()
        for _ in range(n):
            writer.write(frame)
            (size,) = HDR.unpack(await reader.readexactly(4))
            msgpack.unpackb(await reader.readexactly(size))
        secs = time.perf_counter() - t0
        writer.close()
        return n / secs

    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    rate = asyncio.run(client())
    p.join()
    os.unlink(path)
    return rate


def pingpong_same_loop(n: int, tmp: str) -> float:
    path = os.path.join(tmp, "ps.sock")

    async def main() -> float:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    (size,) = HDR.unpack(await reader.readexactly(4))
                    msgpack.unpackb(await reader.readexactly(size))
                    writer.write(HDR.pack(len(REPLY)) + REPLY)
            except (asyncio.IncompleteReadError, asyncio.CancelledError):
                writer.close()

        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        frame = HDR.pack(len(MSG)) + MSG
        t0 = time.perf_counter()
        for _ in range(n):
            writer.write(frame)
            (size,) = HDR.unpack(await reader.readexactly(4))
            msgpack.unpackb(await reader.readexactly(size))
        secs = time.perf_counter() - t0
        writer.close()
        server.close()
        return n / secs

    rate = asyncio.run(main())
    os.unlink(path)
    return rate


def trio_server(path: str, spawn: bool) -> None:
    """A minimal trio server: receive_some + decode, reply with send_all (optionally
    from a task spawned per request, as axonfs/ctlserver.py does)."""
    import trio

    async def main() -> None:
        listener = trio.socket.socket(trio.socket.AF_UNIX)
        await listener.bind(path)
        listener.listen(1)
        sock, _ = await listener.accept()
        stream = trio.SocketStream(sock)
        buf = bytearray()

        async def reply() -> None:
            await stream.send_all(HDR.pack(len(REPLY)) + REPLY)

        async with trio.open_nursery() as nursery:
            while True:
                data = await stream.receive_some(1 << 20)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    (size,) = HDR.unpack_from(buf)
                    if len(buf) < 4 + size:
                        break
                    msgpack.unpackb(bytes(buf[4 : 4 + size]))
                    del buf[: 4 + size]
                    if spawn:
                        nursery.start_soon(reply)
                    else:
                        await reply()

    trio.run(main)


def pingpong_trio_server(n: int, tmp: str, spawn: bool) -> float:
    path = os.path.join(tmp, f"pt{int(spawn)}.sock")
    p = Process(target=trio_server, args=(path, spawn))
    p.start()
    s = connect(path)
    frame = HDR.pack(len(MSG)) + MSG
    t0 = time.perf_counter()
    for _ in range(n):
        s.sendall(frame)
        (size,) = HDR.unpack(recv_exact(s, 4))
        msgpack.unpackb(recv_exact(s, size))
    secs = time.perf_counter() - t0
    s.close()
    p.join()
    os.unlink(path)
    return n / secs


def pingpong_anyio_client(n: int, tmp: str) -> float:
    """anyio.connect_unix under asyncio (what axonfs.client uses) -> blocking server."""
    import anyio

    path = os.path.join(tmp, "pan.sock")
    p = Process(target=echo_server, args=(path,))
    p.start()

    async def client() -> float:
        stream = await anyio.connect_unix(path)
        frame = HDR.pack(len(MSG)) + MSG
        buf = bytearray()
        t0 = time.perf_counter()
        for _ in range(n):
            await stream.send(frame)
            while True:
                if len(buf) >= 4:
                    (size,) = HDR.unpack_from(buf)
                    if len(buf) >= 4 + size:
                        msgpack.unpackb(bytes(buf[4 : 4 + size]))
                        del buf[: 4 + size]
                        break
                buf += await stream.receive(1 << 20)
        secs = time.perf_counter() - t0
        await stream.aclose()
        return n / secs

    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    rate = anyio.run(client, backend="asyncio")
    p.join()
    os.unlink(path)
    return rate


def bulk_server(path: str, data_path: str, mode: str) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    conn, _ = srv.accept()
    if mode == "bigbuf":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    fd = os.open(data_path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    if mode == "sendfile":
        offs = 0
        while offs < size:
            offs += os.sendfile(conn.fileno(), fd, offs, size - offs)
    else:
        offs = 0
        while offs < size:
            piece = os.pread(fd, 1 << 20, offs)
            conn.sendall(piece)
            offs += len(piece)
    conn.close()


def bulk(mode: str, tmp: str, data_path: str, total: int) -> float:
    path = os.path.join(tmp, f"b-{mode}.sock")
    p = Process(target=bulk_server, args=(path, data_path, mode))
    p.start()
    s = connect(path)
    if mode == "bigbuf":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    t0 = time.perf_counter()
    while True:
        n = s.recv_into(view)
        if not n:
            break
        got += n
    secs = time.perf_counter() - t0
    assert got == total, got
    s.close()
    p.join()
    os.unlink(path)
    return total / (1 << 20) / secs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--skip-bulk", action="store_true")
    args = p.parse_args()
    print("loadavg", Path("/proc/loadavg").read_text().strip())
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.bin")
        with open(data_path, "wb") as f:
            for _ in range(0 if args.skip_bulk else args.mib):
                f.write(os.urandom(1 << 20))
        for rep in range(args.reps):
            print(
                f"rep {rep}: ping-pong round trips/s: two processes blocking "
                f"{pingpong_blocking(args.n, tmp):,.0f}; asyncio client "
                f"{pingpong_asyncio_client(args.n, tmp):,.0f}; one asyncio loop "
                f"{pingpong_same_loop(args.n, tmp):,.0f}; anyio client "
                f"{pingpong_anyio_client(args.n, tmp):,.0f}; trio server "
                f"{pingpong_trio_server(args.n, tmp, False):,.0f}; trio server, task per "
                f"request {pingpong_trio_server(args.n, tmp, True):,.0f}",
                flush=True,
            )
            if args.skip_bulk:
                continue
            print(
                f"rep {rep}: bulk {args.mib} MiB MiB/s: pread+sendall "
                f"{bulk('read', tmp, data_path, args.mib << 20):,.0f}; sendfile "
                f"{bulk('sendfile', tmp, data_path, args.mib << 20):,.0f}; 4 MiB buffers "
                f"{bulk('bigbuf', tmp, data_path, args.mib << 20):,.0f}",
                flush=True,
            )
    print("loadavg", Path("/proc/loadavg").read_text().strip())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
