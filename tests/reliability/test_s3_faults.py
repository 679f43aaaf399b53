"""S3 faults: the S3 server (behind a loopback proxy to moto or RGW) stopped and restarted
during ingest through the mount and during reads.

Writes during the outage fail at ``close()`` with EIO and leave nothing; every
acknowledged blob survives byte-exact; reads during the outage either succeed
byte-exact (kernel page cache) or fail with EIO; the daemon keeps answering on
its socket; once S3 is back everything works again and a store-level fsck
(with the S3 backend) is clean.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.daemon import MountDaemon, ServeDaemon
from helpers.fuse import wait_until
from helpers.hashes import file_sha
from helpers.s3server import (  # noqa: F401 - fixtures and the parametrising hook
    S3Server,
    TcpProxy,
    _rgw_servers,
    moto,
    new_bucket_name,
    pytest_generate_tests,
    rgw_cluster,
    s3_server,
    test_config,
)

from axonfs import client
from axonfs.backends.s3 import S3Backend
from axonfs.fsck import fsck
from axonfs.store.store import Store

from .conftest import Figures, MakeDaemon
from .tools import spools, write_file

OUTAGE = 3.0
WRITERS, READERS = 4, 4
ALLOWED = (errno.EIO,)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[TcpProxy]:  # noqa: F811 - the imported fixture
    forwarder = TcpProxy(s3_server.port, s3_server.scheme)
    forwarder.start()
    yield forwarder
    forwarder.stop()


class Traffic:
    def __init__(self, mnt: Any, seed: int) -> None:
        self.mnt = mnt
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.attempted: set[str] = set()
        self.refused = 0
        self.acked_after_outage = 0
        self.outage_over = threading.Event()
        self.errors: list[str] = []
        self.reads = self.read_failures = 0

    def writer(self, index: int) -> None:
        rng = random.Random(self.seed + index)
        for n in range(100_000):
            if self.stop.is_set():
                return
            data = rng.randbytes(rng.randrange(1, 512 << 10))
            sha = hashlib.sha256(data).hexdigest()
            with self.lock:
                self.attempted.add(sha)
            try:
                write_file(self.mnt / "incoming" / f"s3w{index}-{n}", data)
            except OSError as exc:
                with self.lock:
                    if exc.errno in ALLOWED:
                        self.refused += 1
                    else:
                        self.errors.append(f"writer {index}: {exc!r}")
                continue
            with self.lock:
                self.acked[sha] = len(data)
                self.acked_after_outage += self.outage_over.is_set()

    def reader(self, index: int, names: list[str]) -> None:
        rng = random.Random(-self.seed - index)
        while not self.stop.is_set():
            name = rng.choice(names)
            try:
                got = file_sha(self.mnt / "by-sha256" / name)
            except OSError as exc:
                with self.lock:
                    if exc.errno in ALLOWED:
                        self.read_failures += 1
                    else:
                        self.errors.append(f"reader {index}: {exc!r}")
                time.sleep(0.05)
                continue
            with self.lock:
                self.reads += 1
                if got != name:
                    self.errors.append(f"reader {index}: {name} read as {got}")


async def _socket_still_answers(socket: Any, sha_hex: str) -> None:
    async with client.connect(socket) as axon:
        assert await axon.has(bytes.fromhex(sha_hex))
        await axon.metrics()


# The heaviest S3 test: on moto and on RGW over HTTPS, whose cut connections are
# TLS sessions torn mid-record (plain HTTP on RGW adds nothing the other two miss).
@pytest.mark.s3_servers("moto", "rgw-tls")
def test_s3_outage_during_ingest_and_reads(
    daemons: MakeDaemon,
    proxy: TcpProxy,
    s3_server: S3Server,  # noqa: F811
    figures: Figures,
) -> None:
    bucket = new_bucket_name()
    s3_server.client().create_bucket(Bucket=bucket)
    daemon = daemons(
        name="s3",
        options=("--s3-bucket", bucket, "--s3-endpoint", proxy.endpoint, "--cache-size", "0"),
    )
    # The outage is logged as errors on purpose (failed commits and reads).
    daemon.tolerated = (
        "BackendError",
        "S3",
        "s3",
        "bucket",
        "Traceback",
        "axonfs.ops",
        "commit at release failed",
    )
    daemon.start()
    assert daemon.mnt is not None
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    traffic = Traffic(daemon.mnt, seed)
    seeds = []
    for i in range(8):
        data = random.Random(seed - i).randbytes(256 << 10)
        write_file(daemon.mnt / "incoming" / f"seed{i}", data)
        seeds.append(hashlib.sha256(data).hexdigest())

    threads = [threading.Thread(target=traffic.writer, args=(i,)) for i in range(WRITERS)]
    threads += [threading.Thread(target=traffic.reader, args=(i, seeds)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        proxy.stop()  # the S3 server goes away during ingest and reads
        time.sleep(OUTAGE / 2)
        trio.run(_socket_still_answers, daemon.socket, seeds[0])
        assert daemon.alive()
        time.sleep(OUTAGE / 2)
        proxy.start()  # ...and comes back
        traffic.outage_over.set()
        assert wait_until(lambda: traffic.acked_after_outage >= WRITERS, timeout=60), (
            "writes did not resume after the outage"
        )
        time.sleep(1.0)
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a thread hangs"
    assert not traffic.errors, traffic.errors[:10]
    assert traffic.refused > 0, "no write failed during the outage"

    visible = set(os.listdir(daemon.mnt / "by-sha256"))
    assert set(traffic.acked) | set(seeds) <= visible, "an acknowledged blob is missing"
    assert visible <= traffic.attempted | set(seeds), "a blob nobody wrote whole is visible"
    for name in visible:
        assert file_sha(daemon.mnt / "by-sha256" / name) == name
    assert wait_until(lambda: not spools(daemon.store), timeout=10)
    daemon.stop()

    config = test_config(proxy.endpoint, bucket, cache_size=0)
    with Store(daemon.store, backend=S3Backend(config, cache_dir=daemon.store / "cache")) as store:
        report = fsck(store)
    assert not report.problems, report.summary()
    measured = {
        "outage_seconds": OUTAGE,
        "writers": WRITERS,
        "readers": READERS,
        "blobs_acknowledged": len(traffic.acked),
        "writes_refused_during_outage": traffic.refused,
        "writes_acknowledged_after_restart": traffic.acked_after_outage,
        "verified_reads": traffic.reads,
        "reads_failed_with_EIO_during_outage": traffic.read_failures,
        "blobs_checked_by_fsck": report.checked,
    }
    entry = figures.setdefault("s3_faults", {"lost": 0})
    entry.update({f"{s3_server.name}: {key}": value for key, value in measured.items()})


async def _wanted_by(socket: Any, names: list[str]) -> list[str]:
    async with client.connect(socket) as axon:
        missing = await axon.wants([bytes.fromhex(name) for name in names])
    return [sha.hex() for sha in missing]


@pytest.mark.s3_servers("moto", "rgw")
def test_sigkill_mid_commit_leaves_no_record_naming_missing_bytes(
    daemons: MakeDaemon,
    s3_server: S3Server,  # noqa: F811
    figures: Figures,
    tmp_path: Path,
) -> None:
    """Host A is killed during ingest: every add its records name is in the
    bucket; restarted, it publishes what it had committed but not yet
    published, and host B (pulling every 0.2 s) ends up with every blob A has."""
    bucket = new_bucket_name()
    raw = s3_server.client()
    raw.create_bucket(Bucket=bucket)
    options = ("--s3-bucket", bucket, "--s3-endpoint", s3_server.endpoint)
    host_a = daemons(name="a", options=options)
    host_a.start()
    host_b = ServeDaemon.start(
        tmp_path / "b-store", *options, "--s3-sync-interval", "0.2", log=tmp_path / "b.log"
    )
    try:
        _sigkill_mid_commit(host_a, host_b, raw, bucket, s3_server, figures)
    finally:
        host_b.stop()
    assert not host_b.problems(), "\n".join(host_b.problems()[:40])


def _sigkill_mid_commit(
    host_a: MountDaemon,
    host_b: ServeDaemon,
    raw: Any,
    bucket: str,
    s3_server: S3Server,  # noqa: F811 - the imported fixture
    figures: Figures,
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def writer(index: int) -> None:
        rng = random.Random(seed + index)
        for n in range(100_000):
            data = rng.randbytes(rng.randrange(1, 256 << 10))
            try:
                write_file(host_a.mnt / "incoming" / f"k{index}-{n}", data)
            except OSError:
                return  # the daemon is gone
            with lock:
                acked[hashlib.sha256(data).hexdigest()] = len(data)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(acked) >= 40, timeout=60)
    host_a.kill()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a writer hangs on the dead mount"

    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = {item["Key"] for page in pages for item in page.get("Contents", [])}
    named = {
        change[2]
        for key in keys
        if key.startswith("changes/h/")
        for change in json.loads(raw.get_object(Bucket=bucket, Key=key)["Body"].read())["changes"]
        if change[1] == "a"
    }
    assert named <= keys, f"records name missing bytes: {sorted(named - keys)[:5]}"

    print(f"at the kill: {len(acked)} acknowledged, {len(named)} named by records")
    result = host_a.start()
    assert "stopped abruptly" in result.stderr, result.stderr
    visible = sorted(os.listdir(host_a.mnt / "by-sha256"))
    assert set(acked) <= set(visible), "an acknowledged blob was lost"
    assert wait_until(lambda: not trio.run(_wanted_by, host_b.socket, visible), timeout=60), (
        "host B did not get every blob host A has"
    )
    figures.setdefault("s3_faults", {"lost": 0})[f"{s3_server.name}: sigkill"] = {
        "blobs_acknowledged": len(acked),
        "blobs_visible_after_restart": len(visible),
        "adds_named_by_records_at_the_kill": len(named),
    }
