"""Same-run A/B of get paths: axonfs as is vs. monkeypatched variants.

Scratch: nothing under axonfs/ changes.
"""

import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from axonfs.axon import Axon, _range_of
from axonfs.hashing import Sha256

MiB = 1 << 20


async def get_inline_open(
    self: Axon, sha256: bytes, offs: int | None = None, size: int | None = None
) -> AsyncIterator[bytes]:
    # like Axon.get but the local open and small reads run inline (no thread hop)
    row = self.require(sha256)
    start, end = _range_of(row.size, offs, size)
    if start >= row.size and offs is not None:
        yield b""
        return
    reader = self.backend.open(row.sha256)
    try:
        while start < end:
            piece = await self.read(reader, start, min(1 << 20, end - start))
            start += len(piece)
            yield piece
    finally:
        reader.close()


GetVariant = Callable[..., AsyncIterator[bytes | memoryview]]


def make_get_big_thread(chunk: int) -> GetVariant:
    async def get_big(
        self: Axon, sha256: bytes, offs: int | None = None, size: int | None = None
    ) -> AsyncIterator[memoryview]:
        # one thread hop per `chunk` bytes, yielded as 1 MiB memoryview slices
        row = self.require(sha256)
        start, end = _range_of(row.size, offs, size)
        reader = await self.open_reader(row.sha256)
        try:
            while start < end:
                buf = await trio.to_thread.run_sync(reader.read, start, min(chunk, end - start))
                view = memoryview(buf)
                for i in range(0, len(buf), 1 << 20):
                    yield view[i : i + (1 << 20)]
                start += len(buf)
        finally:
            reader.close()

    return get_big


async def get_all_inline(
    self: Axon, sha256: bytes, offs: int | None = None, size: int | None = None
) -> AsyncIterator[bytes]:
    # every 1 MiB pread inline on the trio thread (blocks the loop ~100 us per piece when cached)
    row = self.require(sha256)
    start, end = _range_of(row.size, offs, size)
    reader = self.backend.open(row.sha256)
    try:
        while start < end:
            piece = reader.read(start, min(1 << 20, end - start))
            start += len(piece)
            yield piece
            await trio.lowlevel.checkpoint()
    finally:
        reader.close()


def native_read(path: Path) -> float:
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while p := f.read(MiB):
            n += len(p)
    return n / MiB / (time.perf_counter() - t0)


async def main() -> None:
    big = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    work = Path(tempfile.mkdtemp(prefix="axonfs-var-"))
    try:
        async with Axon.open(work / "s") as axon:
            rnd = random.Random(0)
            base = rnd.randbytes(8 * MiB)
            async with await axon.upload() as up:
                for i in range(big // 8):
                    await up.write(i.to_bytes(16, "big") + base[16:])
                _, sha = await up.save()
            path = axon.backend.path_of(Sha256(sha))
            assert path is not None  # the local backend
            native_read(path)
            variants: dict[str, GetVariant] = {
                "as is": Axon.get,
                "inline open": get_inline_open,
                "thread per 8 MiB, 1 MiB views": make_get_big_thread(8 * MiB),
                "all inline 1 MiB": get_all_inline,
            }
            print("whole get, MiB/s (best of 3), ratio to plain read:")
            for name, fn in variants.items():
                best = 0.0
                nat = 0.0
                for _ in range(3):
                    nat = max(nat, native_read(path))
                    t0 = time.perf_counter()
                    n = 0
                    async for p in fn(axon, sha):
                        n += len(p)
                    assert n == big * MiB
                    best = max(best, n / MiB / (time.perf_counter() - t0))
                print(f"  {name:32s} {best:8.0f}   plain {nat:8.0f}   ratio {best / nat:.2f}")
            rr = random.Random(1)
            k = 20000
            offs = [rr.randrange(0, big * MiB - 4096) for _ in range(k)]
            print(f"ranged 4 KiB gets, ops/s ({k}):")
            for name in ("as is", "inline open"):
                fn = variants[name]
                t0 = time.perf_counter()
                for o in offs:
                    async for _ in fn(axon, sha, o, 4096):
                        pass
                print(f"  {name:32s} {k / (time.perf_counter() - t0):8.0f}")
            # thread hop cost alone
            t0 = time.perf_counter()
            for _ in range(5000):
                await trio.to_thread.run_sync(int)
            hop = (time.perf_counter() - t0) / 5000 * 1e6
            print(f"trio.to_thread.run_sync round trip: {hop:.0f} us")
    finally:
        shutil.rmtree(work, ignore_errors=True)


trio.run(main)
