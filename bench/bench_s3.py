#!/usr/bin/env python3
"""S3 backend benchmark: the S3 backend against the local backend, same run.

Starts a moto S3 server (or, with ``--server rgw``, a one-node Ceph RGW:
``tests/helpers/rgw.py``) on 127.0.0.1 (``tests/helpers/s3server.py``; a
separate process) and, in this process, opens ``axonfs.axon.Axon`` stores on
the local backend and on the S3 backend in turn, measuring per run:

=====================  ==============================================================
figure                 what is timed
=====================  ==============================================================
ingest                 ``Axon.upload()`` of ``--big-mib`` MiB in ``--chunk-mib`` MiB
                       writes + ``save()`` (S3: spool + hash locally, multipart at save)
first read             ``Axon.get(sha)`` whole, right after the ingest (S3: read cache
                       empty, every block from the server; local: page cache warm)
second read            the same again (S3: from the local read cache)
small put / puts       ``--small-count`` new 4 KiB blobs: ``put()`` one by one, then
                       ``puts()`` in batches of ``--batch``
4 KiB random read      ``Axon.get(sha, offs, 4096)`` at a random offset in each of
                       ``--range-reads`` distinct 1 MiB blocks of a fresh
                       ``--range-blob-mib`` MiB blob, random order (all cold)
recover                ``Axon.recover(verify=False)`` on a fresh, empty index over
                       ``--recover-count`` objects (objects/s); then again (all skipped)
=====================  ==============================================================

Beside the S3 figures, "ceilings" from plain boto3 calls on the backend's
client in the same run (per-run ratios are printed too): the big blob's bytes as
one multipart upload from memory (the backend's part size and parallelism), one whole GET of the
big object, sequential 8 MiB ranged GETs over its first
``--ceiling-ranged-mib`` MiB, sequential 4 KiB PUTs (alone, in blocks of
:data:`PUT_BLOCK` alternating with axonfs's sequential puts; then each followed
by two and by three ``fdatasync`` of a small file on the store's disk: the
floor of a put whose LMDB index commit is synced, and of today's commit with
its synced intent record), sequential 4 KiB ranged GETs of the random-read blob, and the
listing of the recover bucket (keys/s): in parallel over the backend's 16 key
ranges, with a stock boto3 client of the backend's settings and with the
backend's own client (which keeps timestamps as text), then one sequential
paginated listing.

S3 requests are counted from ``S3Backend.stats()`` (every retry included):
per blob ingested (big and small) and per 4 KiB random read.

The recover objects are created once, before any timing: directly in their
own bucket with boto3 (``--create-threads`` in parallel; key = sha256 of the
tiny body), and for the local backend as files in a blob directory shared by
the runs (each run opens a fresh store on it). ``--recover-count`` defaults to
100,000.

moto caveats (this measures moto as much as axonfs): moto is one Python process
on the same 2 CPUs; a ranged GET costs time proportional to the *object's*
size (moto materialises the whole object), so a 4 KiB read of a 64 MiB object
costs far more than on a real server; and its listing re-sorts every key of the
bucket for each page. Treat S3 times as a lower bound of what a real server
gives; request counts do not depend on the server.

Usage::

    python bench/bench_s3.py --runs 2 --json s3.json
    python bench/bench_s3.py --big-mib 128 --recover-count 10000      # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # as pytest sees it

from bench_store import (  # noqa: E402
    big_chunks,
    log,
    machine_info,
    machine_load,
    print_columns,
    small_blobs,
    timed_get,
)
from helpers.rgw import RgwCluster  # noqa: E402
from helpers.s3server import TEST_ENV, MotoServer, RgwServer  # noqa: E402

from axonfs.axon import Axon  # noqa: E402
from axonfs.backends.base import BlobBackend  # noqa: E402
from axonfs.backends.local import LocalBackend  # noqa: E402
from axonfs.backends.s3 import S3Backend, S3Config, S3Stats  # noqa: E402
from axonfs.hashing import Sha256  # noqa: E402

MiB = 1 << 20
BACKENDS = ("local", "s3")
PUT_BLOCK = 100
"""Sequential puts per block: axonfs's and plain put_objects alternate by blocks."""


