"""Time BlockCache.put inside a read of the object `big` of bucket `rawread` (rawread.py).

Environment: AB_DIR, RUNS (3), CACHE (cache bytes), RA (readahead blocks).
"""

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import trio

sys.path.insert(0, os.getcwd())
os.environ.update(
    json.loads((Path(os.environ.get("AB_DIR", "/tmp/s3ab")) / "env.json").read_text())
)
from axonfs.backends import cache as cachemod  # noqa: E402
from axonfs.backends.readahead import BlockReader  # noqa: E402
from axonfs.backends.s3 import S3Backend, S3Config  # noqa: E402

MiB = 1 << 20
T = {"put": 0.0, "readcall": 0.0}
orig_put = cachemod.BlockCache.put


def put(self: cachemod.BlockCache, sha_hex: str, index: int, blob_size: int, data: bytes) -> None:
    t = time.perf_counter()
    orig_put(self, sha_hex, index, blob_size, data)
    T["put"] += time.perf_counter() - t


async def main() -> None:
    work = Path(tempfile.mkdtemp(dir=os.environ.get("AB_DIR", "/tmp/s3ab")))
    be = S3Backend(
        S3Config(
            bucket="rawread",
            endpoint_url=os.environ["S3_ENDPOINT"],
            cache_size=int(os.environ.get("CACHE", 2 << 30)),
            readahead_blocks=int(os.environ.get("RA", 16)),
        ),
        cache_dir=work / "c",
    )
    # read the 'big' object of rawread via the backend directly, as Axon.get does
    # (4 MiB pieces, thread per piece)
    size = be.client.head_object(Bucket="rawread", Key="big")["ContentLength"]
    for _ in range(int(os.environ.get("RUNS", 3))):
        be.cache.discard("big")
        T["put"] = 0
        T["readcall"] = 0
        reader = BlockReader(be.fetcher, "big", size)
        t0 = time.perf_counter()
        off = 0
        wait = 0.0
        while off < size:
            a = time.perf_counter()
            piece = await trio.to_thread.run_sync(reader.read, off, 4 * MiB)
            wait += time.perf_counter() - a
            off += len(piece)
        tot = time.perf_counter() - t0
        t1 = time.perf_counter()
        body = be.client.get_object(Bucket="rawread", Key="big")["Body"]
        while body.read(MiB):
            pass
        raw = time.perf_counter() - t1
        print(
            f"axon {size / MiB / tot:.0f} MiB/s  raw {size / MiB / raw:.0f} MiB/s "
            f"ratio {raw / tot:.2f}  "
            f"cache.put total {T['put']:.3f}s of {tot:.3f}s  reader wait {wait:.3f}  "
            f"gets {be.stats().requests}"
        )
    be.close()
    shutil.rmtree(work)


with mock.patch.object(cachemod.BlockCache, "put", put):
    trio.run(main)
