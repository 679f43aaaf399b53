"""The mount and the control socket over the S3 backend: two hosts, one bucket.

Host A mounts a store whose blobs live in the bucket and ingests through
/incoming; host B (another store, same bucket) sees A's blobs after
``axonfs ctl recover`` and reads them through its own mount. The offline
``axonfs recover`` rebuilds a lost index from the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.fuse import Mounted, axonfs, axonfs_mounts, fuse_available, wait_until
from helpers.s3server import S3Server, new_bucket_name

pytestmark = [pytest.mark.fuse,
              pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")]


@pytest.fixture
def hosts(s3_server: S3Server, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two unmounted 'hosts' (stores) configured for one fresh bucket."""
    options = ("--s3-bucket", new_bucket_name(), "--s3-endpoint", s3_server.endpoint)
    made = [Mounted(tmp_path / name, options) for name in ("a", "b")]
    yield made
    for mounted in made:
        mounted.close()
    assert not any(str(m.mnt) in axonfs_mounts() for m in made)
    problems = [line for m in made for line in m.log_problems()]
    assert not problems, "\n".join(problems)


def ctl(host: Mounted, *args: str) -> subprocess.CompletedProcess[str]:
    return axonfs("ctl", "-m", host.mnt, *args, check=False)


def test_two_hosts_share_one_bucket(hosts: list[Mounted], tmp_path: Path) -> None:
    host_a, host_b = hosts
    host_a.mount()
    host_b.mount()
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


def test_periodic_sync_adopts_other_hosts_blobs(hosts: list[Mounted], tmp_path: Path) -> None:
    host_a, host_b = hosts
    host_a.mount()
    host_b.mount("--s3-sync-interval", "0.3")
    data = os.urandom(5000)
    (tmp_path / "shared").write_bytes(data)
    subprocess.run(["cp", tmp_path / "shared", host_a.path("incoming")], check=True)
    blob = host_b.path("by-sha256", hashlib.sha256(data).hexdigest())
    assert wait_until(blob.exists, timeout=15)
    assert blob.read_bytes() == data


def test_offline_recover_rebuilds_a_lost_index(hosts: list[Mounted], tmp_path: Path) -> None:
    host, _ = hosts
    host.mount()
    blobs = [os.urandom(n) for n in (0, 10, 200_000)]
    for i, data in enumerate(blobs):
        (tmp_path / f"f{i}").write_bytes(data)
        subprocess.run(["cp", tmp_path / f"f{i}", host.path("incoming")], check=True)
    host.umount()
    shutil.rmtree(host.store / "index.lmdb")
    bucket, endpoint = host.options[1], host.options[3]
    done = axonfs("recover", "--store", host.store, "--s3-bucket", bucket,
                  "--s3-endpoint", endpoint)
    assert "added 3" in done.stdout, done.stdout
    host.mount()
    for data in blobs:
        assert host.path("by-sha256", hashlib.sha256(data).hexdigest()).read_bytes() == data
