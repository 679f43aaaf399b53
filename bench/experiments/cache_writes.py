"""What a read-cache block write costs here, against plain writes in the same run.

Writes ``--blocks`` blocks of ``--block-kib`` KiB (one blob's, in order) in
rounds, each round into a fresh directory under ``--dir``:

1. ``BlockCache.put`` of axonfs (segment files, ``O_DIRECT``);
2. plain buffered ``pwrite`` into one file (the page cache must find a page
   for every byte: on a VM, fresh pages are slow to fault in);
3. the same right after round 2's file was deleted (its pages come back);
4. plain ``O_DIRECT`` ``pwrite`` into one file from an aligned buffer (the
   disk's ceiling for this pattern).

Prints ms per block and MiB/s for each, and the cache's rate as a ratio of the
``O_DIRECT`` ceiling. The state of memory moves the buffered figures a lot
between runs (see docs/PERFORMANCE.md): compare within a run.

Usage: python bench/experiments/cache_writes.py [--blocks 256] [--rounds 3] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from axonfs.backends.cache import BlockCache  # noqa: E402
from axonfs.backends.direct import O_DIRECT  # noqa: E402

MiB = 1 << 20


def timed(write: Callable[[], None]) -> float:
    start = time.perf_counter()
    write()
    return time.perf_counter() - start


def cache_puts(cache: BlockCache, sha: str, blocks: int, data: bytes) -> None:
    for index in range(blocks):
        cache.put(sha, index, blocks * len(data), data)


def one_file(path: Path, flags: int, source: bytes | mmap.mmap, blocks: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o644)
    try:
        for index in range(blocks):
            os.pwrite(fd, source, index * len(source))
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=256)
    parser.add_argument("--block-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=os.environ.get("TMPDIR", "/var/tmp"))
    args = parser.parse_args()
    block = args.block_kib << 10
    data = os.urandom(block)
    aligned = mmap.mmap(-1, block)
    aligned[:] = data
    work = Path(tempfile.mkdtemp(prefix="cache-writes-", dir=args.dir))
    try:
        for number in range(args.rounds):
            root = work / str(number)
            root.mkdir()
            sha = hashlib.sha256(b"round %d" % number).hexdigest()
            size = args.blocks * block
            cache = BlockCache(root / "cache", capacity=4 * size, block_size=block)
            n = args.blocks
            figures = {"BlockCache.put": timed(partial(cache_puts, cache, sha, n, data))}
            figures["buffered, one file"] = timed(partial(one_file, root / "b", 0, data, n))
            os.unlink(root / "b")  # its pages are free again, and fast to reuse
            figures["buffered, pages just freed"] = timed(
                partial(one_file, root / "again", 0, data, n)
            )
            if O_DIRECT:
                figures["O_DIRECT, one file"] = timed(
                    partial(one_file, root / "direct", O_DIRECT, aligned, n)
                )
            print(f"round {number}:")
            for label, secs in figures.items():
                rate = args.blocks * block / MiB / secs
                print(f"  {label:28s} {secs / args.blocks * 1e3:6.2f} ms/block {rate:8.0f} MiB/s")
            if O_DIRECT:
                ratio = figures["O_DIRECT, one file"] / figures["BlockCache.put"]
                print(f"  BlockCache.put / O_DIRECT ceiling: {ratio:.2f}x")
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
