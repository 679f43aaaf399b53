"""recover of a bucket against plain parallel listings: python rec.py BUCKET RUNS COUNT."""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, os.getcwd())
os.environ.update(
    json.loads((Path(os.environ.get("AB_DIR", "/tmp/s3ab")) / "env.json").read_text())
)
from axonfs.axon import Axon  # noqa: E402
from axonfs.backends.s3 import KeyRange, S3Backend, S3Config  # noqa: E402

BUCKET = sys.argv[1]
RUNS = int(sys.argv[2])
COUNT = int(sys.argv[3])


def stock_client(be: S3Backend) -> Any:
    import boto3

    return boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=os.environ["S3_ENDPOINT"], config=be.client.meta.config
    )


def plain_parallel(be: S3Backend, c: Any) -> tuple[float, int]:
    def one(rng: KeyRange) -> int:
        start_after, stop_at = rng
        args: dict[str, Any] = {"Bucket": BUCKET, "MaxKeys": 1000}
        if start_after is not None:
            args["StartAfter"] = start_after
        n = 0
        while True:
            r = c.list_objects_v2(**args)
            for item in r.get("Contents", []):
                if stop_at is not None and item["Key"] >= stop_at:
                    return n
                n += 1
            if not r.get("IsTruncated"):
                return n
            args["ContinuationToken"] = r["NextContinuationToken"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(be.config.max_connections) as pool:
        n = sum(pool.map(one, be._ranges()))
    return n / (time.perf_counter() - t0), n


async def main() -> None:
    res: dict[str, list[float]] = {"recover": [], "plain_par": [], "plain_stock": []}
    for r in range(RUNS):
        work = Path(tempfile.mkdtemp(dir=os.environ.get("AB_DIR", "/tmp/s3ab")))
        be = S3Backend(
            S3Config(bucket=BUCKET, endpoint_url=os.environ["S3_ENDPOINT"]), cache_dir=work / "c"
        )
        async with Axon.open(work / "store", backend=be) as axon:
            t0 = time.perf_counter()
            rep = await axon.recover(verify=False)
            res["recover"].append(COUNT / (time.perf_counter() - t0))
            assert rep.added == COUNT, rep
            rate, n = await trio.to_thread.run_sync(plain_parallel, be, be.client)
            assert n == COUNT
            res["plain_par"].append(rate)
            rate, n = await trio.to_thread.run_sync(plain_parallel, be, stock_client(be))
            res["plain_stock"].append(rate)
        shutil.rmtree(work)
        print(r, res["recover"][-1], res["plain_par"][-1], res["plain_stock"][-1], flush=True)
    rs = [a / b for a, b in zip(res["recover"], res["plain_par"], strict=True)]
    for k, v in res.items():
        print(f"{k:10s} {statistics.median(v):7.0f}  {' '.join(f'{x:.0f}' for x in v)}")
    print(
        "ratios vs same client",
        " ".join(f"{x:.2f}" for x in rs),
        "med",
        f"{statistics.median(rs):.2f}",
    )
    rs = [a / b for a, b in zip(res["recover"], res["plain_stock"], strict=True)]
    print(
        "ratios vs stock client",
        " ".join(f"{x:.2f}" for x in rs),
        "med",
        f"{statistics.median(rs):.2f}",
    )


trio.run(main)
