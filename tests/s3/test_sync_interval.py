"""The sync interval on the S3 backend: an add returns once its bytes are in the
bucket, and its index row becomes durable at the next sync.

A crash of the daemon loses nothing (the commit log replays); a power cut may
lose the rows of the last interval but never the bytes, which ``recover``
finds in the bucket again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.cli import run_axonfs
from helpers.daemon import ServeDaemon
from helpers.fuse import fuse_available
from helpers.hashes import sha_hex
from helpers.powercut import PowerCutDisk
from helpers.s3server import S3Server, new_bucket_name

from axonfs import client
from axonfs.axon import Axon
from axonfs.backends.s3 import S3Backend
from axonfs.hashing import Sha256
from axonfs.store.store import Store

MakeS3 = Callable[..., S3Backend]
pytestmark = pytest.mark.s3_servers("moto")

INTERVAL_MS = "600000"
"""Longer than any test: only the calls themselves make anything durable."""
BLOBS = (10, 5000, 200_000, 3 << 20)
"""Sizes from a journal-sized blob to a multipart upload."""


async def test_an_add_is_in_the_bucket_when_it_returns_and_durable_at_the_sync(
    make_s3: MakeS3, raw_s3: Any, bucket: str, tmp_path: Path
) -> None:
    backend = make_s3()
    async with Axon.open(tmp_path / "store", backend=backend, sync_interval=600.0) as axon:
        shas = [(await axon.put(os.urandom(size)))[1] for size in (5000, 3 << 20)]
        for sha in shas:
            raw_s3.head_object(Bucket=bucket, Key=backend.key_of(Sha256(sha)))
        assert axon.index.deferred() == 2  # visible, not durable yet
        assert await axon.sync() == 2
        assert axon.index.deferred() == 0
        await axon.put(b"after the sync")
        assert axon.index.deferred() == 1
        assert await axon.del_(shas[0])  # a delete is durable, and so is all before it
        assert axon.index.deferred() == 0


async def _put_all(socket: Path, blobs: list[bytes]) -> list[str]:
    async with client.connect(socket) as axon:
        return [(await axon.put(data))[1].hex() for data in blobs]


async def _present(socket: Path, blobs: list[bytes]) -> list[bool]:
    async with client.connect(socket) as axon:
        present = []
        for data in blobs:
            sha = bytes.fromhex(sha_hex(data))
            stored = await axon.has(sha) and b"".join([p async for p in axon.get(sha)]) == data
            present.append(stored)
        return present


def _options(s3_server: S3Server) -> tuple[str, ...]:
    return ("--s3-bucket", new_bucket_name(), "--s3-endpoint", s3_server.endpoint)


def test_a_killed_daemon_loses_no_deferred_add(s3_server: S3Server, tmp_path: Path) -> None:
    options = _options(s3_server)
    store = tmp_path / "store"
    blobs = [os.urandom(size) for size in BLOBS]
    daemon = ServeDaemon.start(store, *options, "--sync-interval", INTERVAL_MS)
    try:
        trio.run(_put_all, daemon.socket, blobs)
    finally:
        daemon.process.kill()
        daemon.process.wait()
    daemon = ServeDaemon.start(store, *options)
    try:
        assert all(trio.run(_present, daemon.socket, blobs))
    finally:
        daemon.stop()


@pytest.mark.fuse
@pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")
def test_a_power_cut_loses_rows_of_the_interval_never_their_bytes(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The store sits on the power-cut harness; the daemon is killed and the
    power goes before the interval's sync. Every acknowledged add is in the
    bucket, ``fsck`` finds nothing worse than blobs the index lacks (and says
    to run ``recover``), and ``recover`` brings every one of them back."""
    options = _options(s3_server)
    blobs = [os.urandom(size) for size in BLOBS]
    raw = s3_server.client()
    with PowerCutDisk(tmp_path / "backing", tmp_path / "disk") as disk:
        store = disk.start() / "store"
        daemon = ServeDaemon.start(
            store, *options, "--sync-interval", INTERVAL_MS, log=tmp_path / "serve.log"
        )
        try:
            acked = trio.run(_put_all, daemon.socket, blobs)
        finally:
            daemon.process.kill()
            daemon.process.wait()
        disk.power_cut()
        store = disk.start() / "store"
        bucket = options[1]
        for hexd in acked:
            raw.head_object(Bucket=bucket, Key=hexd)  # the bytes outlived the cut
        with Store(store, readonly=True) as opened:
            lost = [h for h in acked if not opened.index.has(Sha256(bytes.fromhex(h)))]
        assert lost, "nothing was deferred: the cut took no row"
        # Opening the store indexes what a surviving intent names; fsck reports
        # the rest as blobs in the bucket that the index lacks, and what to do.
        before = run_axonfs("fsck", "--store", store, *options)
        assert before.returncode in (0, 1), before.stdout + before.stderr
        if before.returncode:
            assert "in the backend but not the index" in before.stdout, before.stdout
            assert "axonfs recover" in before.stdout, before.stdout
        recovered = run_axonfs("recover", "--store", store, *options)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        after = run_axonfs("fsck", "--store", store, *options)
        assert after.returncode == 0 and "no problems found" in after.stdout, after.stdout
        daemon = ServeDaemon.start(store, *options, log=tmp_path / "serve.log")
        try:
            assert all(trio.run(_present, daemon.socket, blobs))
        finally:
            daemon.stop()
        disk.stop()
