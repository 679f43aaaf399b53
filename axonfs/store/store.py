"""The synchronous core of a store directory: lock, index, backend, spools.

Layout of a store directory::

    <store>/
      axonfs.lock        flock held by the one process that has the store open
      index.lmdb/        the LMDB index (see axonfs.store.index)
      blobs/ab/<hex>     the local backend's blob files (when it is the backend)
      tmp/               spool files; swept when the store opens
      commit.intent      not empty only while a commit moves bytes (axonfs.store.intent)
      commit.log         with a sync interval, commits not yet durable in the index,
      commit.1.log         for a killed daemon's restart (axonfs.store.commitlog)
      reserve            space held back so that deletes work on a full disk

:meth:`Store.commit` is the one place blobs become visible. It runs a batch of
adds and deletes in this order, which is what makes a crash at any instant
harmless:

1. each new blob's spool file is handed to the backend (a rename, or an S3
   upload);
2. ``backend.flush()`` makes every one of them durable (for local files:
   the fsync of each directory a rename touched);
3. one index transaction adds and removes the rows, and is synced;
4. only then are deleted blobs' bytes removed from the backend.

A crash before 3 would leave blob files the index lacks, and a crash after 3
bytes of deleted blobs; so before 1 the batch's adds and deletes are written to
``commit.intent``, and opening the store finishes whatever a crash interrupted
(:mod:`axonfs.store.intent`). The index never names a blob whose bytes are not
durable, and after a crash the store is as a prefix of the calls left it.

A full disk must not stop the one thing that frees space: deleting. A delete
commit writes ``commit.intent`` and may grow the LMDB file, and both need
free blocks; so the store keeps ``reserve``, a preallocated file of
:data:`RESERVE_SIZE`, and a delete commit that finds the disk (nearly) full
removes it first and allocates it again afterwards, from what the delete
freed. A writer racing for the blocks in between could take them; nothing
else in the store writes while the commit lock is held.

Everything here blocks: the async :class:`~axonfs.axon.Axon` calls it from a
worker thread, one commit at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from axonfs.backends.base import BlobBackend, BlobReader, BlobStream, BytesReader
from axonfs.backends.local import LocalBackend
from axonfs.errors import (
    AxonError,
    BackendError,
    BlobMissing,
    HitLimit,
    StoreUnavailable,
    store_unavailable,
)
from axonfs.fsutil import fsync_path
from axonfs.hashing import Sha256
from axonfs.store import intent, spool
from axonfs.store.commitlog import LOG_NAME
from axonfs.store.index import BlobRow, Index, IndexOp
from axonfs.store.lock import LOCK_NAME, StoreLock

log = logging.getLogger(__name__)


JOURNAL_MAX = 128 << 10
"""Blobs up to this size are made durable by the index commit alone: their
bytes ride in the same synced LMDB transaction as their row. One synced
commit per batch, instead of a file create, an fdatasync and directory
fsyncs per blob, is what makes small-blob ingest fast; see the ``journal`` DB
in axonfs.store.index. Their files are written later, in batches, by
:meth:`Store.spill_step` (the Axon runs it in the background)."""
JOURNAL_SPILL_START = 8192
"""The Axon spills in the background once this many small blobs are journaled
(or as soon as ingest pauses). Writing files costs several times what the
index commit does, so a burst of small puts runs at index speed and their
files follow when things are quiet."""
JOURNAL_SPILL_COUNT = 16384
JOURNAL_SPILL_BYTES = 32 << 20
"""Back-pressure: past this many journaled blobs (or bytes of them), the
commit that crossed the line spills the whole journal before it returns, so
the journal stays bounded when ingest outruns the background spill."""
DEFER_MAX_OPS = 16
"""The most ops a commit may hold and still be deferred (see :meth:`Store._deferrable`)."""
DEFERRED_MAX_COMMITS = 4096
DEFERRED_MAX_BYTES = 16 << 20
"""With a sync interval, a deferred commit that leaves more than this many
deferred commits (or bytes of them) syncs them all at once: the memory they
hold stays bounded when ingest outruns the interval."""
RESERVE_NAME = "reserve"
RESERVE_SIZE = 4 << 20
"""Space held for delete commits. Measured on a full tmpfs, a delete commit
needs one block for ``commit.intent``; an index whose free pages are used up
grows by a few pages per commit (copy-on-write of the B-tree paths it touches,
a handful of 4 KiB pages per named DB). 4 MiB covers hundreds of those."""
RESERVE_MIN = 64 << 10
"""The smallest reserve worth keeping when the disk cannot give the whole one."""
PLACE_BATCH = 64
"""Spilled files renamed into place per hold of the commit lock: a commit
waits for at most this many renames (~1 ms) of a spill step's."""
JOURNAL_BATCH = 1024
JOURNAL_BATCH_BYTES = 8 << 20
"""Journaled blobs (and bytes of them) read, written and synced per spill step:
the memory bound of a spill. Each step ends with one syncfs and one index
commit, so bigger steps cost less per blob."""


