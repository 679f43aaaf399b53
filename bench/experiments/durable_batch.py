"""Native: cost of making a batch of 4 KiB files durable, several ways (same run, interleaved)."""

import ctypes
import ctypes.util
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

import lmdb

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
B = int(sys.argv[1]) if len(sys.argv) > 1 else 100
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
work = tempfile.mkdtemp(prefix="durable-")
rnd = random.Random(0)
env = lmdb.open(os.path.join(work, "db"), map_size=1 << 30, sync=True, metasync=True)
flat = os.path.join(work, "flat")
os.mkdir(flat)
nest = os.path.join(work, "nest")
os.mkdir(nest)
tmp = os.path.join(work, "tmp")
os.mkdir(tmp)
dfd = os.open(work, os.O_RDONLY)


def files(batch: list[bytes], dirn: str, sync: str | None, nested: bool = False) -> None:
    for data in batch:
        h = hashlib.sha256(data).hexdigest()
        p = os.path.join(tmp, "spool-" + h)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        if sync == "fsync":
            os.fsync(fd)
        os.close(fd)
        if nested:
            d = os.path.join(dirn, h[:2], h[2:4])
            os.makedirs(d, exist_ok=True)
            os.rename(p, os.path.join(d, h))
        else:
            os.rename(p, os.path.join(dirn, h))
    if sync == "syncfs":
        libc.syncfs(dfd)
    elif sync == "fsync":
        dir_fd = os.open(dirn, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)


def in_lmdb(batch: list[bytes]) -> None:
    with env.begin(write=True) as txn:
        for data in batch:
            txn.put(hashlib.sha256(data).digest(), data)


res: dict[str, list[float]] = {
    k: []
    for k in (
        "files flat + syncfs",
        "files 2-level dirs + syncfs",
        "files flat + fsync each + dir fsync",
        "files flat, no sync",
        "LMDB values, one synced txn",
    )
}
for _ in range(reps):
    for k in res:
        batch = [rnd.randbytes(4096) for _ in range(B)]
        t0 = time.perf_counter()
        if k == "files flat + syncfs":
            files(batch, flat, "syncfs")
        elif k == "files 2-level dirs + syncfs":
            files(batch, nest, "syncfs", nested=True)
        elif k == "files flat + fsync each + dir fsync":
            files(batch, flat, "fsync")
        elif k == "files flat, no sync":
            files(batch, flat, None)
        else:
            in_lmdb(batch)
        res[k].append(time.perf_counter() - t0)
print(f"batch of {B} x 4 KiB, median of {reps} (interleaved):")
for k, v in res.items():
    m = statistics.median(v)
    print(f"  {k:40s} {m * 1e3:8.2f} ms/batch  {B / m:9,.0f} files/s")
shutil.rmtree(work)