def requests_of(backend: BlobBackend) -> dict[str, int]:
    """The backend's requests so far by operation ({} for one without counters)."""
    counters = backend.stats()
    return dict(counters.requests) if isinstance(counters, S3Stats) else {}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in out.items() if v}


def s3_config(args: argparse.Namespace, endpoint: str, bucket: str) -> S3Config:
    return S3Config(
        bucket=bucket,
        endpoint_url=endpoint,
        cache_size=args.cache_size,
        part_size=args.part_size * MiB,
    )


# -- one backend, one run ----------------------------------------------------------------


async def run_backend(
    args: argparse.Namespace,
    kind: str,
    run_no: int,
    workdir: Path,
    endpoint: str,
    chunks: list[bytes],
    expected: bytes,
    range_chunks: list[bytes],
) -> dict[str, Any]:
    res: dict[str, Any] = {"load_at_start": machine_load()}
    store_dir = workdir / f"{kind}-{run_no}"
    backend = None
    if kind == "s3":
        backend = S3Backend(
            s3_config(args, endpoint, f"bench-{run_no}-{os.getpid()}"),
            cache_dir=store_dir / "cache",
        )
    total = sum(len(c) for c in chunks)
    async with Axon.open(
        store_dir, backend=backend, sync_interval=args.sync_interval / 1000
    ) as axon:
        be = axon.backend
        # ---------------------------------------------------------------- ingest
        log(f"[run {run_no} {kind}] ingest {total // MiB} MiB")
        gc.collect()
        r0 = requests_of(be)
        t0 = time.perf_counter()
        async with await axon.upload() as up:
            for piece in chunks:
                await up.write(piece)
            t1 = time.perf_counter()
            size, sha = await up.save()
        t2 = time.perf_counter()
        assert size == total and sha == expected
        res["ingest_MiBps"] = total / MiB / (t2 - t0)
        res["ingest_write_phase_s"] = t1 - t0
        res["ingest_save_phase_s"] = t2 - t1
        res["ingest_requests"] = delta(requests_of(be), r0)

        # ---------------------------------------------------------------- reads
        for label in ("first", "second"):
            log(f"[run {run_no} {kind}] {label} read")
            r0 = requests_of(be)
            secs = await timed_get(axon, sha, total)
            res[f"read_{label}_MiBps"] = total / MiB / secs
            res[f"read_{label}_requests"] = delta(requests_of(be), r0)
        if isinstance(be, S3Backend):
            res["ingest_ceiling"] = await trio.to_thread.run_sync(
                raw_multipart, be, f"raw/ingest-{run_no}", chunks
            )
            res["read_first_ceiling"] = await trio.to_thread.run_sync(
                raw_get, be, be.key_of(Sha256(sha)), total
            )
            res["read_ranged_ceiling"] = await trio.to_thread.run_sync(
                raw_ranged_read, be, be.key_of(Sha256(sha)), total, args.ceiling_ranged_mib * MiB
            )

        # ---------------------------------------------------------------- small files
        n = args.small_count
        seq = small_blobs(n, args.small_size, 1000 + run_no)
        bat = small_blobs(n, args.small_size, 3000 + run_no)
        log(f"[run {run_no} {kind}] put() x {n}")
        r0 = requests_of(be)
        raw = small_blobs(n, args.small_size, 5000 + run_no) if kind == "s3" else []
        ours_s = raw_s = 0.0
        # On S3, axonfs's puts and plain put_objects go in alternating blocks:
        # a server that warms up or slows down during the run weighs on both.
        for i in range(0, n, PUT_BLOCK):
            t0 = time.perf_counter()
            for data in seq[i : i + PUT_BLOCK]:
                await axon.put(data)
            ours_s += time.perf_counter() - t0
            if raw:
                block = raw[i : i + PUT_BLOCK]
                rate = await trio.to_thread.run_sync(raw_puts, be, block, None, 0, i)
                raw_s += len(block) / rate
        res["put_files_per_s"] = n / ours_s
        res["put_requests"] = delta(requests_of(be), r0)
        if raw:
            res["put_ceiling"] = n / raw_s
        log(f"[run {run_no} {kind}] puts() x {n} in batches of {args.batch}")
        r0 = requests_of(be)
        t0 = time.perf_counter()
        for i in range(0, n, args.batch):
            await axon.puts(bat[i : i + args.batch])
        res["puts_files_per_s"] = n / (time.perf_counter() - t0)
        res["puts_requests"] = delta(requests_of(be), r0)
        if kind == "s3":
            res["put_synced_2"] = await trio.to_thread.run_sync(
                raw_puts,
                be,
                small_blobs(min(n, 300), args.small_size, 6000 + run_no),
                store_dir,
                2,
                n,
            )
            res["put_synced_3"] = await trio.to_thread.run_sync(
                raw_puts,
                be,
                small_blobs(min(n, 300), args.small_size, 7000 + run_no),
                store_dir,
                3,
                n + 300,
            )

        # ---------------------------------------------------------------- random reads
        if args.range_reads:
            async with await axon.upload() as up:
                for piece in range_chunks:
                    await up.write(piece)
                rsize, rsha = await up.save()
            # one read in each of k distinct 1 MiB blocks (the S3 cache's unit), in random
            # order, so that every read is a cold one
            rr = random.Random(11 + run_no)
            blocks = rr.sample(range(rsize // MiB), min(args.range_reads, rsize // MiB))
            offsets = [b * MiB + rr.randrange(0, MiB - 4096) for b in blocks]
            k = len(offsets)
            log(
                f"[run {run_no} {kind}] {k} random 4 KiB reads of a "
                f"{rsize // MiB} MiB blob, each in another 1 MiB block"
            )
            b0 = be.stats().bytes_received if isinstance(be, S3Backend) else 0
            r0 = requests_of(be)
            got = 0
            t0 = time.perf_counter()
            for offs in offsets:
                async for piece in axon.get(rsha, offs, 4096):
                    got += len(piece)
            res["range_ops"] = k / (time.perf_counter() - t0)
            assert got == k * 4096
            res["range_requests"] = delta(requests_of(be), r0)
            if isinstance(be, S3Backend):
                res["range_bytes_per_read"] = (be.stats().bytes_received - b0) / k
            if isinstance(be, S3Backend):
                res["range_ceiling"] = await trio.to_thread.run_sync(
                    raw_ranges, be, be.key_of(Sha256(rsha)), offsets[: max(10, k // 4)]
                )
        if isinstance(be, S3Backend):
            st = be.stats()
            res["s3_total"] = {
                "requests": st.requests,
                "retries": st.retries,
                "failures": st.failures,
                "bytes_sent": st.bytes_sent,
                "bytes_received": st.bytes_received,
                "cache": dataclasses.asdict(st.cache),
            }
    res["load_at_end"] = machine_load()
    return res


# -- ceilings: plain boto3 calls on the backend's own client (not counted) ------------------


def raw_multipart(be: Any, key: str, chunks: list[bytes]) -> float:
    """The same bytes from memory as one multipart upload, the backend's part size and
    parallelism: MiB/s. What a client that knows the object's name beforehand pays;
    axonfs learns the name (the sha256) only once every byte has been written."""
    data = b"".join(chunks)
    part = be.config.part_size
    bucket = be.config.bucket
    t0 = time.perf_counter()
    upload_id = be.client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def send(number: int) -> dict[str, Any]:
        body = data[(number - 1) * part : number * part]
        reply = be.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": reply["ETag"]}

    count = -(-len(data) // part)
    with ThreadPoolExecutor(be.config.upload_parallelism) as pool:
        parts = list(pool.map(send, range(1, count + 1)))
    be.client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    secs = time.perf_counter() - t0
    be.client.delete_object(Bucket=bucket, Key=key)
    return len(data) / MiB / secs


def raw_get(be: Any, key: str, total: int) -> float:
    """One whole GET, read in 1 MiB pieces: MiB/s."""
    t0 = time.perf_counter()
    body = be.client.get_object(Bucket=be.config.bucket, Key=key)["Body"]
    got = 0
    while piece := body.read(MiB):
        got += len(piece)
    assert got == total
    return total / MiB / (time.perf_counter() - t0)


def raw_ranged_read(be: Any, key: str, total: int, upto: int, piece: int = 8 * MiB) -> float:
    """Sequential ranged GETs of 8 MiB (roughly the backend's readahead) over the first
    *upto* bytes: MiB/s. On moto each costs time proportional to the object's size."""
    got = 0
    t0 = time.perf_counter()
    for start in range(0, min(upto, total), piece):
        body = be.client.get_object(
            Bucket=be.config.bucket, Key=key, Range=f"bytes={start}-{start + piece - 1}"
        )["Body"]
        got += len(body.read())
    return got / MiB / (time.perf_counter() - t0)


def raw_puts(
    be: Any, blobs: list[bytes], sync_dir: Path | None = None, syncs: int = 0, first: int = 0
) -> float:
    """Sequential put_object of small bodies (no Content-MD5): objects/s.

    With *syncs*, each PUT is followed by that many fdatasyncs of a small
    file in *sync_dir* (on the store's disk): the floor of a durable put,
    whose index row is committed after the PUT by a synced LMDB commit (2:
    data pages, then the meta page), and today's commit, which also syncs a
    commit-intent record first (3).
    """
    fd = os.open(sync_dir / "sync-floor", os.O_RDWR | os.O_CREAT, 0o600) if sync_dir else -1
    t0 = time.perf_counter()
    try:
        for i, data in enumerate(blobs):
            be.client.put_object(Bucket=be.config.bucket, Key=f"raw/{first + i}", Body=data)
            for _ in range(syncs):
                os.pwrite(fd, data[:128], 0)
                os.fdatasync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    return len(blobs) / (time.perf_counter() - t0)


def raw_ranges(be: Any, key: str, offsets: list[int]) -> float:
    """Sequential 4 KiB ranged GETs: ops/s."""
    t0 = time.perf_counter()
    for offs in offsets:
        be.client.get_object(Bucket=be.config.bucket, Key=key, Range=f"bytes={offs}-{offs + 4095}")[
            "Body"
        ].read()
    return len(offsets) / (time.perf_counter() - t0)


async def run_recover(
    args: argparse.Namespace,
    kind: str,
    run_no: int,
    workdir: Path,
    endpoint: str,
    local_blobs: Path,
    bucket: str,
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    store_dir = workdir / f"recover-{kind}-{run_no}"
    if kind == "s3":
        backend: Any = S3Backend(s3_config(args, endpoint, bucket), cache_dir=store_dir / "cache")
    else:
        backend = LocalBackend(local_blobs)
    async with Axon.open(store_dir, backend=backend) as axon:
        log(f"[run {run_no} {kind}] recover of {args.recover_count} objects")
        r0 = requests_of(backend)
        t0 = time.perf_counter()
        report = await axon.recover(verify=False)
        secs = time.perf_counter() - t0
        assert report.added == args.recover_count, report
        res["recover_objects_per_s"] = args.recover_count / secs
        res["recover_s"] = secs
        res["recover_requests"] = delta(requests_of(backend), r0)
        t0 = time.perf_counter()
        report = await axon.recover(verify=False)
        secs = time.perf_counter() - t0
        assert report.skipped == args.recover_count, report
        res["recover_again_objects_per_s"] = args.recover_count / secs
        if kind == "s3":
            # Plain parallel listings of the same bucket, right after: with a
            # stock boto3 client of the same settings, then the backend's own.
            client = stock_client(backend, endpoint)
            secs, n = await trio.to_thread.run_sync(raw_list_parallel, backend, client)
            client.close()
            assert n == args.recover_count, n
            res["list_parallel_stock"] = n / secs
            secs, n = await trio.to_thread.run_sync(raw_list_parallel, backend, backend.client)
            res["list_parallel_same"] = n / secs
    return res


# -- preparing recover objects ------------------------------------------------------------


def recover_bodies(count: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        body = b"recover-%d" % i
        out.append((hashlib.sha256(body).hexdigest(), body))
    return out


def create_s3_objects(
    endpoint: str, bucket: str, items: list[tuple[str, bytes]], threads: int
) -> float:
    import boto3
    import botocore.config

    client = boto3.session.Session(region_name="us-east-1").client(
        "s3",
        endpoint_url=endpoint,
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            max_pool_connections=threads,
            request_checksum_calculation="when_required",
        ),
    )
    client.create_bucket(Bucket=bucket)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(
            lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items, chunksize=64
        ):
            pass
    secs = time.perf_counter() - t0
    client.close()
    return secs


def raw_list(endpoint: str, bucket: str) -> tuple[float, int]:
    """One sequential paginated listing with plain boto3: the naive way."""
    import boto3
    import botocore.config

    client = boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=endpoint, config=botocore.config.Config(s3={"addressing_style": "path"})
    )
    n = 0
    t0 = time.perf_counter()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        n += len(page.get("Contents", []))
    secs = time.perf_counter() - t0
    client.close()
    return secs, n


def raw_list_parallel(be: Any, client: Any) -> tuple[float, int]:
    """A plain parallel listing: list_objects_v2 pages of the backend's 16 key
    ranges (by first hex digit), one thread per connection, counting keys."""

    def one(key_range: tuple[str | None, str | None]) -> int:
        start_after, stop_at = key_range
        args: dict[str, Any] = {"Bucket": be.config.bucket, "MaxKeys": 1000}
        if start_after is not None:
            args["StartAfter"] = start_after
        n = 0
        while True:
            page = client.list_objects_v2(**args)
            for item in page.get("Contents", []):
                if stop_at is not None and item["Key"] >= stop_at:
                    return n
                n += 1
            if not page.get("IsTruncated"):
                return n
            args["ContinuationToken"] = page["NextContinuationToken"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(be.config.max_connections) as pool:
        n = sum(pool.map(one, be._ranges()))
    return time.perf_counter() - t0, n


def stock_client(be: Any, endpoint: str) -> Any:
    """A plain boto3 client with the backend's botocore settings (its Config),
    but boto3's own response parsing."""
    import boto3

    return boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=endpoint, config=be.client.meta.config
    )


def create_local_files(root: Path, items: list[tuple[str, bytes]]) -> float:
    t0 = time.perf_counter()
    for hexd, body in items:
        d = root / hexd[:2]
        d.mkdir(parents=True, exist_ok=True)
        (d / hexd).write_bytes(body)
    return time.perf_counter() - t0


# -- reporting ----------------------------------------------------------------------------

ROWS = [
    # label, key, unit, ceiling key (plain boto3, same run)
    ("ingest 1 blob (upload 8 MiB writes + save)", "ingest_MiBps", "MiB/s", "ingest_ceiling"),
    ("  save phase (S3: multipart upload)", "ingest_save_phase_s", "s", None),
    ("first read, whole", "read_first_MiBps", "MiB/s", "read_first_ceiling"),
    ("  vs 8 MiB ranged GETs", "read_first_MiBps", "MiB/s", "read_ranged_ceiling"),
    ("second read, whole (S3: read cache)", "read_second_MiBps", "MiB/s", None),
    ("small put() 4 KiB, sequential", "put_files_per_s", "files/s", "put_ceiling"),
    ("  vs put_object + 2 fdatasyncs", "put_files_per_s", "files/s", "put_synced_2"),
    ("  vs put_object + 3 fdatasyncs", "put_files_per_s", "files/s", "put_synced_3"),
    ("small puts() 4 KiB, batched", "puts_files_per_s", "files/s", None),
    ("random 4 KiB read (cold block)", "range_ops", "ops/s", "range_ceiling"),
    ("recover (fresh index)", "recover_objects_per_s", "objects/s", "list_parallel_stock"),
    (
        "  vs parallel listing, backend's client",
        "recover_objects_per_s",
        "objects/s",
        "list_parallel_same",
    ),
    ("  vs sequential listing", "recover_objects_per_s", "objects/s", "list_ceiling"),
    ("recover again (all indexed)", "recover_again_objects_per_s", "objects/s", None),
]


def fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def med(runs: list[dict[str, Any]], kind: str, key: str) -> float | None:
    values = [r[kind][key] for r in runs if r.get(kind, {}).get(key) is not None]
    return statistics.median(values) if values else None


def per(requests: dict[str, int] | None, count: int) -> str:
    if not requests:
        return "0"
    total = sum(requests.values())
    detail = ", ".join(f"{k} {v / count:g}" for k, v in sorted(requests.items()))
    return f"{total / count:g} ({detail})"


def _ratio(res: dict[str, Any], key: str, ceil_key: str) -> float | None:
    """One run's axonfs figure over its plain-boto3 baseline."""
    value, ceiling = res.get(key), res.get(ceil_key)
    return value / ceiling if value is not None and ceiling else None


def summarise(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    table = []
    for label, key, unit, ceil_key in ROWS:
        local, s3 = med(runs, "local", key), med(runs, "s3", key)
        if local is None and s3 is None:
            continue
        ceiling = med(runs, "s3", ceil_key) if ceil_key else None
        table.append(
            {
                "figure": label,
                "unit": unit,
                "local": local,
                "s3": s3,
                "ratio": (s3 / local) if (local and s3 is not None) else None,
                "moto_ceiling": ceiling,
                "ratio_ceiling": (s3 / ceiling) if (ceiling and s3 is not None) else None,
                "runs_local": [r.get("local", {}).get(key) for r in runs],
                "runs_s3": [r.get("s3", {}).get(key) for r in runs],
                "runs_ratio_ceiling": [_ratio(r.get("s3", {}), key, ceil_key) for r in runs]
                if ceil_key
                else [],
            }
        )
    last = runs[-1]["s3"]
    reqs = {
        "big blob ingested": per(last.get("ingest_requests"), 1),
        "small blob, put()": per(last.get("put_requests"), args.small_count),
        "small blob, puts()": per(last.get("puts_requests"), args.small_count),
        "first whole read (per MiB)": per(last.get("read_first_requests"), args.big_mib),
        "second whole read": per(last.get("read_second_requests"), 1),
        "4 KiB random read (cold block)": per(
            last.get("range_requests"), max(1, min(args.range_reads, args.range_blob_mib))
        ),
        "bytes fetched per 4 KiB random read": f"{last.get('range_bytes_per_read', 0):,.0f}",
        "recover (per 1,000 objects)": per(
            last.get("recover_requests"), max(1, args.recover_count // 1000)
        ),
    }
    return {"table": table, "s3_requests_per": reqs}


def print_summary(
    summary: dict[str, Any], runs: list[dict[str, Any]], extra: dict[str, Any], server: str
) -> None:
    head = (
        "figure",
        "unit",
        "local",
        "s3",
        "s3/local",
        "plain boto3",
        "s3/ceiling",
        "runs local",
        "runs s3",
        "runs s3/ceiling",
    )
    lines = [head]
    for row in summary["table"]:
        lines.append(
            (
                row["figure"],
                row["unit"],
                fmt(row["local"]),
                fmt(row["s3"]),
                fmt(row["ratio"], True),
                fmt(row["moto_ceiling"]),
                fmt(row["ratio_ceiling"], True),
                " ".join(fmt(v) for v in row["runs_local"]),
                " ".join(fmt(v) for v in row["runs_s3"]),
                " ".join(fmt(v, True) for v in row["runs_ratio_ceiling"]),
            )
        )
    print(
        f"axonfs S3 backend ({server} on loopback) vs local backend, median of {len(runs)} run(s)"
    )
    print_columns(lines)
    print("S3 requests per operation (last run):")
    for what, text in summary["s3_requests_per"].items():
        print(f"  {what}: {text}")
    for key, value in extra.items():
        print(f"{key}: {value}")
    for r in runs:
        for kind in BACKENDS:
            if kind in r:
                print(
                    f"run {r['run']} {kind}: load at start "
                    f"{r[kind]['load_at_start'].get('loadavg', '?')}"
                )


class _Rgw:
    """A one-node Ceph RGW (tests/helpers/rgw.py) serving plain HTTP, its keys in the
    environment for every client of this process (axonfs's and the plain boto3 ones)."""

    def __init__(self, workdir: Path) -> None:
        self.cluster = RgwCluster(workdir / "rgw", tls=False)
        self.cluster.start()
        self.server = RgwServer(self.cluster, tls=False)
        os.environ.update(self.server.env)
        self.endpoint = self.server.endpoint

    def stop(self) -> None:
        self.server.close()
        self.cluster.stop()


def _start_server(name: str, workdir: Path) -> MotoServer | _Rgw:
    if name == "rgw":
        return _Rgw(workdir)
    moto = MotoServer(workdir / "moto.log")
    moto.start()
    return moto


async def amain(args: argparse.Namespace) -> int:
    os.environ.update(TEST_ENV)
    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="axonfs-bench-s3-", dir=base))
    server = _start_server(args.server, workdir)
    extra: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    try:
        total = args.big_mib * MiB
        log(f"generating {args.big_mib} MiB in {args.chunk_mib} MiB pieces")
        chunks = big_chunks(total, args.chunk_mib * MiB, seed=0)
        expected = hashlib.sha256()
        for piece in chunks:
            expected.update(piece)
        range_chunks = big_chunks(args.range_blob_mib * MiB, args.chunk_mib * MiB, seed=5)

        rbucket = "bench-recover"
        local_blobs = workdir / "recover-blobs"
        if args.recover_count:
            items = recover_bodies(args.recover_count)
            log(
                f"creating {args.recover_count} objects in the bucket "
                f"({args.create_threads} threads) and as local files"
            )
            secs = await trio.to_thread.run_sync(
                create_s3_objects, server.endpoint, rbucket, items, args.create_threads
            )
            extra["recover objects created (s3, untimed setup)"] = (
                f"{args.recover_count} in {secs:.1f} s ({args.recover_count / secs:,.0f}/s)"
            )
            secs = await trio.to_thread.run_sync(create_local_files, local_blobs, items)
            extra["recover objects created (local files)"] = f"{secs:.1f} s"
            del items

        for run_no in range(args.runs):
            run: dict[str, Any] = {"run": run_no}
            order = BACKENDS if run_no % 2 == 0 else tuple(reversed(BACKENDS))
            for kind in order:
                run[kind] = await run_backend(
                    args,
                    kind,
                    run_no,
                    workdir,
                    server.endpoint,
                    chunks,
                    expected.digest(),
                    range_chunks,
                )
                if args.recover_count:
                    run[kind].update(
                        await run_recover(
                            args, kind, run_no, workdir, server.endpoint, local_blobs, rbucket
                        )
                    )
                    if kind == "s3":
                        secs, n = await trio.to_thread.run_sync(raw_list, server.endpoint, rbucket)
                        run[kind]["list_ceiling"] = n / secs
                # the blobs are not needed again; free the disk and the page cache
                shutil.rmtree(workdir / f"{kind}-{run_no}", ignore_errors=True)
            runs.append(run)
        summary = summarise(args, runs)
        print_summary(summary, runs, extra, args.server)
        if args.json:
            doc = {
                "machine": machine_info(),
                "params": vars(args),
                "runs": runs,
                "setup": extra,
                **summary,
            }
            Path(args.json).write_text(  # noqa: ASYNC240 - once, at the end
                json.dumps(doc, indent=2, default=repr) + "\n"
            )
            log(f"wrote {args.json}")
    finally:
        server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--server",
        choices=("moto", "rgw"),
        default="moto",
        help="the S3 server: moto, or a one-node Ceph RGW (root, make deps-rgw)",
    )
    p.add_argument("--big-mib", type=int, default=1024, help="ingested/read blob size (1024)")
    p.add_argument("--chunk-mib", type=int, default=8, help="upload write size (8)")
    p.add_argument("--small-count", type=int, default=1000, help="small blobs per mode (1000)")
    p.add_argument("--small-size", type=int, default=4096, help="bytes per small blob")
    p.add_argument("--batch", type=int, default=100, help="blobs per puts() (100)")
    p.add_argument(
        "--range-reads",
        type=int,
        default=64,
        help="random 4 KiB reads, each in a distinct 1 MiB block (64)",
    )
    p.add_argument(
        "--ceiling-ranged-mib",
        type=int,
        default=128,
        help="MiB read by the ranged-GET moto ceiling (128)",
    )
    p.add_argument(
        "--range-blob-mib",
        type=int,
        default=64,
        help="size of the blob read at random (64; moto's cost grows with it)",
    )
    p.add_argument(
        "--recover-count", type=int, default=100_000, help="objects for recover (100,000; 0: skip)"
    )
    p.add_argument(
        "--create-threads", type=int, default=16, help="threads creating the recover objects (16)"
    )
    p.add_argument(
        "--cache-size",
        type=int,
        default=2 << 30,
        help="S3 read cache cap in bytes (2 GiB, so a 1 GiB blob fits; "
        "the daemon's default is 1 GiB)",
    )
    p.add_argument("--part-size", type=int, default=16, help="multipart part MiB (16)")
    p.add_argument(
        "--sync-interval",
        type=int,
        default=0,
        metavar="MS",
        help="the store's sync interval (0: every call durable when it returns)",
    )
    p.add_argument("--runs", type=int, default=1, help="repeat; report medians")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--dir", help="parent of the temporary directory (default $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(trio.run(amain, get_args()))
