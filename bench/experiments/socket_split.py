"""Where a control-socket round trip goes: the real daemon, several clients.

Starts ``axonfs serve`` on a temp store (bench_socket.Daemon), stores a few
blobs, then times sequential ``has`` calls (and ``ping``) with:

  raw    a blocking socket speaking the protocol by hand (minimal client cost)
  asyncio / trio   axonfs.client.connect under that event loop

and pipelined ``has`` (raw client, 32 requests in flight on one connection).

Usage: python bench/experiments/socket_split.py [--n 5000] [--reps 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_socket import Daemon  # noqa: E402

import axonfs.client  # noqa: E402

HDR = struct.Struct(">I")


class Raw:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buf = bytearray()
        self.rid = 0
        self.recv()  # hello

    def recv(self) -> dict[str, Any]:
        while True:
            if len(self.buf) >= 4:
                (size,) = HDR.unpack_from(self.buf)
                if len(self.buf) >= 4 + size:
                    msg: dict[str, Any] = msgpack.unpackb(bytes(self.buf[4 : 4 + size]), raw=False)
                    del self.buf[: 4 + size]
                    return msg
            self.buf += self.sock.recv(1 << 20)

    def frame(self, call: str, *args: object) -> bytes:
        self.rid += 1
        body: bytes = msgpack.packb(
            {"v": 1, "id": self.rid, "call": call, "args": args, "kwargs": {}}, use_bin_type=True
        )
        return HDR.pack(len(body)) + body

    def call(self, call: str, *args: object) -> object:
        self.sock.sendall(self.frame(call, *args))
        return self.recv()["result"]


def raw_rate(path: Path, call: str, probe: list[bytes]) -> float:
    r = Raw(path)
    t0 = time.perf_counter()
    for sha in probe:
        if call == "ping":
            r.call("ping")
        else:
            r.call(call, sha)
    secs = time.perf_counter() - t0
    r.sock.close()
    return len(probe) / secs


def raw_pipelined(path: Path, probe: list[bytes], depth: int = 32) -> float:
    r = Raw(path)
    t0 = time.perf_counter()
    for i in range(0, len(probe), depth):
        batch = probe[i : i + depth]
        r.sock.sendall(b"".join(r.frame("has", sha) for sha in batch))
        for _ in batch:
            r.recv()
    secs = time.perf_counter() - t0
    r.sock.close()
    return len(probe) / secs


async def client_rate(path: Path, probe: list[bytes]) -> float:
    async with axonfs.client.connect(path) as axon:
        t0 = time.perf_counter()
        for sha in probe:
            await axon.has(sha)
        return len(probe) / (time.perf_counter() - t0)


async def anyio_raw_rate(path: Path, probe: list[bytes]) -> float:
    """anyio.connect_unix speaking the protocol by hand (no axonfs.client code)."""
    stream = await anyio.connect_unix(str(path))
    buf = bytearray()

    async def recv() -> dict[str, Any]:
        nonlocal buf
        while True:
            if len(buf) >= 4:
                (size,) = HDR.unpack_from(buf)
                if len(buf) >= 4 + size:
                    msg: dict[str, Any] = msgpack.unpackb(bytes(buf[4 : 4 + size]), raw=False)
                    del buf[: 4 + size]
                    return msg
            buf += await stream.receive(1 << 20)

    await recv()  # hello
    t0 = time.perf_counter()
    for rid, sha in enumerate(probe, start=1):
        body = msgpack.packb(
            {"v": 1, "id": rid, "call": "has", "args": (sha,), "kwargs": {}}, use_bin_type=True
        )
        await stream.send(HDR.pack(len(body)) + body)
        await recv()
    secs = time.perf_counter() - t0
    await stream.aclose()
    return len(probe) / secs


async def store_some(path: Path) -> list[bytes]:
    async with axonfs.client.connect(path) as axon:
        return [sha for _, sha in await axon.puts([os.urandom(64) for _ in range(100)])]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument(
        "--fastpath",
        action="store_true",
        help="run the daemon with experiments/fastpath_daemon.py's patch",
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp) / "store")
        if args.fastpath:
            daemon.command = [sys.executable, str(Path(__file__).with_name("fastpath_daemon.py"))]
        daemon.start()
        try:
            shas = anyio.run(store_some, daemon.socket)
            probe = [
                shas[i % len(shas)] if i % 2 == 0 else hashlib.sha256(b"x%d" % i).digest()
                for i in range(args.n)
            ]
            for rep in range(args.reps):
                print(
                    f"rep {rep} load {Path('/proc/loadavg').read_text().split()[:3]}: "
                    f"raw has {raw_rate(daemon.socket, 'has', probe):,.0f}/s; "
                    f"raw ping {raw_rate(daemon.socket, 'ping', probe):,.0f}/s; "
                    f"raw has pipelined x32 {raw_pipelined(daemon.socket, probe):,.0f}/s; "
                    f"anyio by hand {anyio.run(anyio_raw_rate, daemon.socket, probe):,.0f}/s; "
                    f"client asyncio {anyio.run(client_rate, daemon.socket, probe):,.0f}/s; "
                    f"client trio "
                    f"{anyio.run(client_rate, daemon.socket, probe, backend='trio'):,.0f}/s",
                    flush=True,
                )
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
