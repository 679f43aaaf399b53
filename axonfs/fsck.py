"""``axonfs fsck``: check that the index and the blobs agree, and repair.

Checks, in order:

1. every index row's blob exists in the backend, has the indexed size and
   hashes to its name (``--quick`` checks only presence and size);
2. every blob the backend holds is in the index (orphans: left by a crash
   between storing the bytes and committing the row, or by a crash during a
   delete);
3. the counters (``size:bytes``, ``file:count``) equal the sums over the rows.

``--repair`` moves corrupt blob files to ``<store>/quarantine/``, drops rows
whose blob is missing or corrupt, indexes verified orphans (as new rows dated
now), and recomputes the counters. Nothing is ever deleted outright.

fsck needs the store to itself: it takes the store lock, so it refuses to run
while a daemon has the store open.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from axonfs.backends.base import BlobBackend
from axonfs.errors import BlobMissing
from axonfs.hashing import Sha256
from axonfs.store.index import BlobRow
from axonfs.store.store import AdoptBlob, DeleteBlob, Store

log = logging.getLogger(__name__)

_READ = 4 << 20


@dataclass
class FsckReport:
    """Problems found (and, with repair, fixed) by :func:`fsck`."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    bad_orphans: list[str] = field(default_factory=list)
    counters_wrong: bool = False
    repaired: bool = False

    @property
    def problems(self) -> int:
        return (len(self.missing) + len(self.wrong_size) + len(self.corrupt)
                + len(self.orphans) + len(self.bad_orphans) + int(self.counters_wrong))

    def summary(self) -> str:
        lines = [f"checked {self.checked} indexed blobs"]
        for label, items in (("missing from the backend", self.missing),
                             ("with the wrong size", self.wrong_size),
                             ("not matching their hash", self.corrupt),
                             ("in the backend but not the index", self.orphans),
                             ("unindexed and not matching their name", self.bad_orphans)):
            if items:
                lines.append(f"{len(items)} blobs {label}: {', '.join(items[:5])}"
                             + (" …" if len(items) > 5 else ""))
        if self.counters_wrong:
            lines.append("the size:bytes / file:count counters were wrong")
        if not self.problems:
            lines.append("no problems found")
        elif self.repaired:
            lines.append("repaired")
        return "\n".join(lines)


def fsck(store: Store, *, repair: bool = False, quick: bool = False,
         show_progress: bool = False) -> FsckReport:
    """Check (and with *repair*, fix) the open *store*."""
    report = FsckReport()
    rows = _all_rows(store)
    total_bytes = sum(row.size for row in rows)
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="checking blobs",
              disable=not show_progress) as bar:
        for row in rows:
            problem = _check_blob(store.backend, row, quick)
            if problem is not None:
                getattr(report, problem).append(row.sha256.hex())
            report.checked += 1
            bar.update(row.size)
    indexed = {row.sha256 for row in rows}
    for item in tqdm(list(store.backend.list()), desc="looking for orphans", unit="blob",
                     disable=not show_progress):
        if item.sha256 in indexed or store.index.has(item.sha256):
            continue
        ok = quick or _hash_of(store.backend, item.sha256) == item.sha256
        (report.orphans if ok else report.bad_orphans).append(item.sha256.hex())
    metrics = store.index.metrics()
    report.counters_wrong = metrics != {"size:bytes": total_bytes, "file:count": len(rows)}
    if repair and report.problems:
        _repair(store, report)
        report.repaired = True
    return report


def _all_rows(store: Store) -> list[BlobRow]:
    rows: list[BlobRow] = []
    after = b""
    while batch := store.index.blobs_batch(after, 10_000):
        rows.extend(batch)
        after = batch[-1].sha256
    return rows


def _check_blob(backend: BlobBackend, row: BlobRow, quick: bool) -> str | None:
    try:
        reader = backend.open(row.sha256)
    except BlobMissing:
        return "missing"
    with reader:
        if reader.size != row.size:
            return "wrong_size"
        if quick:
            return None
        hasher = hashlib.sha256()
        offset = 0
        while piece := reader.read(offset, _READ):
            hasher.update(piece)
            offset += len(piece)
    return None if hasher.digest() == row.sha256 else "corrupt"


def _hash_of(backend: BlobBackend, sha256: Sha256) -> bytes:
    hasher = hashlib.sha256()
    with backend.open(sha256) as reader:
        offset = 0
        while piece := reader.read(offset, _READ):
            hasher.update(piece)
            offset += len(piece)
    return hasher.digest()


def _repair(store: Store, report: FsckReport) -> None:
    quarantine = store.root / "quarantine"
    bad = report.wrong_size + report.corrupt + report.bad_orphans
    for hexd in bad:
        _quarantine(store, Sha256(bytes.fromhex(hexd)), quarantine)
    drop = [DeleteBlob(Sha256(bytes.fromhex(h)))
            for h in report.missing + report.wrong_size + report.corrupt]
    adopt = []
    for hexd in report.orphans:
        sha = Sha256(bytes.fromhex(hexd))
        with store.backend.open(sha) as reader:
            adopt.append(AdoptBlob(sha, reader.size))
    if drop or adopt:
        store.commit([*drop, *adopt])
    store.index.recount()
    log.info("fsck repaired %d problems", report.problems)


def _quarantine(store: Store, sha256: Sha256, quarantine: Path) -> None:
    """Move a bad blob file aside (local backend) or delete it (others)."""
    path_of = getattr(store.backend, "path_of", None)
    if path_of is None:
        store.backend.delete(sha256)
        return
    quarantine.mkdir(exist_ok=True)
    source = path_of(sha256)
    if source.exists():
        os.replace(source, quarantine / sha256.hex())
