"""A store writer for test_crash.py to SIGKILL: ``crash_writer.py STORE SEED``.

Three tasks write at once, so batches mix adds, dedups and deletes: puts of
0..4 MiB, large uploads written in uneven pieces, small multi-puts, re-puts of
existing content, and deletes. The store is kept under ~120 MiB by deleting.
Prints ``open`` once the store is open, then one ``.`` per commit.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import trio

from axonfs.axon import Axon

MiB = 1 << 20
MAX_BYTES = 120 * MiB


async def worker(axon: Axon, rng: random.Random, recent: list[bytes]) -> None:
    while True:
        roll = rng.random()
        if (await axon.metrics())["size:bytes"] > MAX_BYTES or roll < 0.15:
            rows = [row async for row in axon.hashes(max(0, axon.index.next_indx() - 50))]
            if rows:
                doomed = [sha for _, (sha, _) in rng.sample(rows, min(len(rows), 3))]
                await axon.dels(doomed)
        elif roll < 0.60:
            data = rng.randbytes(rng.randrange(0, 4 * MiB + 1))
            await axon.put(data)
            if len(data) < 64 * 1024:
                recent.append(data)
        elif roll < 0.70:
            size = rng.randrange(8 * MiB, 24 * MiB)
            async with await axon.upload() as upload:
                written = 0
                while written < size:
                    piece = rng.randbytes(min(size - written, rng.choice([4096, MiB, 3 * MiB])))
                    await upload.write(piece)
                    written += len(piece)
                await upload.save()
        elif roll < 0.85:
            await axon.puts([rng.randbytes(rng.randrange(0, 20_000)) for _ in range(5)])
        elif recent:
            await axon.put(rng.choice(recent))  # usually a dedup, sometimes a re-add
        print(".", end="", flush=True)


async def main(store: Path, seed: int) -> None:
    rng = random.Random(seed)
    recent: list[bytes] = []
    async with Axon.open(store) as axon:
        print("open", flush=True)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(worker, axon, random.Random(rng.random()), recent)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
