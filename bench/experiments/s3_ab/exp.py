"""Experiments: first read, sequential put; A/B alternating with plain boto3."""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, os.getcwd())  # the code tree under test
os.environ.update(
    json.loads((Path(os.environ.get("AB_DIR", "/tmp/s3ab")) / "env.json").read_text())
)

from axonfs.axon import Axon  # noqa: E402
from axonfs.backends.s3 import S3Backend, S3Config  # noqa: E402
from axonfs.hashing import Sha256  # noqa: E402

MiB = 1 << 20


def raw_get(be: S3Backend, key: str, total: int) -> float:
    t0 = time.perf_counter()
    body = be.client.get_object(Bucket=be.config.bucket, Key=key)["Body"]
    got = 0
    while piece := body.read(MiB):
        got += len(piece)
    assert got == total
    return total / MiB / (time.perf_counter() - t0)


def raw_ranged(be: S3Backend, key: str, total: int, piece: int = 8 * MiB) -> float:
    got = 0
    t0 = time.perf_counter()
    for start in range(0, total, piece):
        body = be.client.get_object(
            Bucket=be.config.bucket, Key=key, Range=f"bytes={start}-{start + piece - 1}"
        )["Body"]
        got += len(body.read())
    return got / MiB / (time.perf_counter() - t0)


def raw_puts(be: S3Backend, blobs: list[bytes]) -> float:
    t0 = time.perf_counter()
    for i, data in enumerate(blobs):
        be.client.put_object(Bucket=be.config.bucket, Key=f"raw/{i}", Body=data)
    return len(blobs) / (time.perf_counter() - t0)


async def main(a: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="exp-", dir=os.environ.get("AB_DIR", "/tmp/s3ab")))
    be = S3Backend(
        S3Config(
            bucket=f"exp-{os.getpid()}",
            endpoint_url=os.environ["S3_ENDPOINT"],
            cache_size=2 << 30,
            **json.loads(os.environ.get("S3CFG", "{}")),
        ),
        cache_dir=work / "cache",
    )
    res: dict[str, list[float]] = {
        "axon_read": [],
        "raw_get": [],
        "raw_ranged": [],
        "axon_put": [],
        "raw_put": [],
    }
    async with Axon.open(work / "store", backend=be) as axon:
        if a.read:
            data = os.urandom(a.mib * MiB)
            async with await axon.upload() as up:
                for i in range(0, len(data), 8 * MiB):
                    await up.write(data[i : i + 8 * MiB])
                size, sha = await up.save()
            del data
            key = be.key_of(Sha256(sha))
            for _ in range(a.runs):
                be.cache.discard(sha.hex())
                if os.environ.get("RAWFIRST"):
                    res.setdefault("raw_get_before", []).append(
                        await trio.to_thread.run_sync(raw_get, be, key, size)
                    )
                t0 = time.perf_counter()
                got = 0
                async for piece in axon.get(sha):
                    got += len(piece)
                res["axon_read"].append(size / MiB / (time.perf_counter() - t0))
                res["raw_get"].append(await trio.to_thread.run_sync(raw_get, be, key, size))
                res["raw_ranged"].append(await trio.to_thread.run_sync(raw_ranged, be, key, size))
        if a.put:
            for _ in range(a.runs):
                blobs = [random.randbytes(4096) for _ in range(a.puts)]
                t0 = time.perf_counter()
                for b in blobs:
                    await axon.put(b)
                res["axon_put"].append(a.puts / (time.perf_counter() - t0))
                blobs = [random.randbytes(4096) for _ in range(a.puts)]
                res["raw_put"].append(await trio.to_thread.run_sync(raw_puts, be, blobs))
    shutil.rmtree(work, ignore_errors=True)
    for k, v in res.items():
        if v:
            runs = " ".join(f"{x:.0f}" for x in v)
            print(f"{k:12s} med {statistics.median(v):8.1f}  runs {runs}")
    if res["axon_read"]:
        rs = [x / y for x, y in zip(res["axon_read"], res["raw_get"], strict=True)]
        rr = [x / y for x, y in zip(res["axon_read"], res["raw_ranged"], strict=True)]
        print(
            "read/get ratios",
            " ".join(f"{x:.2f}" for x in rs),
            "med",
            f"{statistics.median(rs):.2f}",
        )
        print(
            "read/ranged ratios",
            " ".join(f"{x:.2f}" for x in rr),
            "med",
            f"{statistics.median(rr):.2f}",
        )
    if res["axon_put"]:
        rs = [x / y for x, y in zip(res["axon_put"], res["raw_put"], strict=True)]
        print("put ratios", " ".join(f"{x:.2f}" for x in rs), "med", f"{statistics.median(rs):.2f}")


p = argparse.ArgumentParser()
p.add_argument("--read", action="store_true")
p.add_argument("--put", action="store_true")
p.add_argument("--mib", type=int, default=256)
p.add_argument("--runs", type=int, default=3)
p.add_argument("--puts", type=int, default=300)
trio.run(main, p.parse_args())
