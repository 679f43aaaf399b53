"""The LMDB index: which blobs exist, in what order they came, and when.

This docstring is the canonical schema. Integers are fixed-width big-endian
(``struct`` ``>Q``), so LMDB's byte order is numeric order. A sha256 is its 32
raw digest bytes.

========== ================================ ===================================
named DB   key                              value
========== ================================ ===================================
blobs      sha256                           size u64, indx u64, added_ns u64
seqn       indx u64                         sha256, size u64, added_ns u64
history    added_ms u64, indx u64           sha256, size u64
hashsets   sha256                           md5 (16), sha1 (20), sha512 (64)
journal    sha256                           the blob's bytes (small blobs only)
meta       b"version", b"next_indx",        u64 each
           b"size:bytes", b"file:count"
sync       b"host"                          this store's host id (ascii)
           b"next"                          the next ``out`` seq u64
           b"out" + seq u64                 kind (b"a"/b"d"), sha256, size u64
           b"peer" + host id                last applied seq u64 of that host
========== ================================ ===================================

Invariants:

* ``blobs`` is the single source of truth for "the store has this blob". A row
  is written only after the blob's bytes are durable: in the backend, or, for
  small blobs, in ``journal`` in the same transaction.
* ``journal`` holds the bytes of small blobs whose backend file may not be on
  disk yet (see ``axonfs.store.store``: one synced commit makes a small blob
  durable; its file is synced later, in batches, and the row then dropped).
  Every ``journal`` key is also a ``blobs`` key.
* ``seqn`` and ``history`` are append-only and never pruned: deleting a blob
  removes its ``blobs`` (and ``hashsets``) row only. ``hashes()`` filters
  ``seqn`` against ``blobs``; ``history()`` shows every row, as the reference
  Axon does. A re-added blob gets a new ``indx``.
* ``blobs[sha].indx`` is the indx of the row that added the live copy; it is
  also the blob's stable inode number in the mount.
* ``history`` keys carry the indx after the millisecond, so rows added within
  one millisecond keep their added order (the reference orders them by value).
* ``size:bytes`` and ``file:count`` always equal the sums over ``blobs``.
* ``sync`` exists for stores that share a bucket with other hosts
  (``axonfs.hostsync``). An add or delete made here with ``IndexOp.publish``
  appends its ``out`` entry in the same transaction that changes ``blobs``, so
  a change is never committed without being queued for the other hosts;
  ``out`` seqs start at 1, grow by one and are never reused (``b"next"``).

Concurrency: every write transaction is one synchronous method, run in one
worker thread call by the single writer (``axonfs.store.committer``); no
transaction is ever held across an ``await``. Point reads (``get``,
``metrics``) are cheap enough (about 1.5 µs) to run inline on the trio thread,
which also makes them atomic between checkpoints; scans read a bounded batch
per transaction so callers can yield between batches. py-lmdb always opens
environments with ``MDB_NOTLS``, so read transactions may be used from any
thread.

Durability: the environment is opened with ``sync=True`` and
``metasync=True``; a commit returns once data and meta pages are on disk.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lmdb

from axonfs.errors import StoreCorrupt, StoreUnavailable
from axonfs.hashing import Sha256
from axonfs.store.commitlog import Change, CommitLog
from axonfs.store.pending import Frozen, Pending, ReadTxn, ReadView, StagingTxn, WriteTxn

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SCHEMA_VERSION = 1
FULL_DISK_SLACK = 4 << 20
"""Less free space than this when a commit fails means the disk is full."""
INITIAL_MAP_SIZE = 1 << 30
MAX_MAP_SIZE = 1 << 40

_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_BLOB_ROW = struct.Struct(">QQQ")  # size, indx, added_ns
_SEQN_ROW = struct.Struct(">32sQQ")  # sha256, size, added_ns
_HIST_KEY = struct.Struct(">QQ")  # added_ms, indx
_HIST_ROW = struct.Struct(">32sQ")  # sha256, size
_HASHSET_ROW = struct.Struct(">16s20s64s")  # md5, sha1, sha512

_META_VERSION = b"version"
_META_NEXT_INDX = b"next_indx"
_META_BYTES = b"size:bytes"
_META_COUNT = b"file:count"
_META_LOG_GENERATION = b"log:generation"
_SYNC_HOST = b"host"
_SYNC_NEXT = b"next"
_SYNC_OUT = b"out"
_SYNC_PEER = b"peer"
_OUT_ROW = struct.Struct(">c32sQ")  # kind, sha256, size


@dataclass(frozen=True, slots=True)
class IndexOp:
    """One change for :meth:`Index.apply`: add (sha256, size) or delete sha256.

    An add may carry *journal*, the blob's bytes, kept until the backend's copy
    is known to be durable.
    """

    sha256: Sha256
    size: int = 0
    delete: bool = False
    journal: bytes | None = None
    publish: bool = False
    """Queue the change for the other hosts sharing the bucket (if it changes anything)."""


@dataclass(frozen=True, slots=True)
class BlobRow:
    """What the index knows of one stored blob."""

    sha256: Sha256
    size: int
    indx: int
    added_ns: int


@dataclass(frozen=True, slots=True)
class SeqnRow:
    """One row of the append-only added-order sequence."""

    indx: int
    sha256: Sha256
    size: int
    added_ns: int


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One row of the by-time history."""

    tick_ms: int
    indx: int
    sha256: Sha256
    size: int


