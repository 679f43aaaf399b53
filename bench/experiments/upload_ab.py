"""Same-run A/B for upload: native serial, axonfs as is, axonfs with write || hash.

Scratch: the variant is monkeypatched in; nothing under axonfs/ changes.
"""

import contextlib
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import trio

from axonfs.axon import Axon, Upload

MiB = 1 << 20
N = int(sys.argv[1]) if len(sys.argv) > 1 else 512
rnd = random.Random(0)
base = bytearray(rnd.randbytes(8 * MiB))
chunks: list[bytes] = []
for i in range(N // 8):
    base[0:16] = i.to_bytes(16, "big")
    chunks.append(bytes(base))


async def write_overlap(self: Upload, byts: bytes) -> None:
    spool = await self._current()
    view = memoryview(byts)

    def w() -> None:
        off = spool.size
        n = 0
        while n < len(view):
            n += os.pwrite(spool.fd, view[n:], off + n)

    async with trio.open_nursery() as nur:
        nur.start_soon(trio.to_thread.run_sync, w)
        nur.start_soon(trio.to_thread.run_sync, spool._hasher.update, view)
    spool.size += len(view)
    spool._hashed += len(view)


def remove_native_files(work: Path) -> None:
    for f in work.glob("n*"):
        f.unlink()


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="axonfs-up-"))
    res: dict[str, list[float]] = {
        "sha256 only": [],
        "native write+sha256+fsync": [],
        "axonfs as is": [],
        "axonfs write||hash": [],
    }
    try:
        async with Axon.open(work / "s") as axon:
            for rep in range(3):
                for name in res:
                    t0 = time.perf_counter()
                    if name == "sha256 only":
                        h = hashlib.sha256()
                        for c in chunks:
                            h.update(c)
                    elif name.startswith("native"):
                        fd = os.open(work / f"n{rep}", os.O_WRONLY | os.O_CREAT, 0o644)
                        h = hashlib.sha256()
                        for c in chunks:
                            os.write(fd, c)
                            h.update(c)
                        os.fsync(fd)
                        os.close(fd)
                    else:
                        with contextlib.ExitStack() as variant:
                            if "hash" in name:
                                variant.enter_context(
                                    mock.patch.object(Upload, "write", write_overlap)
                                )
                            async with await axon.upload() as up:
                                for c in chunks:
                                    await up.write(c)
                                size, sha = await up.save()
                        await axon.del_(sha)
                    res[name].append(N / (time.perf_counter() - t0))
                await trio.to_thread.run_sync(remove_native_files, work)
        for k, v in res.items():
            print(f"{k:30s} median {statistics.median(v):7.0f} MiB/s  runs {[round(x) for x in v]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


trio.run(main)
