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
now), and recomputes the counters. Nothing is ever deleted outright. The
report (stdout) says what was found and what was done; the log goes to
stderr only.

Without ``--repair`` fsck needs no write access: a store it cannot write (a
read-only filesystem, another user's) is checked as it is.

fsck needs the store to itself: it takes the store lock, so it refuses to run
while a daemon has the store open.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from axonfs.backends.base import BlobBackend
from axonfs.errors import BlobMissing, StoreUnavailable
from axonfs.hashing import Sha256
from axonfs.store.index import BlobRow
from axonfs.store.store import AdoptBlob, DeleteBlob, Store

log = logging.getLogger(__name__)

_READ = 4 << 20


@dataclass
class Repairs:
    """What ``--repair`` did, for the report."""

    quarantined: list[str] = field(default_factory=list)
    """Blob files moved to :attr:`quarantine` (local backend)."""
    deleted: list[str] = field(default_factory=list)
    """Bad blobs deleted from a backend that has no files to move aside."""
    dropped: int = 0
    """Index rows dropped (blob missing, wrong size or corrupt)."""
    adopted: int = 0
    """Orphans indexed."""
    quarantine: Path | None = None


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
    repaired: Repairs | None = None
    readonly: bool = False
    """The store could not be written, so it was checked as it is."""

    @property
    def problems(self) -> int:
        return (
            len(self.missing)
            + len(self.wrong_size)
            + len(self.corrupt)
            + len(self.orphans)
            + len(self.bad_orphans)
            + int(self.counters_wrong)
        )

    def summary(self) -> str:
        """The report, one finding per line (the log goes elsewhere)."""
        lines = [
            f"checked {_count(self.checked, 'indexed blob')}"
            + (" (read-only: the store cannot be written)" if self.readonly else "")
        ]
        for label, items in (
            ("missing from the backend", self.missing),
            ("with the wrong size", self.wrong_size),
            ("not matching their hash", self.corrupt),
            ("in the backend but not the index", self.orphans),
            ("unindexed and not matching their name", self.bad_orphans),
        ):
            if items:
                lines.append(
                    f"{_count(len(items), 'blob')} {label}: {', '.join(items[:5])}"
                    + (" …" if len(items) > 5 else "")
                )
        if self.orphans and self.repaired is None:
            lines.append("  index them with 'axonfs recover' (or 'axonfs fsck --repair')")
        if self.counters_wrong:
            lines.append("the size:bytes / file:count counters were wrong")
        if not self.problems:
            lines.append("no problems found")
        elif self.repaired is not None:
            lines.extend(self._repairs(self.repaired))
        return "\n".join(lines)

    def _repairs(self, done: Repairs) -> list[str]:
        lines = ["repaired:"]
        if done.quarantined:
            lines.append(
                f"  {_count(len(done.quarantined), 'bad blob file')} moved to "
                f"quarantine/ {done.quarantine}"
            )
        if done.deleted:
            lines.append(f"  {_count(len(done.deleted), 'bad blob')} deleted from the backend")
        if done.dropped:
            lines.append(f"  {_count(done.dropped, 'index row')} of missing or bad blobs dropped")
        if done.adopted:
            lines.append(f"  {_count(done.adopted, 'orphan')} indexed")
        lines.append("  the counters recomputed")
        return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def open_for_fsck(root: Path, backend: BlobBackend | None, *, repair: bool) -> Store:
    """Open the store at *root* for :func:`fsck`.

    A check writes only what any open writes (settling an interrupted commit,
    sweeping spools); when the store cannot be written (a read-only
    filesystem, another user's store), it is checked read-only instead, as it
    is. A repair needs to write.
    """
    try:
        return Store(root, backend)
    except StoreUnavailable as exc:
        if repair or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    return Store(root, backend, readonly=True)  # the report says it was read-only


def fsck(
    store: Store, *, repair: bool = False, quick: bool = False, show_progress: bool = False
) -> FsckReport:
    """Check (and with *repair*, fix) the open *store*."""
    report = FsckReport()
    lists = {"missing": report.missing, "wrong_size": report.wrong_size, "corrupt": report.corrupt}
    rows = _all_rows(store)
    total_bytes = sum(row.size for row in rows)
    with tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc="checking blobs",
        disable=not show_progress,
    ) as bar:
        for row in rows:
            problem = _check_blob(store, row, quick)
            if problem is not None:
                lists[problem].append(row.sha256.hex())
            report.checked += 1
            bar.update(row.size)
    indexed = {row.sha256 for row in rows}
    for item in tqdm(
        list(store.backend.list()),
        desc="looking for orphans",
        unit="blob",
        disable=not show_progress,
    ):
        if item.sha256 in indexed or store.index.has(item.sha256):
            continue
        ok = quick or _hash_of(store.backend, item.sha256) == item.sha256
        (report.orphans if ok else report.bad_orphans).append(item.sha256.hex())
    metrics = store.index.metrics()
    report.counters_wrong = metrics != {"size:bytes": total_bytes, "file:count": len(rows)}
    report.readonly = store.readonly
    if repair and report.problems:
        report.repaired = _repair(store, report)
    return report


def _all_rows(store: Store) -> list[BlobRow]:
    rows: list[BlobRow] = []
    after = b""
    while batch := store.index.blobs_batch(after, 10_000):
        rows.extend(batch)
        after = batch[-1].sha256
    return rows


def _check_blob(store: Store, row: BlobRow, quick: bool) -> str | None:
    try:
        # Through the store: a blob still journaled in the index (a read-only
        # open did not write its file) is checked against those bytes.
        reader = store.open_blob(row.sha256)
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


def _repair(store: Store, report: FsckReport) -> Repairs:
    quarantine = store.root / "quarantine"
    done = Repairs(quarantine=quarantine)
    for hexd in report.wrong_size + report.corrupt + report.bad_orphans:
        moved = _quarantine(store, Sha256(bytes.fromhex(hexd)), quarantine)
        (done.quarantined if moved else done.deleted).append(hexd)
    drop = [
        DeleteBlob(Sha256(bytes.fromhex(h)))
        for h in report.missing + report.wrong_size + report.corrupt
    ]
    adopt = []
    for hexd in report.orphans:
        sha = Sha256(bytes.fromhex(hexd))
        with store.backend.open(sha) as reader:
            adopt.append(AdoptBlob(sha, reader.size))
    if drop or adopt:
        store.commit([*drop, *adopt])
    store.index.recount()
    done.dropped, done.adopted = len(drop), len(adopt)
    return done


def _quarantine(store: Store, sha256: Sha256, quarantine: Path) -> bool:
    """Move a bad blob file aside (True; local backend) or delete it (False; others)."""
    source = store.backend.path_of(sha256)
    if source is None:
        store.backend.delete(sha256)
        return False
    quarantine.mkdir(exist_ok=True)
    if source.exists():
        os.replace(source, quarantine / sha256.hex())
    return True
