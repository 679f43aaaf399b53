"""A large blob goes up and comes back with flat memory.

The issue asks for 2 GiB; 256 MiB shows the same thing (memory bounded by
``upload_parallelism * part_size`` on the way up and by the readahead window
on the way down, not by the blob) in a tenth of the time. Set
``AXONFS_S3_LARGE_MIB=2048`` to run the full size.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from axonfs.axon import Axon
from axonfs.backends.s3 import S3Backend

MakeS3 = Callable[..., S3Backend]
MiB = 1 << 20
SIZE_MIB = int(os.environ.get("AXONFS_S3_LARGE_MIB", "256"))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Sample RSS every 5 ms; the yielded list gets the peak growth at exit."""
    result: list[int] = []
    baseline = rss()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.append(max(peak, rss()) - baseline)


@pytest.mark.slow
@pytest.mark.s3_servers("moto")  # memory is the client's concern; RGW would only add time
async def test_large_blob_with_flat_memory(make_s3: MakeS3, tmp_path: Path) -> None:
    store = tmp_path / "store"
    part_size, parallelism = 8 * MiB, 4
    backend = make_s3(
        part_size=part_size,
        upload_parallelism=parallelism,
        cache_dir=store / "cache",
        cache_size=64 * MiB,
    )
    chunk = os.urandom(MiB)
    expected = hashlib.sha256()
    async with Axon.open(store, backend=backend) as axon:
        await axon.put(b"warm up")
        with peak_rss_growth() as upload_growth:
            async with await axon.upload() as upload:
                for i in range(SIZE_MIB):
                    piece = i.to_bytes(8, "big") + chunk[8:]
                    expected.update(piece)
                    await upload.write(piece)
                size, sha = await upload.save()
        assert (size, sha) == (SIZE_MIB * MiB, expected.digest())
        with peak_rss_growth() as read_growth:
            hasher = hashlib.sha256()
            async for piece in axon.get(sha):
                hasher.update(piece)
        assert hasher.digest() == sha
    requests = backend.stats().requests
    print(
        f"RSS growth: upload {upload_growth[0] / MiB:.1f} MiB, read {read_growth[0] / MiB:.1f} "
        f"MiB; GETs {requests['get_object']}"
    )
    assert requests["upload_part"] == SIZE_MIB * MiB // part_size
    bound = parallelism * part_size + 48 * MiB  # parts in flight + interpreter slack
    assert upload_growth[0] < bound, f"upload grew RSS by {upload_growth[0] / MiB:.0f} MiB"
    # Readahead keeps up to 16 blocks in flight, briefly twice while a span is split.
    assert read_growth[0] < 96 * MiB, f"read grew RSS by {read_growth[0] / MiB:.0f} MiB"