STORE_MARKERS = (LOCK_NAME, "index.lmdb", "blobs")
"""Names of which a store directory has at least one: every open creates the
lock, and a store that lost its index still has its lock (and local blobs)."""


def is_store(root: Path) -> bool:
    """True if *root* is a store directory (not a typo's empty or foreign one)."""
    return any(os.path.lexists(root / name) for name in STORE_MARKERS)


@dataclass(frozen=True, slots=True)
class Limits:
    """The reference Axon's ``max:bytes`` and ``max:count`` (None: no limit)."""

    max_bytes: int | None = None
    max_count: int | None = None


@dataclass(slots=True)
class AddBlob:
    """Commit a blob whose content hashes to *sha256*: the spool file at
    *path*, or (small blobs from memory) the bytes *data*."""

    sha256: Sha256
    size: int
    path: Path | None = None
    data: bytes | None = None

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class AdoptBlob:
    """Index a blob the backend already holds (recover); no bytes move."""

    sha256: Sha256
    size: int


@dataclass(slots=True)
class DeleteBlob:
    sha256: Sha256


@dataclass(slots=True)
class ForgetBlob:
    """Drop the row *indx* of a blob whose bytes another host deleted; the
    backend is not touched. A row re-added since (another indx) stays: its
    bytes were uploaded again after the check that they were gone."""

    sha256: Sha256
    indx: int


CommitOp = AddBlob | AdoptBlob | DeleteBlob | ForgetBlob
CommitResult = BlobRow | bool | AxonError


@dataclass(slots=True)
class _Slot:
    """One op of a batch on its way through :meth:`Store._commit`."""

    op: CommitOp
    index_op: IndexOp | None = None
    """Its index half, once staged."""
    upload: bool = False
    """The backend takes its bytes in this commit (a new blob that is not journaled)."""
    result: CommitResult | None = None
    """Known as soon as the op fails, else once the index has applied it."""


