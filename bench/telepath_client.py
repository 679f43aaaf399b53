"""The Telepath benchmark's client: Synapse's own client against one Axon.

Run with Synapse's python (``.venv-synapse``) by ``bench_telepath.py``; it
prints one JSON document of figures. Usage::

    telepath_client.py URL --small-count N --big-mib M --chunk-mib C --has-ops K
"""

import argparse
import asyncio
import hashlib
import json
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import synapse.telepath as s_telepath

T = TypeVar("T")


async def timed(coro: Coroutine[Any, Any, T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


async def main(opts: argparse.Namespace) -> None:
    out: dict[str, float] = {}
    async with await s_telepath.openurl(opts.url) as axon:
        await axon.has(b"\0" * 32)  # the pool's first link
        smalls = [os.urandom(4096) for _ in range(opts.small_count)]

        async def puts_seq() -> None:
            for blob in smalls:
                await axon.put(blob)

        seconds, _ = await timed(puts_seq())
        out["put 4 KiB seq, files/s"] = opts.small_count / seconds

        more = [os.urandom(4096) for _ in range(opts.small_count)]

        # At most 64 in flight: each is a pool connection, and the reference's unix
        # socket (asyncio's backlog of 100) drops connections beyond its backlog.
        limit = asyncio.Semaphore(64)

        async def put_limited(blob: bytes) -> None:
            async with limit:
                await axon.put(blob)

        async def puts_concurrent() -> None:
            await asyncio.gather(*(put_limited(blob) for blob in more))

        seconds, _ = await timed(puts_concurrent())
        out["put 4 KiB, 64 concurrent, files/s"] = opts.small_count / seconds

        batches = [
            [os.urandom(4096) for _ in range(100)] for _ in range(max(1, opts.small_count // 100))
        ]

        async def puts_batched() -> None:
            for batch in batches:
                await axon.puts(batch)

        seconds, _ = await timed(puts_batched())
        out["puts 100 x 4 KiB, files/s"] = sum(map(len, batches)) / seconds

        present = [hashlib.sha256(blob).digest() for blob in smalls]
        probes = [
            present[i % len(present)] if i % 2 else os.urandom(32) for i in range(opts.has_ops)
        ]

        async def has_all() -> None:
            for sha in probes:
                await axon.has(sha)

        seconds, _ = await timed(has_all())
        out["has, ops/s"] = opts.has_ops / seconds

        async def size_all() -> None:
            for sha in probes:
                await axon.size(sha)

        seconds, _ = await timed(size_all())
        out["size, ops/s"] = opts.has_ops / seconds

        chunk = opts.chunk_mib << 20
        total = opts.big_mib << 20
        seed = os.urandom(chunk)

        async def upload() -> tuple[int, bytes]:
            async with await axon.upload() as upfd:
                for index in range(total // chunk):
                    piece = index.to_bytes(8, "big") + seed[8:]  # distinct content, one copy
                    await upfd.write(piece)
                size, sha = await upfd.save()
                return int(size), bytes(sha)

        seconds, (size, sha) = await timed(upload())
        out["upload, MB/s"] = size / seconds / 1e6

        async def get() -> int:
            received = 0
            async for piece in axon.get(sha):
                received += len(piece)
            return received

        seconds, received = await timed(get())
        assert received == size
        out["get, MB/s"] = size / seconds / 1e6
        # Again, with the bytes in memory on both sides: what the server can send,
        # apart from the disk (an axonfs upload is written past the page cache).
        seconds, received = await timed(get())
        assert received == size
        out["get again, MB/s"] = size / seconds / 1e6

        async def hashes() -> int:
            return len([row async for row in axon.hashes(0)])

        seconds, rows = await timed(hashes())
        out["hashes(0), rows/s"] = rows / seconds

        async def history() -> int:
            return len([row async for row in axon.history(0)])

        seconds, rows = await timed(history())
        out["history(0), rows/s"] = rows / seconds
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--has-ops", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
