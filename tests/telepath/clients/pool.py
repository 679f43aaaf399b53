"""Concurrent calls over the client's pool links, and generators abandoned midway.

Usage: pool.py URL. Prints a JSON report.
"""

import asyncio
import hashlib
import json
import os
import sys
from typing import Any

import synapse.telepath as s_telepath

BIG = 40 << 20  # three get() pieces of at most 16 MiB


async def main(url: str) -> None:
    out: dict[str, Any] = {}
    async with await s_telepath.openurl(url) as axon:
        blobs = [os.urandom(1000 + i) for i in range(20)]
        results = await asyncio.gather(*(axon.put(blob) for blob in blobs))
        out["puts_ok"] = all(
            sha == hashlib.sha256(blob).digest() and size == len(blob)
            for blob, (size, sha) in zip(blobs, results, strict=True)
        )
        gets = await asyncio.gather(*(collect(axon, hashlib.sha256(b).digest()) for b in blobs))
        out["gets_ok"] = gets == blobs
        out["links"] = len(axon.alllinks)
        # Hundreds at once: a pool connection each, all queued by the listener.
        many = await asyncio.gather(*(axon.put(os.urandom(64)) for _ in range(300)))
        out["many"] = len(many)

        big = os.urandom(BIG)
        async with await axon.upload() as upfd:
            for start in range(0, BIG, 8 << 20):
                await upfd.write(big[start : start + (8 << 20)])
            size, sha = await upfd.save()
        genr = axon.get(sha)
        async for piece in genr:
            out["first_piece"] = len(piece)
            break
        await genr.aclose()
        follow = axon.hashes(0, wait=True)
        async for _ in follow:
            break
        await follow.aclose()
        # The proxy goes on working after both.
        out["after"] = [await axon.has(sha), (await axon.put(b"after"))[0]]
        out["big_ok"] = (
            hashlib.sha256(b"".join([piece async for piece in axon.get(sha)])).digest() == sha
        )
    print(json.dumps(out))


async def collect(axon: Any, sha: bytes) -> bytes:
    return b"".join([piece async for piece in axon.get(sha)])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
