"""A store writer whose disk loses power:
``power_cut_writer.py STORE MODE SEED [SYNC_INTERVAL_MS]``.

It prints one line per acknowledged call, after the call returned:
``put <hex>`` (the blob is promised durable), ``del <hex>`` (promised gone);
before a delete it prints ``deleting <hex>`` (from then on the blob may be
gone, whether or not the call returns);
``open`` once the store is open and ``done`` at the end. The test reads these
lines to know what a power cut must not undo.

With a sync interval, a put of a small blob is acknowledged before it is
durable: it prints ``tput <hex> <monotonic ns>`` instead, and ``synced``
after every call that made all before it durable (``sync()``, and every
call that is durable itself: deletes, large puts, spills).

Modes:

* ``sequence``: one fixed sequence of calls, one at a time, so a sweep over
  the harness's sync points crosses every step: small puts (journaled in the
  index), large puts (blob files), a streamed upload, a multi-put, a dedup,
  deletes of both kinds, a spill of the small-blob journal, more puts after
  it; then a clean close (which spills again).
* ``concurrent``: eight tasks put and delete until killed, so commits group
  several callers' blobs and spills run beside commits.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import trio

from axonfs.axon import Axon

SMALL = 20_000
"""Journaled in the index commit (below the store's JOURNAL_MAX)."""
LARGE = 300_000
"""A blob file of its own, fdatasync'ed and renamed into place."""


def ack(kind: str, sha256: bytes) -> None:
    print(f"{kind} {sha256.hex()}", flush=True)


def synced() -> None:
    print("synced", flush=True)


async def put(axon: Axon, data: bytes, alone: bool = True) -> bytes:
    """Put *data* and say so: ``tput`` if the store may not have it durable yet.

    *alone*: no other task is writing, so a durable put made every put before
    it durable too (with others, their acks may be printed in another order).
    """
    sha = (await axon.put(data))[1]
    if axon.sync_interval and len(data) <= SMALL:
        print(f"tput {sha.hex()} {time.monotonic_ns()}", flush=True)
    else:
        ack("put", sha)
        if alone:
            synced()
    return sha


async def sequence(axon: Axon, rng: random.Random) -> None:
    small = [rng.randbytes(rng.randrange(1, SMALL)) for _ in range(6)]
    large = [rng.randbytes(LARGE + rng.randrange(1000)) for _ in range(3)]
    shas: list[bytes] = []
    for data in (small[0], large[0], small[1]):
        shas.append(await put(axon, data))
    async with await axon.upload() as upload:
        for _ in range(3):
            await upload.write(rng.randbytes(100_000))
        ack("put", (await upload.save())[1])
        synced()
    await put(axon, small[4])
    for _, sha in await axon.puts([small[2], large[1], rng.randbytes(50)]):
        ack("put", sha)
    synced()
    await put(axon, small[0])  # a dedup
    await put(axon, small[5])
    await axon.sync()
    synced()
    ack("deleting", shas[0])
    ack("deleting", shas[1])
    await axon.dels([shas[0], shas[1]])  # a journaled small blob and a blob file
    ack("del", shas[0])
    ack("del", shas[1])
    synced()
    await axon.spill_journal()
    print("spilled", flush=True)
    synced()
    for data in (small[3], large[2]):
        await put(axon, data)
    ack("deleting", shas[2])
    await axon.dels([shas[2]])  # a small blob whose file the spill wrote
    ack("del", shas[2])
    synced()


async def small_puts(axon: Axon, rng: random.Random) -> None:
    """Small puts one after the other, until killed (the sync interval's bound)."""
    while True:
        await put(axon, rng.randbytes(rng.randrange(1, 4096)))


async def busy(axon: Axon, rng: random.Random) -> None:
    mine: list[bytes] = []
    while True:
        if mine and rng.random() < 0.1:
            sha = mine.pop(rng.randrange(len(mine)))
            ack("deleting", sha)
            await axon.dels([sha])
            ack("del", sha)
            continue
        if rng.random() < 0.03:
            await axon.spill_journal()  # files of journaled blobs, beside others' commits
        size = rng.randrange(1, SMALL) if rng.random() < 0.7 else LARGE + rng.randrange(1000)
        sha = await put(axon, rng.randbytes(size), alone=False)
        mine.append(sha)


async def main(store: Path, mode: str, seed: int, sync_interval_ms: int) -> None:
    rng = random.Random(seed)
    async with Axon.open(store, sync_interval=sync_interval_ms / 1000) as axon:
        print("open", flush=True)
        if mode == "sequence":
            await sequence(axon, rng)
        elif mode == "small":
            await small_puts(axon, rng)
        else:
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(busy, axon, random.Random(rng.random()))
    print("done", flush=True)


if __name__ == "__main__":
    trio.run(
        main,
        Path(sys.argv[1]),
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]) if len(sys.argv) > 4 else 0,
    )