class Index:
    """The LMDB environment and its named databases."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        log_path: Path | None = None,
        deferred: bool = False,
    ) -> None:
        """Open (or create) the index at *path*.

        *readonly* opens an existing index without writing anything, not even
        LMDB's lock file: the caller holds the store lock, so no writer can
        come, and a read-only filesystem allows nothing else.

        *log_path* is the commit log (:mod:`axonfs.store.commitlog`): deferred
        commits a stopped process left there are replayed into the index (or,
        *readonly*, shown by it). *deferred* lets :meth:`apply` defer commits
        (``durable=False``); it needs *log_path*.

        Raises:
            StoreUnavailable: (*readonly*) there is no index at *path*.
        """
        self.path = path
        self.readonly = readonly
        if readonly:
            try:
                self.env = lmdb.open(
                    str(path), max_dbs=8, readonly=True, lock=False, readahead=False, create=False
                )
            except lmdb.Error as exc:
                raise StoreUnavailable(
                    f"no readable index in {path} ({exc}); 'axonfs recover' rebuilds a lost one",
                    path=str(path),
                ) from None
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(
                str(path),
                map_size=INITIAL_MAP_SIZE,
                max_dbs=8,
                sync=True,
                metasync=True,
                writemap=False,
                readahead=False,
                max_spare_txns=4,
            )
            self._grow_to_fit()
        self.blobs = self.env.open_db(b"blobs")
        self.seqn = self.env.open_db(b"seqn")
        self.history = self.env.open_db(b"history")
        self.hashsets = self.env.open_db(b"hashsets")
        self.journal = self.env.open_db(b"journal")
        self.meta = self.env.open_db(b"meta")
        self.sync = self._open_optional(b"sync")
        self._check_version()
        self._logged_dbs = (
            self.blobs,
            self.seqn,
            self.history,
            self.hashsets,
            self.journal,
            self.meta,
            self.sync,
        )
        """The named DBs a commit log record may change, by their number in it."""
        self._log_numbers = {id(db): number for number, db in enumerate(self._logged_dbs)}
        self._pending: Pending | None = None
        self._log: CommitLog | None = None
        self._durable_generation = 0
        """The commit log generation LMDB has (see :mod:`axonfs.store.commitlog`)."""
        self._write_lock = threading.Lock()
        """Held by each write transaction from its freeze of the deferred
        commits to their thaw, so that syncs and durable writes take turns."""
        self._defer_lock = threading.Lock()
        """Held by a deferred commit, and by a write transaction until it has
        written what it froze and its body (not during its sync). Without
        it, commits on the event loop would take the interpreter from the
        transaction's thread at every LMDB call, which gives it up: timed,
        the writes of one sync went from 10 ms to 100-140 ms."""
        self._writes = 0
        self._journal_cache: tuple[int, int, int] | None = None
        self.syncs = 0
        """Deferred commits made durable (by the interval's sync or a durable write)."""
        if log_path is not None:
            self._open_log(CommitLog(log_path), deferred)

    def _open_optional(self, name: bytes) -> lmdb._Database:
        """A DB that older indexes lack: created on a writable one, and on a
        read-only one the main DB stands in (it holds no key of this DB's forms)."""
        if not self.readonly:
            return self.env.open_db(name)
        try:
            return self.env.open_db(name, create=False)
        except lmdb.NotFoundError:
            return self.env.open_db(None)

    def close(self) -> None:
        try:
            if not self.readonly:
                self.sync_deferred()
        finally:
            if self._log is not None:
                self._log.close()
            self.env.close()

    # -- deferred commits (see axonfs.store.pending) ----------------------------

    def _open_log(self, commit_log: CommitLog, deferred: bool) -> None:
        generation = self._log_generation()
        records, last = commit_log.replay(generation)
        if self.readonly:
            if records:  # show what the log holds, writing nothing
                self._pending = Pending(counted=(self.journal,))
                self._stage_records(records)
            return
        if records:

            def replay(txn: lmdb.Transaction[bytes]) -> None:
                for record in records:
                    self._apply_record(txn, record)
                txn.put(_META_LOG_GENERATION, _U64.pack(last + 1), db=self.meta)

            self._write(replay)
            generation = last + 1
            log.info("replayed %d commits from the commit log of an unclean stop", len(records))
        self._durable_generation = generation
        if deferred:
            self._log = commit_log
            self._pending = Pending(counted=(self.journal,))
            commit_log.start(generation)
        elif any(path.exists() for path in commit_log.paths):
            commit_log.start(generation)  # nothing of it is left to replay
            commit_log.close()

    def _stage_records(self, records: list[list[Change]]) -> None:
        assert self._pending is not None
        with self.env.begin() as base:
            for record in records:
                staged = StagingTxn(base, self._pending, None)
                self._apply_record(staged, record)
                self._pending.merge(
                    staged, sum(len(key) + len(value or b"") for _, key, value in record)
                )

    def _apply_record(self, txn: WriteTxn, record: list[Change]) -> None:
        """Apply one commit log record's changes to *txn*."""
        for db, key, value in record:
            if value is None:
                txn.delete(key, db=self._logged_dbs[db])
            else:
                txn.put(key, value, db=self._logged_dbs[db])

    def _log_generation(self) -> int:
        with self.env.begin(db=self.meta) as txn:
            raw = txn.get(_META_LOG_GENERATION)
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def _read(self, db: lmdb._Database | None = None) -> AbstractContextManager[ReadTxn]:
        """A read transaction; with deferred commits, one that shows them."""
        if self._pending is None:
            return self.env.begin(db=db)
        return _View(self, db)

    def _defer(self, body: Callable[[StagingTxn], _T]) -> _T:
        """Run *body* as a deferred commit: logged, visible, not yet durable."""
        assert self._pending is not None and self._log is not None
        # One piece: a sync's freeze must find every commit both in the layer
        # and in the log it freezes, or in neither.
        with self._defer_lock, self._pending.lock:
            with self.env.begin() as base:
                staged = StagingTxn(base, self._pending, None)
                result = body(staged)
            try:
                size = self._log.append(
                    [
                        (self._log_numbers[id(db)], key, value)
                        for db, changes in staged.changes.items()
                        for key, value in changes.items()
                    ]
                )
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write the commit log: {exc.strerror}") from exc
            self._pending.merge(staged, size)
        return result

    @property
    def defers(self) -> bool:
        """True if :meth:`apply` can defer commits (the index was opened *deferred*)."""
        return self._log is not None

    def deferred(self) -> int:
        """How many deferred commits are not durable yet."""
        return self._pending.commits if self._pending is not None else 0

    def deferred_bytes(self) -> int:
        """Memory the deferred commits take (their keys and values)."""
        return self._pending.bytes if self._pending is not None else 0

    def sync_deferred(self) -> None:
        """Make every deferred commit durable now (one synced transaction).

        Deferred commits made meanwhile, from other threads, go on: they are
        durable at the next sync.
        """
        if self._pending:
            self._write(lambda txn: None)

    # -- point reads (inline on the trio thread) --------------------------------

    def get(self, sha256: Sha256) -> BlobRow | None:
        """Return the live row of *sha256*, or None."""
        with self._read(db=self.blobs) as txn:
            raw = txn.get(sha256)
            if raw is None:
                return None
            size, indx, added_ns = _BLOB_ROW.unpack(raw)
        return BlobRow(sha256, size, indx, added_ns)

    def has(self, sha256: Sha256) -> bool:
        with self._read(db=self.blobs) as txn:
            return txn.get(sha256) is not None

    def metrics(self) -> dict[str, int]:
        """Return exactly ``{"size:bytes": int, "file:count": int}``."""
        with self._read(db=self.meta) as txn:
            return {
                "size:bytes": _read_i64(txn, _META_BYTES, self.meta),
                "file:count": _read_i64(txn, _META_COUNT, self.meta),
            }

    def next_indx(self) -> int:
        with self._read(db=self.meta) as txn:
            return _read_i64(txn, _META_NEXT_INDX, self.meta)

    def get_hashset(self, sha256: Sha256) -> dict[str, bytes] | None:
        with self._read(db=self.hashsets) as txn:
            raw = txn.get(sha256)
        if raw is None:
            return None
        md5, sha1, sha512 = _HASHSET_ROW.unpack(raw)
        return {"md5": md5, "sha1": sha1, "sha256": bytes(sha256), "sha512": sha512}

    # -- bounded scans ------------------------------------------------------------

    def seqn_batch(self, start: int, limit: int) -> list[tuple[SeqnRow, bool]]:
        """Return up to *limit* sequence rows from indx *start*, each with
        whether it is the live row of its blob (not deleted, not superseded)."""
        rows: list[tuple[SeqnRow, bool]] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.seqn)
            if not cursor.set_range(_U64.pack(start)):
                return rows
            for key, raw in cursor:
                indx = _U64.unpack(key)[0]
                sha, size, added_ns = _SEQN_ROW.unpack(raw)
                live = txn.get(sha, db=self.blobs)
                is_live = live is not None and _BLOB_ROW.unpack(live)[1] == indx
                rows.append((SeqnRow(indx, Sha256(sha), size, added_ns), is_live))
                if len(rows) >= limit:
                    break
        return rows

    def present_batch(self, start: int, limit: int) -> tuple[list[SeqnRow], int]:
        """Sequence rows from *start* whose blob is present now (``hashes()``).

        Scans at most *limit* rows; returns them and the indx to continue from.
        """
        rows: list[SeqnRow] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.seqn)
            if not cursor.set_range(_U64.pack(start)):
                return rows, start
            for scanned, (key, raw) in enumerate(cursor, 1):
                start = _U64.unpack(key)[0] + 1
                sha, size, added_ns = _SEQN_ROW.unpack(raw)
                if txn.get(sha, db=self.blobs) is not None:
                    rows.append(SeqnRow(start - 1, Sha256(sha), size, added_ns))
                if scanned >= limit:
                    break
        return rows, start

    def history_batch(
        self, start_key: tuple[int, int], tock_ms: int | None, limit: int
    ) -> list[HistoryRow]:
        """History rows with key >= *start_key* and added_ms <= *tock_ms*."""
        rows: list[HistoryRow] = []
        with self._read(db=self.history) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(_HIST_KEY.pack(*start_key)):
                return rows
            for key, raw in cursor:
                tick, indx = _HIST_KEY.unpack(key)
                if tock_ms is not None and tick > tock_ms:
                    break
                sha, size = _HIST_ROW.unpack(raw)
                rows.append(HistoryRow(tick, indx, Sha256(sha), size))
                if len(rows) >= limit:
                    break
        return rows

    def blobs_batch(self, after: bytes, limit: int) -> list[BlobRow]:
        """Live blobs in sha256 order, strictly after *after* (b"" to start)."""
        rows: list[BlobRow] = []
        with self._read(db=self.blobs) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(after):
                return rows
            for key, raw in cursor:
                if key == after:
                    continue
                size, indx, added_ns = _BLOB_ROW.unpack(raw)
                rows.append(BlobRow(Sha256(key), size, indx, added_ns))
                if len(rows) >= limit:
                    break
        return rows

    # -- writes (one transaction per call, run by the single writer thread) ----

    def apply(
        self, ops: Sequence[IndexOp], now_ns: int, durable: bool = True
    ) -> list[BlobRow | bool]:
        """Apply adds and deletes, in order, in one transaction.

        Adding a sha that is present is a no-op that returns the existing row;
        deleting an absent sha returns False. With ``durable=False`` (on an
        index opened *deferred*) the transaction is deferred: visible when
        this returns, durable at the next :meth:`sync_deferred` or durable write.

        Returns:
            Per op: the blob's row for an add, whether it was present for a delete.
        """
        if not durable and self._pending is not None:
            return self._defer(lambda txn: self._apply_txn(txn, ops, now_ns))
        return self._write(lambda txn: self._apply_txn(txn, ops, now_ns))

    def put_hashset(self, sha256: Sha256, digests: dict[str, bytes]) -> None:
        row = _HASHSET_ROW.pack(digests["md5"], digests["sha1"], digests["sha512"])

        def put(txn: lmdb.Transaction[bytes]) -> None:
            if txn.get(sha256, db=self.blobs) is not None:
                txn.put(sha256, row, db=self.hashsets)

        self._write(put)

    def recount(self) -> dict[str, int]:
        """Recompute the counters from ``blobs`` (fsck). Returns the new values."""

        def count(txn: lmdb.Transaction[bytes]) -> dict[str, int]:
            total = files = 0
            for _, raw in txn.cursor(db=self.blobs):
                total += _BLOB_ROW.unpack(raw)[0]
                files += 1
            txn.put(_META_BYTES, _I64.pack(total), db=self.meta)
            txn.put(_META_COUNT, _I64.pack(files), db=self.meta)
            return {"size:bytes": total, "file:count": files}

        return self._write(count)

    def journal_batch(
        self, limit: int, after: bytes = b"", max_bytes: int | None = None, durable: bool = False
    ) -> list[tuple[Sha256, bytes]]:
        """Up to *limit* journaled blobs (and about *max_bytes* of them, at
        least one) with their bytes, in sha256 order after *after*; *durable*:
        only those whose row is durable (not a deferred commit's), and not
        dropped by a deferred commit."""
        rows: list[tuple[Sha256, bytes]] = []
        total = 0
        # A drop deferred after this look is harmless: that row is spilled again.
        dropped = self._pending.deleted(self.journal) if durable and self._pending else set()
        with self.env.begin(db=self.journal) if durable else self._read(db=self.journal) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(after):
                return rows
            for key, value in cursor:
                if key == after or key in dropped:
                    continue
                rows.append((Sha256(key), value))
                total += len(value)
                if len(rows) >= limit or (max_bytes is not None and total >= max_bytes):
                    break
        return rows

    def journal_get(self, sha256: Sha256) -> bytes | None:
        with self._read(db=self.journal) as txn:
            value: bytes | None = txn.get(sha256)
        return value

    def journal_entries(self) -> int:
        entries, _ = self._journal_stat()
        return entries + (self._pending.entries_delta(self.journal) if self._pending else 0)

    def journal_bytes(self) -> int:
        """The pages the journal takes, in bytes (its blobs' sizes, roughly)."""
        deferred = self._pending.bytes_delta(self.journal) if self._pending else 0
        return max(0, self._journal_stat()[1] + deferred)

    def _journal_stat(self) -> tuple[int, int]:
        """LMDB's journal entries and bytes, read once per write: asked after
        every commit, and it changes only with one."""
        cached = self._journal_cache
        if cached is not None and cached[0] == self._writes:
            return cached[1], cached[2]
        writes = self._writes
        with self.env.begin() as txn:
            stat = txn.stat(self.journal)
        pages = stat["leaf_pages"] + stat["overflow_pages"] + stat["branch_pages"]
        self._journal_cache = (writes, stat["entries"], pages * stat["psize"])
        return stat["entries"], pages * stat["psize"]

    def drop_journal(self, shas: Sequence[Sha256], durable: bool = True) -> None:
        """Forget journaled bytes whose backend copy is now durable; with
        ``durable=False`` (on an index opened *deferred*), as a deferred commit."""

        def drop(txn: WriteTxn) -> None:
            for sha in shas:
                txn.delete(sha, db=self.journal)

        if not durable and self._pending is not None:
            self._defer(drop)
        else:
            self._write(drop)

    def _apply_txn(
        self, txn: WriteTxn, ops: Sequence[IndexOp], now_ns: int
    ) -> list[BlobRow | bool]:
        counters = _Counters.read(txn, self.meta)
        added_ms = now_ns // 1_000_000
        results: list[BlobRow | bool] = []
        outbox = _Outbox(txn, self.sync)
        for op in ops:
            raw = txn.get(op.sha256, db=self.blobs)
            if op.delete:
                if raw is not None:
                    txn.delete(op.sha256, db=self.blobs)
                    txn.delete(op.sha256, db=self.hashsets)
                    txn.delete(op.sha256, db=self.journal)
                    size = _BLOB_ROW.unpack(raw)[0]
                    counters.remove(size)
                    if op.publish:
                        outbox.append(b"d", op.sha256, size)
                results.append(raw is not None)
            elif raw is not None:
                size, indx, added_ns = _BLOB_ROW.unpack(raw)
                results.append(BlobRow(op.sha256, size, indx, added_ns))
            else:
                indx = counters.add(op.size)
                txn.put(_U64.pack(indx), _SEQN_ROW.pack(op.sha256, op.size, now_ns), db=self.seqn)
                txn.put(
                    _HIST_KEY.pack(added_ms, indx),
                    _HIST_ROW.pack(op.sha256, op.size),
                    db=self.history,
                )
                txn.put(op.sha256, _BLOB_ROW.pack(op.size, indx, now_ns), db=self.blobs)
                if op.journal is not None:
                    txn.put(op.sha256, op.journal, db=self.journal)
                if op.publish:
                    outbox.append(b"a", op.sha256, op.size)
                results.append(BlobRow(op.sha256, op.size, indx, now_ns))
        counters.write(txn, self.meta)
        outbox.close()
        return results

    # -- the changes shared with other hosts (the ``sync`` DB) -------------------

    def known_host_id(self) -> str | None:
        """This store's host id, or None if it never shared a bucket."""
        with self._read(db=self.sync) as txn:
            raw = txn.get(_SYNC_HOST)
        return None if raw is None else bytes(raw).decode("ascii")

    def host_id(self, new: Callable[[], str]) -> str:
        """This store's host id, made by *new* (and kept) the first time."""
        if (known := self.known_host_id()) is not None:
            return known
        made = new()

        def keep(txn: lmdb.Transaction[bytes]) -> str:
            raw = txn.get(_SYNC_HOST, db=self.sync)
            if raw is not None:
                return bytes(raw).decode("ascii")
            txn.put(_SYNC_HOST, made.encode("ascii"), db=self.sync)
            return made

        return self._write(keep)

    def outbox_batch(self, limit: int) -> list[tuple[int, bytes, Sha256, int]]:
        """The oldest *limit* queued changes: ``(seq, kind, sha256, size)``."""
        found: list[tuple[int, bytes, Sha256, int]] = []
        with self._read(db=self.sync) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(_SYNC_OUT):
                return found
            for key, value in cursor:
                if not key.startswith(_SYNC_OUT) or len(found) >= limit:
                    break
                kind, sha, size = _OUT_ROW.unpack(value)
                found.append((_U64.unpack(key[len(_SYNC_OUT) :])[0], kind, Sha256(sha), size))
        return found

    def next_out(self, durable: bool = False) -> int:
        """The seq the next queued change will get (1 if none was ever queued);
        *durable*: as of the last durable commit, deferred commits left out."""
        with self.env.begin(db=self.sync) if durable else self._read(db=self.sync) as txn:
            raw = txn.get(_SYNC_NEXT)
        return 1 if raw is None else int(_U64.unpack(raw)[0])

    def outbox_drop(self, upto: int) -> None:
        """Forget the queued changes up to seq *upto* (published now)."""

        def drop(txn: lmdb.Transaction[bytes]) -> None:
            cursor = txn.cursor(db=self.sync)
            if not cursor.set_range(_SYNC_OUT):
                return
            while True:
                key = bytes(cursor.key())
                if not key.startswith(_SYNC_OUT) or _U64.unpack(key[len(_SYNC_OUT) :])[0] > upto:
                    return
                if not cursor.delete():  # deleting moves to the next key; False at the end
                    return

        self._write(drop)

    def cursors(self) -> dict[str, int]:
        """The last seq applied of every peer host."""
        found: dict[str, int] = {}
        with self._read(db=self.sync) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(_SYNC_PEER):
                return found
            for key, value in cursor:
                if not key.startswith(_SYNC_PEER):
                    break
                found[key[len(_SYNC_PEER) :].decode("ascii")] = _U64.unpack(value)[0]
        return found

    def set_cursors(self, cursors: dict[str, int]) -> None:
        def put(txn: lmdb.Transaction[bytes]) -> None:
            for host, seq in cursors.items():
                txn.put(_SYNC_PEER + host.encode("ascii"), _U64.pack(seq), db=self.sync)

        self._write(put)

    def _write(self, body: Callable[[lmdb.Transaction[bytes]], _T]) -> _T:
        """Run *body(txn)* in one write transaction, growing the map when full.

        The transaction first makes the deferred commits durable: those made
        before it began, which *body* sees. Deferred commits wait while the
        transaction is written, and go on during its sync (:meth:`busy`).
        """
        with self._write_lock:
            while True:
                try:
                    # The lock is let go before the transaction commits (and syncs).
                    with self.env.begin(write=True) as txn, self._defer_lock:
                        frozen = self._freeze_into(txn)
                        result = body(txn)
                    break
                except lmdb.MapFullError:
                    self._grow(self.env.info()["map_size"] * 2)
                except lmdb.DiskError as exc:  # LMDB's ENOSPC: the disk is full, not a bug
                    raise OSError(
                        errno.ENOSPC,
                        f"the index cannot grow ({exc.args[0]}): {os.strerror(errno.ENOSPC)}",
                    ) from exc
                except lmdb.Error as exc:
                    # A failed commit leaves the index as it was (LMDB aborts the
                    # transaction). On a full disk LMDB may report the failed page
                    # write as EIO; say ENOSPC then, which is what the writer can act on.
                    raise self._io_error(exc) from exc
            self._writes += 1
            if frozen is not None:
                self._thaw(frozen)
            return result

    def busy(self) -> bool:
        """True while a write transaction takes in the deferred commits: a
        deferred commit made now would wait for it."""
        return self._defer_lock.locked()

    def _freeze_into(self, txn: lmdb.Transaction[bytes]) -> _Freeze | None:
        """Write the deferred commits into *txn*, which makes them durable,
        and move the log on so that new ones go to the next generation's;
        return what was frozen (None: there was nothing)."""
        pending, commit_log = self._pending, self._log
        if pending is None or commit_log is None:
            return None
        with pending.lock:
            if not pending:
                return None
            generation = commit_log.generation
            if generation == self._durable_generation:
                try:
                    commit_log.start(generation + 1, follows=True)
                    generation += 1
                except OSError as exc:
                    # The transaction keeps this generation: replaying its log
                    # onto an index that has the records already is harmless.
                    log.warning("cannot begin the next commit log: %s", exc)
            # Otherwise an earlier transaction moved the log on and then failed
            # (or this is its retry with a bigger map): its records are still
            # in the layer, and the log's generation follows on from the index's.
            frozen = _Freeze(pending.freeze(), generation)
        # Readers go on meanwhile: only a thaw changes the layer under them.
        frozen.layer.write_to(txn)
        txn.put(_META_LOG_GENERATION, _U64.pack(generation), db=self.meta)
        return frozen

    def _thaw(self, frozen: _Freeze) -> None:
        """The transaction that wrote *frozen* is durable."""
        assert self._pending is not None
        self._pending.thaw(frozen.layer)
        self._durable_generation = frozen.generation
        self.syncs += 1

    def _io_error(self, exc: lmdb.Error) -> OSError:
        full = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize < FULL_DISK_SLACK
        code = errno.ENOSPC if full else errno.EIO
        log.warning(
            "an index commit failed (%s); %s",
            exc,
            "the disk is full" if full else "nothing was committed",
        )
        return OSError(code, f"the index commit failed ({exc}): {os.strerror(code)}")

    def _grow(self, new_size: int) -> None:
        if new_size > MAX_MAP_SIZE:
            raise StoreCorrupt(f"index map would exceed {MAX_MAP_SIZE} bytes", path=str(self.path))
        log.info("growing the index map to %d MiB", new_size >> 20)
        self.env.set_mapsize(new_size)

    def _grow_to_fit(self) -> None:
        """Keep at least half the map free after open, so big batches fit."""
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        if used * 2 > info["map_size"]:
            self._grow(max(info["map_size"] * 2, used * 2))

    def _check_version(self) -> None:
        with self.env.begin(db=self.meta, write=not self.readonly) as txn:
            raw = txn.get(_META_VERSION)
            if raw is None:
                if self.readonly:
                    return
                txn.put(_META_VERSION, _U64.pack(SCHEMA_VERSION))
                return
            version = _U64.unpack(raw)[0]
        if version != SCHEMA_VERSION:
            raise StoreCorrupt(
                f"index schema version {version} is not {SCHEMA_VERSION}; "
                "this axonfs cannot open it",
                path=str(self.path),
            )


