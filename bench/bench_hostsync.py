#!/usr/bin/env python3
"""Hosts converging through change records, on Ceph RGW (tests/helpers/rgw.py).

Starts a one-node Ceph cluster on 127.0.0.1 (needs root and ``make deps-rgw``)
and, in this process, two stores A and B on one bucket, each with its
:class:`~axonfs.hostsync.HostSync` running as in the daemon: A publishes after
every commit, B pulls every ``--interval`` seconds. Measures:

* convergence: A makes ``--changes`` changes (adds, and deletes of earlier
  adds), one at a time at random moments; the time from A's commit returning
  to B's mount watcher hearing of the change, p50/p99/max;
* the requests one sync costs when nothing changed, with the bucket holding
  ``--objects`` objects (default 1,000 and 100,000; created with plain boto3
  PUTs, 32 in flight).

Usage::

    python bench/bench_hostsync.py                      # 1,000 changes, 1k and 100k objects
    python bench/bench_hostsync.py --changes 200 --objects 1000 10000   # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.rgw import RgwCluster, unavailable_reason  # noqa: E402

from axonfs.axon import Axon  # noqa: E402
from axonfs.backends.s3 import S3Backend, S3Config  # noqa: E402
from axonfs.hostsync import HostSync, SyncConfig  # noqa: E402
from axonfs.store.index import BlobRow  # noqa: E402


class Seen:
    """B's watcher: when each sha was added or deleted there."""

    def __init__(self) -> None:
        self.at: dict[tuple[bytes, bool], float] = {}
        self.changed = trio.Event()

    def blobs_added(self, rows: Sequence[BlobRow]) -> None:
        self._mark(rows, True)

    def blobs_deleted(self, rows: Sequence[BlobRow]) -> None:
        self._mark(rows, False)

    def _mark(self, rows: Sequence[BlobRow], added: bool) -> None:
        now = time.monotonic()
        for row in rows:
            self.at.setdefault((bytes(row.sha256), added), now)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, key: tuple[bytes, bool]) -> float:
        while key not in self.at:
            await self.changed.wait()
        return self.at[key]


def quantile(values: list[float], fraction: float) -> float:
    """The nearest-rank quantile."""
    ordered = sorted(values)
    rank = max(1, -int(-len(ordered) * fraction // 1))
    return ordered[min(len(ordered), rank) - 1]


async def converge(root: Path, config: S3Config, changes: int, interval: float) -> dict[str, Any]:
    a_backend = S3Backend(config, root / "a-cache")
    b_backend = S3Backend(config, root / "b-cache")
    seen = Seen()
    latencies: list[float] = []
    rng = random.Random(1)
    async with (
        Axon.open(root / "a", backend=a_backend) as a,
        Axon.open(root / "b", backend=b_backend) as b,
    ):
        a_sync = HostSync(a, a_backend, SyncConfig())
        b_sync = HostSync(b, b_backend, SyncConfig(interval=interval))
        b.watch(seen)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a_sync.run)
            nursery.start_soon(b_sync.run)
            live: list[bytes] = []
            for i in range(changes):
                await trio.sleep(rng.uniform(0, interval))  # changes land anywhere in a cycle
                if live and i % 3 == 2:
                    sha = live.pop(rng.randrange(len(live)))
                    await a.del_(sha)
                    key = (sha, False)
                else:
                    _, sha = await a.put(os.urandom(64) + i.to_bytes(4, "big"))
                    live.append(sha)
                    key = (sha, True)
                committed = time.monotonic()
                with trio.fail_after(30):
                    latencies.append(await seen.wait_for(key) - committed)
            nursery.cancel_scope.cancel()
    for backend in (a_backend, b_backend):
        backend.close()
    return {
        "changes": changes,
        "interval_s": interval,
        "p50_s": round(quantile(latencies, 0.5), 3),
        "p99_s": round(quantile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
    }


async def idle_requests(root: Path, config: S3Config) -> int:
    """Requests of one pull that finds nothing new (after a first, catching-up one)."""
    a_backend = S3Backend(config, root / "ia-cache")
    b_backend = S3Backend(config, root / "ib-cache")
    async with (
        Axon.open(root / "ia", backend=a_backend) as a,
        Axon.open(root / "ib", backend=b_backend) as b,
    ):
        a_sync, b_sync = HostSync(a, a_backend, SyncConfig()), HostSync(b, b_backend, SyncConfig())
        await a.put(b"one change, so that B has a host to follow")
        await a_sync.publish()
        await b_sync.pull()
        before = b_backend.stats().total_requests
        await b_sync.pull()
        used = b_backend.stats().total_requests - before
    a_backend.close()
    b_backend.close()
    return used


def fill(client: Any, bucket: str, count: int) -> None:
    def put(i: int) -> None:
        body = i.to_bytes(8, "big")
        client.put_object(Bucket=bucket, Key=hashlib.sha256(body).hexdigest(), Body=body)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(count)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--objects", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if reason := unavailable_reason():
        sys.stderr.write(reason + "\n")
        return 1
    import boto3
    import botocore.config

    with tempfile.TemporaryDirectory(prefix="bench-hostsync-") as tmp:
        root = Path(tmp)
        cluster = RgwCluster(root / "rgw", tls=False)
        cluster.start()
        try:
            os.environ.update(
                {
                    "AWS_ACCESS_KEY_ID": cluster.access_key,
                    "AWS_SECRET_ACCESS_KEY": cluster.secret_key,
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
            )
            os.environ.pop("AWS_SESSION_TOKEN", None)
            client = boto3.client(
                "s3",
                endpoint_url=cluster.endpoint,
                config=botocore.config.Config(
                    request_checksum_calculation="when_required", max_pool_connections=32
                ),
            )
            results: dict[str, Any] = {"server": "Ceph RGW 16.2, memstore, 127.0.0.1"}
            config = S3Config(bucket="converge", endpoint_url=cluster.endpoint)
            results["convergence"] = trio.run(
                converge, root / "c", config, args.changes, args.interval
            )
            print(json.dumps(results["convergence"]), flush=True)
            results["idle_sync_requests"] = {}
            for count in args.objects:
                bucket = f"idle-{count}"
                client.create_bucket(Bucket=bucket)
                started = time.monotonic()
                fill(client, bucket, count)
                print(f"filled {bucket} in {time.monotonic() - started:.0f}s", flush=True)
                used = trio.run(
                    idle_requests,
                    root / bucket,
                    S3Config(bucket=bucket, endpoint_url=cluster.endpoint),
                )
                results["idle_sync_requests"][str(count)] = used
                print(f"{count} objects: {used} requests per idle sync", flush=True)
        finally:
            cluster.stop()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
