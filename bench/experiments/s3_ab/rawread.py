"""Plain boto3: whole GET vs ranged GETs sequential vs parallel spans, alternating.

Usage: python rawread.py MIB RUNS (writes MIB MiB as the object `big` of bucket `rawread`)
"""

import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

os.environ.update(
    json.loads((Path(os.environ.get("AB_DIR", "/tmp/s3ab")) / "env.json").read_text())
)
import boto3  # noqa: E402
import botocore.config  # noqa: E402

MiB = 1 << 20
c = boto3.session.Session(region_name="us-east-1").client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    config=botocore.config.Config(
        max_pool_connections=16,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
        s3={"addressing_style": "path"},
    ),
)
B = "rawread"
K = "big"
N = int(sys.argv[1]) * MiB
try:
    c.create_bucket(Bucket=B)
except Exception as e:
    print(e)
c.upload_fileobj(io.BytesIO(os.urandom(N)), B, K)


def whole() -> float:
    t0 = time.perf_counter()
    body = c.get_object(Bucket=B, Key=K)["Body"]
    got = 0
    while p := body.read(MiB):
        got += len(p)
    return N / MiB / (time.perf_counter() - t0)


def get(start: int, size: int, piece: int = MiB) -> int:
    body = c.get_object(Bucket=B, Key=K, Range=f"bytes={start}-{start + size - 1}")["Body"]
    got = 0
    while p := body.read(piece):
        got += len(p)
    return got


def ranged(span: int, par: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(par) as pool:
        got = sum(pool.map(lambda s: get(s, span), range(0, N, span)))
    assert got == N
    return N / MiB / (time.perf_counter() - t0)


cases: dict[str, Callable[[], float]] = {"whole": whole}
for span in (4, 8, 16):
    for par in (1, 2, 4):
        cases[f"span{span}x{par}"] = partial(ranged, span * MiB, par)
res: dict[str, list[float]] = {k: [] for k in cases}
for _ in range(int(sys.argv[2])):
    for k, f in cases.items():
        res[k].append(f())
for k, v in res.items():
    print(f"{k:12s} {statistics.median(v):7.0f}  {' '.join(f'{x:.0f}' for x in v)}")