@dataclass(slots=True)
class _Counters:
    """The meta counters, read at the start of a write and written at its end."""

    size_bytes: int
    file_count: int
    next_indx: int

    @classmethod
    def read(cls, txn: ReadTxn, meta: lmdb._Database) -> _Counters:
        keys = (_META_BYTES, _META_COUNT, _META_NEXT_INDX)
        return cls(*(_read_i64(txn, key, meta) for key in keys))

    def add(self, size: int) -> int:
        """Count one new blob and return its indx."""
        self.size_bytes += size
        self.file_count += 1
        self.next_indx += 1
        return self.next_indx - 1

    def remove(self, size: int) -> None:
        self.size_bytes -= size
        self.file_count -= 1

    def write(self, txn: WriteTxn, meta: lmdb._Database) -> None:
        for key, value in (
            (_META_BYTES, self.size_bytes),
            (_META_COUNT, self.file_count),
            (_META_NEXT_INDX, self.next_indx),
        ):
            txn.put(key, _I64.pack(value), db=meta)


class _Outbox:
    """Appends queued changes within one write transaction."""

    def __init__(self, txn: WriteTxn, db: lmdb._Database) -> None:
        self.txn = txn
        self.db = db
        self.next: int | None = None

    def append(self, kind: bytes, sha256: Sha256, size: int) -> None:
        if self.next is None:
            self.next = self._first_free()
        self.txn.put(
            _SYNC_OUT + _U64.pack(self.next), _OUT_ROW.pack(kind, sha256, size), db=self.db
        )
        self.next += 1

    def close(self) -> None:
        if self.next is not None:
            self.txn.put(_SYNC_NEXT, _U64.pack(self.next), db=self.db)

    def _first_free(self) -> int:
        raw = self.txn.get(_SYNC_NEXT, db=self.db)
        return 1 if raw is None else int(_U64.unpack(raw)[0])


def _read_i64(txn: ReadTxn, key: bytes, db: lmdb._Database) -> int:
    raw = txn.get(key, db=db)
    return 0 if raw is None else int(_I64.unpack(raw)[0])


@dataclass(frozen=True, slots=True)
class _Freeze:
    """Deferred commits a write transaction makes durable, and the commit log
    generation the index has once it has (see :meth:`Index._freeze`)."""

    layer: Frozen
    generation: int


class _View:
    """A read transaction over LMDB and the deferred commits (see
    :mod:`axonfs.store.pending`), as a context manager."""

    __slots__ = ("_index", "_db", "_txn")

    def __init__(self, index: Index, db: lmdb._Database | None) -> None:
        self._index = index
        self._db = db

    def __enter__(self) -> ReadView:
        pending = self._index._pending
        assert pending is not None
        pending.lock.acquire()
        try:
            self._txn = self._index.env.begin(db=self._db)
        except BaseException:
            pending.lock.release()
            raise
        return ReadView(self._txn, pending, self._db)

    def __exit__(self, *exc: object) -> None:
        pending = self._index._pending
        assert pending is not None
        try:
            self._txn.abort()
        finally:
            pending.lock.release()
