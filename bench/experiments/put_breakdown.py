"""Where a small put's time goes: wrap the store's steps with timers.

Scratch A/B: nothing under axonfs/ changes.
"""

import collections
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

import axonfs.store.spool as spool_mod
from axonfs.axon import Axon
from axonfs.backends.local import LocalBackend
from axonfs.store.index import Index
from axonfs.store.store import Store

acc: collections.defaultdict[str, float] = collections.defaultdict(float)
cnt: collections.Counter[str] = collections.Counter()


def wrap(cls: type, name: str, label: str) -> None:
    orig: Callable[..., Any] = getattr(cls, name)

    def w(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            acc[label] += time.perf_counter() - t0
            cnt[label] += 1

    setattr(cls, name, w)


wrap(Axon, "_spool_all", "spool: mkstemp+write+sha256+close (worker)")
wrap(spool_mod.Spool, "__init__", "  of which mkstemp")
wrap(Store, "commit", "commit total (worker)")
wrap(LocalBackend, "put_file", "  rename (+mkdir) into blobs/")
wrap(LocalBackend, "flush", "  syncfs")
wrap(Index, "apply", "  lmdb write txn, synced")
wrap(Index, "__init__", "x")


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    work = Path(tempfile.mkdtemp(prefix="axonfs-put-"))
    try:
        async with Axon.open(work / "s") as axon:
            for mode in ("sequential", "concurrent16", "puts100"):
                rnd = random.Random(hash(mode))
                blobs = [rnd.randbytes(4096) for _ in range(n)]
                acc.clear()
                cnt.clear()
                b0 = axon._committer.batches
                t0 = time.perf_counter()
                if mode == "sequential":
                    for b in blobs:
                        await axon.put(b)
                elif mode == "concurrent16":
                    it = iter(blobs)

                    async def w(it: Iterator[bytes] = it) -> None:
                        for b in it:
                            await axon.put(b)

                    async with trio.open_nursery() as nur:
                        for _ in range(16):
                            nur.start_soon(w)
                else:
                    for i in range(0, n, 100):
                        await axon.puts(blobs[i : i + 100])
                wall = time.perf_counter() - t0
                commits = axon._committer.batches - b0
                print(
                    f"{mode}: {n / wall:,.0f} files/s, wall {wall * 1e6 / n:.0f} us/file, "
                    f"{commits} commits ({n / commits:.1f} files/commit)"
                )
                for k in acc:
                    print(
                        f"   {k:45s} {acc[k] * 1e6 / n:8.1f} us/file   "
                        f"{acc[k] * 1e6 / cnt[k]:9.1f} us/call  calls {cnt[k]}"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)


trio.run(main)
