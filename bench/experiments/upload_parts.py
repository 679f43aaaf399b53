"""Native costs of writing 1 GiB in 8 MiB pieces: sha256, write, fsync, and write || hash.

Writes under /tmp/perf2/x (made if missing). Argument: MiB to write (default 1024).
"""

import ctypes
import ctypes.util
import hashlib
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
rnd = random.Random(0)
base = bytearray(rnd.randbytes(8 * MiB))
chunks: list[bytes] = []
for i in range(N // 8):
    base[0:16] = i.to_bytes(16, "big")
    chunks.append(bytes(base))
d = "/tmp/perf2/x"
os.makedirs(d, exist_ok=True)


def t(label: str, fn: Callable[[], None]) -> None:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{label:45s} {N / dt:8.0f} MiB/s  {dt:.3f}s", flush=True)


def sha() -> None:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)


def write(
    path: str, fsync: bool = False, hash_: bool = False, unlink: bool = True
) -> Callable[[], None]:
    def f() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        h = hashlib.sha256()
        for c in chunks:
            os.write(fd, c)
            if hash_:
                h.update(c)
        if fsync:
            os.fsync(fd)
        os.close(fd)

    return f


for rep in range(0):
    t("sha256", sha)
    t("write new file (page cache only)", write(f"{d}/a{rep}"))
    t("write + fsync", write(f"{d}/b{rep}", fsync=True))
    t("write + sha256 (no fsync)", write(f"{d}/c{rep}", hash_=True))
    t("write + sha256 + fsync", write(f"{d}/e{rep}", fsync=True, hash_=True))
    for f in os.listdir(d):
        os.unlink(f"{d}/{f}")
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
ex = ThreadPoolExecutor(2)


def overlapped(path: str, fsync: bool = True, sfr: bool = False) -> Callable[[], None]:
    def f() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        h = hashlib.sha256()
        off = 0
        for c in chunks:
            a = ex.submit(os.write, fd, c)
            b = ex.submit(h.update, c)
            a.result()
            b.result()
            if sfr:
                libc.sync_file_range(fd, ctypes.c_longlong(off), ctypes.c_longlong(len(c)), 2)
            off += len(c)
        if fsync:
            os.fsync(fd)
        os.close(fd)

    return f


print("-- overlapped")
for rep in range(3):
    t("sha256", sha)
    t("write + sha256 + fsync (serial)", write(f"{d}/e{rep}", fsync=True, hash_=True))
    t("write || sha256, fsync", overlapped(f"{d}/o{rep}"))
    t("write || sha256, sync_file_range, fsync", overlapped(f"{d}/s{rep}", sfr=True))
    for f in os.listdir(d):
        os.unlink(f"{d}/{f}")