class Store:
    """An open store directory. Only one process may have it open."""

    def __init__(
        self,
        root: Path,
        backend: BlobBackend | None = None,
        limits: Limits | None = None,
        *,
        readonly: bool = False,
        deferred: bool = False,
    ) -> None:
        """Open the store at *root*, creating it unless *readonly*.

        *readonly* writes nothing (for checks, and stores on read-only
        filesystems): it settles no interrupted commit, sweeps no spool and
        refuses :meth:`commit`.

        *deferred* lets commits of small blobs return before they are durable
        (the sync interval): see :meth:`commit`; :meth:`sync` makes them durable.
        Only a backend that journals small blobs in the index has such commits
        (the local one): elsewhere every blob's bytes move at its commit anyway.

        Raises:
            StoreLocked: another process has the store open.
            StoreUnavailable: the directory cannot be created, written or read.
        """
        self.root = root
        self.readonly = readonly
        try:
            if not readonly:
                root.mkdir(parents=True, exist_ok=True)
            self.lock = StoreLock(root, readonly=readonly)
        except OSError as exc:
            raise store_unavailable(root, exc, "open" if readonly else "create") from None
        # _commit_lock orders commits against each other and against the
        # spiller's renames and journal drops (commit_in_memory says when an
        # add may do without it); _spill_lock keeps spill steps one at a time.
        self._commit_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self.limits = limits if limits is not None else Limits()
        self.publish_changes = False
        """Queue this store's adds and deletes for the hosts sharing its bucket
        (set by ``axonfs.hostsync`` before the first commit)."""
        self.tmp = root / "tmp"
        self.intent_path = root / intent.INTENT_NAME
        self.reserve_path = root / RESERVE_NAME
        if readonly:
            try:
                self.index = Index(root / "index.lmdb", readonly=True, log_path=root / LOG_NAME)
                self.backend = backend if backend is not None else LocalBackend(root / "blobs")
            except BaseException:
                self.lock.release()
                raise
            self._unsettled = True
            return
        try:
            self.tmp.mkdir(exist_ok=True)
            spool.sweep(self.tmp)
            self.backend = backend if backend is not None else LocalBackend(root / "blobs")
            defers = self.backend.deferred_sync or self.backend.durable_off_machine
            if deferred and not defers:
                log.info(
                    "the sync interval does not apply to this backend: every call is "
                    "durable when it returns"
                )
            self.index = Index(
                root / "index.lmdb", log_path=root / LOG_NAME, deferred=deferred and defers
            )
            _sync_layout(root)
            # A store that has published changes before queues the blobs the
            # settling below indexes, as the interrupted commit would have.
            self.publish_changes = self.index.known_host_id() is not None
            self._settle_journal()
            self._reserve()
            self._unsettled = True
            try:
                self._settle_intent()
            except BackendError as exc:  # e.g. the bucket is unreachable: reads may still work
                log.warning(
                    "cannot finish an interrupted commit yet (%s); "
                    "will retry before the next commit",
                    exc,
                )
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        if self.backend.deferred_sync and not self.readonly:
            try:
                self.spill_journal()  # a clean stop leaves no journal behind
            except (AxonError, OSError) as exc:
                log.warning(
                    "could not sync journaled small blobs at close (%s); "
                    "they are safe in the index and will be synced at next open",
                    exc,
                )
        self.backend.close()
        self.index.close()
        self.lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new_spool(self, direct: bool = False, memory_max: int = 0) -> spool.Spool:
        """A new spool: *direct* for writers that mostly append, *memory_max* for
        writers of mostly small files (see axonfs.store.spool)."""
        return spool.Spool(self.tmp, direct=direct, memory_max=memory_max)

    def commit(self, ops: Sequence[CommitOp]) -> list[CommitResult]:
        """Apply a batch of adds and deletes durably, in order.

        Per-op failures (a limit, a backend error) come back as the exception
        in that op's slot; an index failure raises for the whole batch.

        On a store opened *deferred*, a batch of nothing but small blobs
        (journaled: their bytes ride in the index), or of adds to a backend
        that keeps their bytes off this machine, is a deferred index commit:
        visible when this returns, and durable at the next :meth:`sync`.
        Every other batch is durable when this returns, and makes every
        deferred commit before it durable too, so a power cut leaves the index
        as a prefix of the calls.
        """
        if self.readonly:
            raise StoreUnavailable(f"the store {self.root} was opened read-only", errno=errno.EROFS)
        with self._commit_lock:
            released = self._release_reserve(ops)
            try:
                results = self._commit_with_intent(ops)
            finally:
                if released:
                    self._reserve()
        if self._deferred_full():
            self.index.sync_deferred()
        try:
            self._spill_if_due()
        except (AxonError, OSError) as exc:  # the batch is committed (journaled): say so
            log.warning(
                "cannot write journaled small blobs to their files yet (%s); "
                "they are durable in the index",
                exc,
            )
        return results

    def _release_reserve(self, ops: Sequence[CommitOp]) -> bool:
        """Free the reserve for a batch with deletes if the disk is (nearly) full."""
        if not any(isinstance(op, DeleteBlob) for op in ops):
            return False
        try:
            st = os.statvfs(self.root)
            if st.f_bavail * st.f_frsize >= RESERVE_SIZE:
                return False
            self.reserve_path.unlink()
        except FileNotFoundError:
            return True  # none to free (the disk was full when it was due): try again after
        except OSError as exc:
            log.warning("cannot free the delete reserve: %s", exc)
            return False
        log.info("the disk is full: a delete uses the store's reserve")
        return True

    def _reserve(self) -> None:
        """Allocate the reserve file (as much of it as the disk gives, down to
        :data:`RESERVE_MIN`); a disk too full for it is only warned about."""
        size = RESERVE_SIZE
        try:
            # O_RDWR: where the filesystem cannot allocate (FUSE), glibc emulates
            # posix_fallocate by reading each block and writing the holes.
            fd = os.open(self.reserve_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("cannot create the delete reserve %s: %s", self.reserve_path, exc)
            return
        try:
            while size >= RESERVE_MIN:
                try:
                    os.posix_fallocate(fd, 0, size)
                    return
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        log.warning("cannot allocate the delete reserve: %s", exc)
                        return
                    size //= 2
            log.warning("the disk is full: no space is reserved for deletes until some is freed")
        finally:
            os.close(fd)

    def _commit_with_intent(self, ops: Sequence[CommitOp]) -> list[CommitResult]:
        # Journaled adds need no intent: their bytes are in the index commit,
        # and their file is written only later by a spill.
        moves = [
            (op.sha256, isinstance(op, AddBlob))
            for op in ops
            if isinstance(op, DeleteBlob) or (isinstance(op, AddBlob) and not self._journals(op))
        ]
        if not moves:
            return self._commit(ops)
        if self._unsettled:  # an intent is left over: settle it before replacing it
            self._settle_intent()
        # A deferred commit's intent need not be synced: it guards the bytes
        # against a crash of this process, which leaves the page cache; a
        # power cut may lose the intent together with the deferred index rows,
        # and the bytes (off this machine) are then for ``recover`` to find.
        intent.write(self.intent_path, moves, sync=not self._deferrable(ops))
        try:
            results = self._commit(ops)
        except BaseException:
            self._unsettled = True
            raise
        if any(isinstance(result, BackendError) for result in results):
            # A failed upload may still have reached the backend (an S3 PUT whose reply
            # was lost): keep the intent, so the next commit (or open) settles those bytes.
            self._unsettled = True
        else:
            # Emptied durably if it held deletes: see axonfs.store.intent.
            intent.clear(self.intent_path, sync=not all(add for _, add in moves))
        return results

    def _settle_intent(self) -> None:
        """Finish the commit a crash (or a failure) interrupted, if any."""
        final = intent.read(self.intent_path)
        if final is None:
            self._unsettled = False
            return
        adopt: list[IndexOp] = []
        removed = 0
        for sha, added in final.items():
            if self.index.has(sha) or not self.backend.exists(sha):
                continue
            size = intent.verified_size(self.backend, sha) if added else None
            if size is not None:
                adopt.append(IndexOp(sha, size, publish=self.publish_changes))
            else:
                self.backend.delete(sha)
                removed += 1
        if adopt:
            self.index.apply(adopt, time.time_ns())
        if removed:
            self.backend.flush()  # durable before the intent naming them goes
        intent.clear(self.intent_path, sync=not all(final.values()))
        self._unsettled = False
        if adopt or removed:
            log.info(
                "finished an interrupted commit: indexed %d blobs, removed %d", len(adopt), removed
            )

    def commit_in_memory(self, ops: Sequence[CommitOp]) -> list[CommitResult] | None:
        """Commit *ops* if that is a deferred commit that cannot wait on the
        disk, else return None (and do nothing): the caller's thread may be
        one that must not block (the Axon calls this on the trio thread).

        That is: small blobs' adds from memory, on a store opened
        *deferred*, with no sync or spill due and no sync writing the index
        (and, if the store has limits, the commit lock free: a durable commit
        or a spill step may hold it across an fsync). The commit then costs a
        few index reads in memory and one buffered append to the commit log:
        the write of a few KiB to the page cache.
        """
        if not self.index.defers or self.index.busy() or self._deferred_full() or self._spill_due():
            return None
        size = 0
        for op in ops:
            if not isinstance(op, AddBlob) or op.data is None:
                return None
            size += op.size
        if size > JOURNAL_MAX or not self.backend.deferred_sync:
            return None
        if self.limits == Limits():
            # Without the commit lock: adds of bytes at hand, each decided by
            # the index itself (see _stage), neither race the spill (it guards
            # against deletes) nor need the lock's order with other commits.
            return self._commit(ops)
        if not self._commit_lock.acquire(blocking=False):
            return None  # limits are checked against the counters one commit at a time
        try:
            return self._commit(ops)
        finally:
            self._commit_lock.release()

    def _deferred_full(self) -> bool:
        return (
            self.index.deferred() >= DEFERRED_MAX_COMMITS
            or self.index.deferred_bytes() >= DEFERRED_MAX_BYTES
        )

    def sync(self) -> int:
        """Make every deferred commit durable now; return how many there were.

        Commits go on meanwhile (the index freezes what it syncs): those made
        after this began are durable at the next sync.
        """
        count = self.index.deferred()
        self.index.sync_deferred()
        return count

    def _deferrable(self, ops: Sequence[CommitOp]) -> bool:
        """True if the index commit of *ops* may wait for the next sync: the
        store defers, and *ops* are a few adds whose bytes a power cut here
        cannot take (small blobs' bytes ride in the index itself; an object
        store's are off this machine). A batch of many shares its sync
        already, and staging it in Python costs more than the sync it would
        save."""
        return (
            self.index.defers
            and len(ops) <= DEFER_MAX_OPS
            and all(
                isinstance(op, AddBlob) and (self._journals(op) or self.backend.durable_off_machine)
                for op in ops
            )
        )

    def _commit(self, ops: Sequence[CommitOp]) -> list[CommitResult]:
        """Stage each op against a plan of the batch, hand the new blobs'
        bytes to the backend, apply the index half in one transaction, then
        remove deleted blobs' bytes."""
        slots = [_Slot(op) for op in ops]
        self.backend.prepare(
            [
                op.path
                for op in ops
                if isinstance(op, AddBlob) and op.path is not None and not self._journals(op)
            ]
        )
        plan = _Plan(self.index, self.limits)
        for slot in slots:
            self._stage_slot(plan, slot)
        failed = self._upload([slot for slot in slots if slot.upload], plan)
        applying = [
            slot
            for slot in slots
            if slot.index_op is not None
            and slot.result is None
            and not (slot.op.sha256 in failed and not slot.index_op.delete)
        ]
        if applying:
            rows = self.index.apply(
                [slot.index_op for slot in applying if slot.index_op],
                time.time_ns(),
                durable=not self._deferrable(ops),
            )
            for slot, row in zip(applying, rows, strict=True):
                slot.result = row
        removed = [sha for sha in plan.deleted - plan.present_now() if self.backend.delete(sha)]
        if removed:
            # The delete is acknowledged when this returns: its unlinks must be
            # durable before the intent that would finish them is cleared.
            self.backend.flush()
        results: list[CommitResult] = []
        for slot in slots:
            if slot.result is None:  # a dedup of an upload that failed fails with it
                slot.result = failed[slot.op.sha256]
            results.append(slot.result)
        return results

    def _stage_slot(self, plan: _Plan, slot: _Slot) -> None:
        op = slot.op
        if isinstance(op, ForgetBlob) and not self._same_row(plan, op):
            slot.result = False
            return
        fresh = isinstance(op, AddBlob) and not plan.is_present(op.sha256)
        try:
            slot.index_op = self._stage(plan, op)
        except AxonError as exc:
            slot.result = exc
            return
        slot.upload = fresh and slot.index_op.journal is None

    def _same_row(self, plan: _Plan, op: ForgetBlob) -> bool:
        """True if the row *op* means to drop is still the live one."""
        if op.sha256 in plan.changed:  # added or removed earlier in this batch
            return False
        row = self.index.get(op.sha256)
        return row is not None and row.indx == op.indx

    def _upload(self, slots: list[_Slot], plan: _Plan) -> dict[Sha256, AxonError]:
        """Hand the batch's synced blobs to the backend at once, then flush.

        A slot whose upload failed gets the error as its result (its spool
        is removed and its size taken back out of the plan's counters);
        returns the errors by sha256.
        """
        adds = [slot.op for slot in slots if isinstance(slot.op, AddBlob)]
        if not adds:
            return {}
        errors = self.backend.put_files([(op.sha256, self._spooled(op)) for op in adds])
        failed: dict[Sha256, AxonError] = {}
        for slot, op, error in zip(slots, adds, errors, strict=True):
            if error is not None:
                op.discard()
                plan.forget(op.sha256, op.size)
                slot.result = failed[op.sha256] = error
        if len(failed) < len(adds):
            self.backend.flush()
        return failed

    def _stage(self, plan: _Plan, op: CommitOp) -> IndexOp:
        """Plan *op* (journaled blobs are moved into place here) and return its
        index half; blobs that need a synced upload are left to :meth:`_upload`."""
        if isinstance(op, DeleteBlob):
            plan.delete(op.sha256)
            return IndexOp(op.sha256, delete=True, publish=self.publish_changes)
        if isinstance(op, ForgetBlob):
            plan.delete(op.sha256, keep_bytes=True)
            return IndexOp(op.sha256, delete=True)
        if isinstance(op, AdoptBlob):
            if not plan.is_present(op.sha256):
                plan.add(op.sha256, op.size)
            return IndexOp(op.sha256, op.size)
        if plan.is_present(op.sha256):
            op.discard()  # dedup: the bytes are already stored
            # Bytes at hand go along all the same: a commit in memory does not
            # hold the commit lock, so a delete may come between this look
            # and the index's (which makes the add a no-op if it is present).
            return IndexOp(
                op.sha256,
                op.size,
                journal=op.data if self._journals(op) else None,
                publish=self.publish_changes,
            )
        try:
            plan.check_limits(op.size)
            if self._journals(op):
                journal = op.data if op.data is not None else self._read_small(op)
                plan.add(op.sha256, op.size)
                return IndexOp(
                    op.sha256,
                    op.size,
                    journal=journal,  # file: after the commit
                    publish=self.publish_changes,
                )
            self._spooled(op)
        except AxonError:
            op.discard()
            raise
        plan.add(op.sha256, op.size)
        return IndexOp(op.sha256, op.size, publish=self.publish_changes)

    # -- the small-blob journal ---------------------------------------------------

    def _journals(self, op: AddBlob) -> bool:
        return self.backend.deferred_sync and op.size <= JOURNAL_MAX

    def _spooled(self, op: AddBlob) -> Path:
        """The op's bytes as a file the backend can take."""
        if op.path is None:
            op.path = spool.write_file(self.tmp, op.data or b"")
        return op.path

    @staticmethod
    def _read_small(op: AddBlob) -> bytes:
        assert op.path is not None
        try:
            data = op.path.read_bytes()
        except OSError as exc:
            raise BackendError(
                f"cannot read the spool of {op.sha256.hex()}: {exc.strerror}",
                sha256=op.sha256.hex(),
            ) from exc
        op.discard()  # the journal holds the bytes now; the file is written at spill
        return data

    def open_blob(self, sha256: Sha256) -> BlobReader:
        """Open a stored blob: its journaled bytes if it has any, else its file.

        The journal is asked first because its row is dropped only after the
        file is in place and synced: the other order could miss both.
        """
        if self.backend.deferred_sync and (journaled := self.index.journal_get(sha256)) is not None:
            return BytesReader(journaled)
        return self.backend.open(sha256)

    def stream_blob(self, sha256: Sha256, size: int, start: int, end: int) -> BlobStream | None:
        """``[start, end)`` of a stored blob as one sequential stream from the
        backend, or None where :meth:`open_blob` serves as well (a journaled
        blob, local files, a cached start)."""
        if self.backend.deferred_sync and self.index.journal_get(sha256) is not None:
            return None
        return self.backend.stream(sha256, size, start, end)

    def spill_wanted(self) -> bool:
        """True if enough small blobs are journaled for a spill to be worth it,
        or enough of their bytes that the back-pressure bound comes near (a
        journaled blob of 4 KiB takes two pages: the bytes bound comes first)."""
        return self.backend.deferred_sync and (
            self.index.journal_entries() >= JOURNAL_SPILL_START
            or self.index.journal_bytes() >= JOURNAL_SPILL_BYTES // 2
        )

    def journaled(self) -> int:
        """How many small blobs are durable in the index but have no file yet."""
        return self.index.journal_entries() if self.backend.deferred_sync else 0

    def _spill_if_due(self) -> None:
        if self._spill_due():
            self.spill_journal()

    def _spill_due(self) -> bool:
        return self.backend.deferred_sync and (
            self.index.journal_entries() >= JOURNAL_SPILL_COUNT
            or self.index.journal_bytes() >= JOURNAL_SPILL_BYTES
        )

    def spill_journal(self) -> int:
        """Write and sync the files of every journaled blob, dropping their
        journal rows; return how many were spilled."""
        spilled = 0
        while count := self.spill_step():
            spilled += count
        return spilled

    def spill_step(self, limit: int = JOURNAL_BATCH, sync_first: bool = True) -> int:
        """Write and sync the files of up to *limit* journaled blobs, then drop
        their journal rows; return how many were spilled (0: none durable).

        Runs beside commits: only the renames into place (a few at a time)
        and the journal drop hold the commit lock, so a commit never waits
        for file writes or syncs. With *sync_first* it first makes deferred
        commits durable, so that their blobs can be spilled too; without, it
        spills what the sync interval's timer has made durable (the
        background spill, while puts stream in).
        """
        with self._spill_lock:
            if sync_first and self.index.deferred():
                self.index.sync_deferred()  # durable, their files may be written
            # Durable rows only: a file written for a deferred commit's blob
            # would be an orphan if a power cut undid the commit.
            rows = self.index.journal_batch(limit, max_bytes=JOURNAL_BATCH_BYTES, durable=True)
            if not rows:
                return 0
            staged = self.backend.stage(rows, f"{self.tmp}/{spool.SPOOL_PREFIX}spill-")
            try:
                for start in range(0, len(staged.shas), PLACE_BATCH):
                    among = staged.shas[start : start + PLACE_BATCH]
                    with self._commit_lock:
                        # A blob deleted since the batch was read gets no file.
                        staged.place([sha for sha in among if self.index.has(sha)], among)
            finally:
                staged.place(())  # what an error left unplaced
            shas = [sha for sha, _ in rows]
            self.backend.sync_blobs(shas)
            with self._commit_lock:
                # A blob deleted since has no file (and no journal row) now;
                # one deleted and added again has a journal row but no file
                # yet: its row stays for the next step. With a sync interval
                # the drop is a deferred commit too: a power cut that undoes
                # it leaves rows whose files are whole, which opening checks.
                stored = self.backend.stored(shas)
                self.index.drop_journal(
                    [sha for sha in shas if sha in stored], durable=not self.index.defers
                )
            return len(rows)

    def _settle_journal(self) -> None:
        """After a crash, make every journaled blob's file match its bytes.

        A spill a power cut interrupted can leave files that were renamed into
        place but whose data never reached the disk: remove those, and let the
        spill write them (and every file not written yet) again.
        """
        if not self.backend.deferred_sync:
            return
        damaged = 0
        for sha, data in self._journal_rows():
            try:
                with self.backend.open(sha) as reader:
                    intact = reader.size == len(data) and reader.read(0, len(data)) == data
            except BlobMissing:
                continue
            if not intact:
                self.backend.delete(sha)
                damaged += 1
        spilled = self.spill_journal()
        if damaged:
            log.warning("rewrote %d small blobs from the index journal after a crash", damaged)
        if spilled:
            log.info("wrote %d journaled small blobs left by an unclean stop", spilled)

    def _journal_rows(self) -> Iterator[tuple[Sha256, bytes]]:
        """Every journaled blob, read :data:`JOURNAL_BATCH` at a time."""
        after = b""
        while rows := self.index.journal_batch(
            JOURNAL_BATCH, after=after, max_bytes=JOURNAL_BATCH_BYTES
        ):
            yield from rows
            after = rows[-1][0]


def _sync_layout(root: Path) -> None:
    """Make the store's own entries durable: ``index.lmdb/data.mdb``, ``blobs/``,
    ``tmp/`` and the store directory itself in its parent.

    LMDB syncs its file's data but never the directory it created the file
    in, and ``mkdir`` is not durable until its parent is synced. Without
    this, a power cut soon after a store was created could lose the index
    file (or the whole store directory) with every blob it had acknowledged.
    A few fsyncs per open; nothing else in the store creates directories
    outside ``blobs/``, which syncs its own.
    """
    for directory in (root / "index.lmdb", root, root.parent):
        try:
            fsync_path(directory)
        except OSError as exc:
            # The parent may be unreadable to us; the store itself was synced.
            if directory != root.parent:
                raise
            log.debug("cannot sync %s: %s", directory, exc)


class _Plan:
    """What a batch will have done to presence and counters, op by op."""

    def __init__(self, index: Index, limits: Limits) -> None:
        self.index = index
        self.limits = limits
        # What the batch adds to the store's counters; the counters themselves
        # are read only when a limit asks (a read per commit otherwise).
        self.bytes_added = 0
        self.files_added = 0
        self.changed: dict[Sha256, int | None] = {}  # sha -> size if present, None if gone
        self.deleted: set[Sha256] = set()

    def is_present(self, sha: Sha256) -> bool:
        if sha in self.changed:
            return self.changed[sha] is not None
        return self.index.has(sha)

    def check_limits(self, size: int) -> None:
        """Refuse a blob of *size* bytes that would take the store past a limit.

        Checked against the blob's own size, not only the total so far, so
        one large blob cannot overshoot ``max_bytes`` (``df`` shows that
        limit as the mount's size).
        """
        max_bytes, max_count = self.limits.max_bytes, self.limits.max_count
        if max_bytes is None and max_count is None:
            return
        metrics = self.index.metrics()
        size_bytes = metrics["size:bytes"] + self.bytes_added
        file_count = metrics["file:count"] + self.files_added
        if max_bytes is not None and size_bytes >= max_bytes:
            raise HitLimit(f"Axon is at size:bytes limit: {max_bytes}", limit=max_bytes)
        if max_bytes is not None and size_bytes + size > max_bytes:
            raise HitLimit(
                f"a blob of {size} bytes would pass the size:bytes limit: "
                f"{max_bytes} ({max_bytes - size_bytes} bytes left)",
                limit=max_bytes,
            )
        if max_count is not None and file_count >= max_count:
            raise HitLimit(f"Axon is at file:count limit: {max_count}", limit=max_count)

    def add(self, sha: Sha256, size: int) -> None:
        self.changed[sha] = size
        self.bytes_added += size
        self.files_added += 1

    def forget(self, sha: Sha256, size: int) -> None:
        """Undo :meth:`add` for a blob whose upload failed."""
        if sha in self.deleted:
            self.changed[sha] = None  # deleted earlier in the batch: still gone
        else:
            del self.changed[sha]
        self.bytes_added -= size
        self.files_added -= 1

    def delete(self, sha: Sha256, keep_bytes: bool = False) -> None:
        """Plan a row's removal, and its bytes' too unless *keep_bytes*."""
        if not self.is_present(sha):
            return
        if sha in self.changed:
            size = self.changed[sha]
        else:
            row = self.index.get(sha)
            size = row.size if row is not None else 0
        self.changed[sha] = None
        self.bytes_added -= size or 0
        self.files_added -= 1
        if not keep_bytes:
            self.deleted.add(sha)

    def present_now(self) -> set[Sha256]:
        return {sha for sha, size in self.changed.items() if size is not None}
