"""The mount and the control socket over the S3 backend: two hosts, one bucket.

Host A mounts a store whose blobs live in the bucket and ingests through
/incoming; host B (another store, same bucket) sees A's blobs after
``axonfs ctl recover``, or by itself through the other host's change records
with ``--s3-sync-interval``, and reads them through its own mount. The offline
``axonfs recover`` rebuilds a lost index from the bucket.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import run_axonfs
from helpers.daemon import MountDaemon, mount_daemons
from helpers.fuse import axonfs_mounts, fuse_available, wait_until
from helpers.s3server import S3Server, new_bucket_name

pytestmark = [pytest.mark.fuse, pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")]


@pytest.fixture
def hosts(s3_server: S3Server, tmp_path: Path) -> Iterator[list[MountDaemon]]:
    """Two unmounted 'hosts' (stores) configured for one fresh bucket."""
    options = ("--s3-bucket", new_bucket_name(), "--s3-endpoint", s3_server.endpoint)
    with mount_daemons() as daemons:
        made = [daemons.under(tmp_path / name, options, start=False) for name in ("a", "b")]
        yield made
    assert not any(str(m.mnt) in axonfs_mounts() for m in made)


def ctl(host: MountDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    return run_axonfs("ctl", "-m", host.mnt, *args, check=False)


def test_two_hosts_share_one_bucket(hosts: list[MountDaemon], tmp_path: Path) -> None:
    host_a, host_b = hosts
    host_a.start()
    host_b.start()
    payloads = {"small.bin": os.urandom(3000), "big.bin": os.urandom(6 << 20)}
    for name, data in payloads.items():
        source = tmp_path / name
        source.write_bytes(data)
        subprocess.run(["cp", source, host_a.path("incoming", name)], check=True)
    hexes = [hashlib.sha256(data).hexdigest() for data in payloads.values()]
    for hexd in hexes:
        assert ctl(host_b, "has", hexd).returncode == 1  # not indexed on B yet

    recovered = ctl(host_b, "recover")
    assert recovered.returncode == 0, recovered.stderr
    for hexd, data in zip(hexes, payloads.values(), strict=True):
        assert ctl(host_b, "has", hexd).returncode == 0
        assert host_b.path("by-sha256", hexd).read_bytes() == data
    again = json.loads(ctl(host_b, "--json", "recover").stdout)
    assert (again["listed"], again["added"], again["skipped"]) == (2, 0, 2)


def test_periodic_sync_applies_other_hosts_adds_and_deletes(
    hosts: list[MountDaemon], tmp_path: Path
) -> None:
    """A's adds appear in B's mount and A's deletes leave it, through the change
    records; a reader on B that holds the blob open when it goes gets all of
    its bytes or EIO, never wrong bytes."""
    host_a, host_b = hosts
    host_a.start()
    host_b.start("--s3-sync-interval", "0.3")
    data = os.urandom(5000)
    big = os.urandom(3 << 20)
    for name, payload in (("shared", data), ("big", big)):
        (tmp_path / name).write_bytes(payload)
        subprocess.run(["cp", tmp_path / name, host_a.path("incoming")], check=True)
    blob = host_b.path("by-sha256", hashlib.sha256(data).hexdigest())
    big_blob = host_b.path("by-sha256", hashlib.sha256(big).hexdigest())
    assert wait_until(lambda: blob.exists() and big_blob.exists(), timeout=15)
    assert blob.read_bytes() == data

    with open(big_blob, "rb", buffering=0) as reader:
        start = reader.read(64 << 10)
        for path in (blob, big_blob):
            deleted = ctl(host_a, "del", path.name)
            assert deleted.returncode == 0, deleted.stderr
        assert wait_until(lambda: not blob.exists() and not big_blob.exists(), timeout=15)
        try:
            rest = reader.read()
        except OSError as exc:
            assert exc.errno == errno.EIO
        else:
            assert start + rest == big
    assert ctl(host_b, "has", blob.name).returncode == 1
    with pytest.raises(FileNotFoundError):
        blob.read_bytes()
    # ctl stats shows each host's changes and how far behind the other is.
    a_stats = json.loads(ctl(host_a, "--json", "stats").stdout)["hosts"]
    assert (a_stats["published"], a_stats["queued"]) == (4, 0)  # two adds, two deletes
    b_stats = json.loads(ctl(host_b, "--json", "stats").stdout)["hosts"]
    assert b_stats["peers"] == [{"host": a_stats["this"], "applied": 4, "latest": 4, "behind": 0}]
    assert (
        f"{a_stats['this']}: applied up to change 4 of 4 (0 behind)" in ctl(host_b, "stats").stdout
    )


def test_offline_recover_rebuilds_a_lost_index(hosts: list[MountDaemon], tmp_path: Path) -> None:
    host, _ = hosts
    host.start()
    blobs = [os.urandom(n) for n in (0, 10, 200_000)]
    for i, data in enumerate(blobs):
        (tmp_path / f"f{i}").write_bytes(data)
        subprocess.run(["cp", tmp_path / f"f{i}", host.path("incoming")], check=True)
    host.umount()
    shutil.rmtree(host.store / "index.lmdb")
    bucket, endpoint = host.options[1], host.options[3]
    done = run_axonfs(
        "recover",
        "--store",
        host.store,
        "--s3-bucket",
        bucket,
        "--s3-endpoint",
        endpoint,
        check=True,
    )
    assert "added 3" in done.stdout, done.stdout
    host.start()
    for data in blobs:
        assert host.path("by-sha256", hashlib.sha256(data).hexdigest()).read_bytes() == data
