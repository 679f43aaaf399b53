#!/usr/bin/env python3
"""How recover's own work per object grows with the size of the store.

``recover`` of an S3 bucket overlaps two kinds of work: listing the bucket
(paged, 1,000 keys a request, so a key costs the same in a bucket of any
size) and adopting what it lists (an index lookup per key, batched index
commits). ``bench_s3.py`` times both together on a real server up to
100,000 objects; creating 1,000,000 objects on the one-node RGW takes about
an hour at its ~300 PUTs/s. This benchmark times the second half alone at
sizes up to 1,000,000, on the real index and committer: the backend lists
synthetic names (no bytes, no server), so only what grows with the store is
left. With the listing rate from ``bench_s3.py --server rgw`` it gives a
measured extrapolation of recover at 1,000,000 objects.

    python bench/bench_recover_scale.py                        # 100k and 1M
    python bench/bench_recover_scale.py --counts 10000 100000 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axonfs.axon import Axon  # noqa: E402
from axonfs.backends.base import BlobBackend, BlobReader, Listing  # noqa: E402
from axonfs.errors import BlobMissing  # noqa: E402
from axonfs.hashing import Sha256  # noqa: E402


class ListedNames(BlobBackend):
    """A backend that lists *count* made-up blobs and holds no bytes.

    Only ``list`` and ``exists`` are answered: recover with ``verify=False``
    reads nothing else, which is what an S3 recover does too.
    """

    name = "listed-names"

    def __init__(self, count: int) -> None:
        self.count = count

    def list(self) -> Iterator[Listing]:
        # In key order, as an S3 listing (of one of the backend's key ranges) comes.
        names = sorted(
            hashlib.sha256(number.to_bytes(8, "big")).digest() for number in range(self.count)
        )
        for name in names:
            yield Listing(Sha256(name), 4096)

    def exists(self, sha256: Sha256) -> bool:
        return True

    def put_file(self, sha256: Sha256, path: Path, sync: bool = True) -> None:
        raise NotImplementedError("recover adds no bytes")

    def flush(self) -> None:
        pass

    def open(self, sha256: Sha256) -> BlobReader:
        raise BlobMissing(f"{sha256.hex()} has no bytes here")

    def delete(self, sha256: Sha256) -> bool:
        return False


def list_only(count: int) -> float:
    """Seconds to produce the listing alone (what the fake backend costs)."""
    start = time.perf_counter()
    for _ in ListedNames(count).list():
        pass
    return time.perf_counter() - start


async def recover(count: int, workdir: Path) -> dict[str, float]:
    store = workdir / f"store-{count}"
    async with Axon.open(store, backend=ListedNames(count)) as axon:
        start = time.perf_counter()
        report = await axon.recover(verify=False)
        seconds = time.perf_counter() - start
        assert report.added == count, report
        start = time.perf_counter()
        again = await axon.recover(verify=False)
        seconds_again = time.perf_counter() - start
        assert again.skipped == count, again
    shutil.rmtree(store)
    listing = list_only(count)
    return {
        "count": count,
        "recover_s": seconds,
        "objects_per_s": count / seconds,
        "listing_s": listing,
        "adopt_us_per_object": 1e6 * (seconds - listing) / count,
        "again_objects_per_s": count / seconds_again,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="axonfs-recover-scale-") as tmp:
        for count in args.counts:
            print(f"recover of {count:,} listed names", file=sys.stderr, flush=True)
            rows.append(trio.run(recover, count, Path(tmp)))
    header = ("objects", "recover s", "objects/s", "adopt us/obj", "again/s")
    print(" ".join(f"{name:>13}" for name in header))
    for row in rows:
        print(
            f"{row['count']:>13,} {row['recover_s']:>13.1f} {row['objects_per_s']:>13,.0f}"
            f" {row['adopt_us_per_object']:>13.1f} {row['again_objects_per_s']:>13,.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
