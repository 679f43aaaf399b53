"""The Axon service: the one storage API every front end calls.

The FUSE operations, the control socket and the tests all talk to an
:class:`Axon`. Its public coroutines keep the Synapse Axon's names, arguments
and return shapes (sha256 as 32 raw bytes; see ``docs/ARCHITECTURE.md`` for
where axonfs deliberately differs). Below it sits the synchronous
:class:`~axonfs.store.store.Store`.

Concurrency: everything runs on one trio thread. Index point reads run
inline (microseconds); file I/O, hashing and index writes run in worker
threads under the named limiters in :class:`Limiters`; every index write goes
through one :class:`~axonfs.store.committer.GroupCommitter`, so concurrent
puts share a synced commit.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import trio

# BlobReader, the rows and Spool are the types front ends get from the service:
# they import them from here, never from the layers below.
from axonfs.backends.base import BlobBackend, BlobStream, Listing
from axonfs.backends.base import BlobReader as BlobReader
from axonfs.backends.local import LocalReader
from axonfs.config import FetchOptions
from axonfs.errors import AxonError, BadArg, BadDataValu, BlobMissing, NoSuchFile, StoreCorrupt
from axonfs.hashing import HashSet, Sha256
from axonfs.store.committer import GroupCommitter
from axonfs.store.index import BlobRow as BlobRow
from axonfs.store.index import HistoryRow as HistoryRow
from axonfs.store.index import SeqnRow as SeqnRow
from axonfs.store.spool import Spool as Spool
from axonfs.store.store import (
    AddBlob,
    AdoptBlob,
    CommitOp,
    CommitResult,
    DeleteBlob,
    ForgetBlob,
    Limits,
    Store,
)

log = logging.getLogger(__name__)

READ_CHUNK = 4 << 20
"""get() yields pieces of at most this size: big enough that the thread round
trip per piece (about 50 µs) is small beside the copy."""
LOCAL_READ_CHUNK = 16 << 20
"""The same for local files (the reference's chunk size too): fewer thread
round trips per byte. A get from the page cache ran at 0.71-0.84x of a plain
read with 16 MiB pieces, 0.60-0.61x with 4 MiB (blob pages filled by a reader)."""
STREAM_MIN = 8 << 20
"""A get of at least this much of a remote blob is one streamed request
(``BlobBackend.stream``), not the block reader's windows of ranged requests."""
INLINE_IO_MAX = 64 << 10
"""Reads and writes up to this size run on the trio thread: a page-cache
copy of 64 KiB takes a few µs, a thread round trip about 50 µs. Reads go
inline only if the bytes are already in memory (``read_cached``)."""
HASHES_BATCH = 1000
UNPACK_MAX = 1 << 20
"""Most bytes one unpack() may read (the reference's bound)."""
SPILL_IDLE = 1.0
"""Seconds without a commit after which journaled small blobs are spilled."""
PRESYNC_MIN = 4 << 20
"""Spools larger than this are synced by their writer before the commit."""


@dataclass
class Limiters:
    """Named capacity limiters, one per kind of blocking work.

    ``backend_io`` bounds calls into the blob backend: it is ``disk_io`` for
    local files, and a limiter as wide as the S3 connection pool otherwise
    (so threads never queue for a connection inside boto3).
    """

    disk_io: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(8))
    hash_cpu: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))
    backend_io: trio.CapacityLimiter | None = None

    @classmethod
    def for_backend(cls, backend: BlobBackend) -> Limiters:
        limiters = cls()
        if backend.reads_are_local:
            limiters.backend_io = limiters.disk_io
        else:
            limiters.backend_io = trio.CapacityLimiter(backend.max_connections)
        return limiters

    @property
    def blob_io(self) -> trio.CapacityLimiter:
        return self.backend_io if self.backend_io is not None else self.disk_io


@dataclass(slots=True)
class _RecoverTally:
    listed: int = 0
    added: int = 0
    skipped: int = 0
    corrupt: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecoverReport:
    """What :meth:`Axon.recover` found."""

    listed: int
    added: int
    skipped: int
    ignored: int
    corrupt: list[str]


@dataclass(frozen=True, slots=True)
class Capacity:
    """What ``df`` shows of the store (see :meth:`Axon.capacity`)."""

    used_bytes: int
    blobs: int
    free_bytes: int | None
    """Free space of the medium the blobs are on; None where it has no size (S3)."""
    max_bytes: int | None
    """The store's ``max_bytes`` limit, if one is set."""


@dataclass(frozen=True, slots=True)
class AxonStatistics:
    """Counters of an open store (see :meth:`Axon.statistics`)."""

    commit_batches: int
    """Index transactions committed (each holds one or more operations)."""
    commit_ops: int
    """Operations those transactions held."""
    dedup_hits: int
    """Adds of a blob the store already held."""
    journaled: int
    """Small blobs committed whose files are not written yet."""
    sync_interval: float
    """Seconds a commit of small blobs may stay not durable (0: none may)."""
    not_durable: int
    """Commits visible but not durable yet (with a sync interval)."""
    syncs: int
    """Syncs that made such commits durable."""


class BlobWatcher(Protocol):
    """Told of every blob added to or deleted from the store, by any front end.

    Called on the trio thread once the commit is visible (durable, or with a
    sync interval perhaps deferred: see :meth:`wait_synced`); it must not block.
    """

    def blobs_added(self, rows: Sequence[BlobRow]) -> None: ...

    def blobs_deleted(self, rows: Sequence[BlobRow]) -> None: ...


class Axon:
    """An open store with the Axon API. Create with :meth:`Axon.open`."""

    def __init__(
        self, store: Store, limiters: Limiters | None = None, sync_interval: float = 0.0
    ) -> None:
        self.store = store
        self.sync_interval = sync_interval
        """Seconds a commit of small blobs may stay not durable (0: none, every
        call is durable when it returns)."""
        self._deferred_commits = trio.Event()
        self._synced = trio.Event()
        self.index = store.index
        self.backend: BlobBackend = store.backend
        self.limiters = limiters or Limiters.for_backend(store.backend)
        self._committer: GroupCommitter[CommitOp, CommitResult] = GroupCommitter(
            store.commit, quick=store.commit_in_memory if sync_interval > 0 else None
        )
        self._new_rows = trio.Event()
        self._recovering = trio.Lock()
        self._spill_wanted = trio.Event()
        self._last_commit = -float("inf")
        self._background: trio.Nursery | None = None  # set by open(): uploads' writes behind
        self.dedup_hits = 0
        """Adds of a blob the store already held."""
        self.fetch_options = FetchOptions()
        """How wget, wput and postfiles reach the network (the daemon sets it)."""
        self._watchers: list[BlobWatcher] = []

    def statistics(self) -> AxonStatistics:
        """The store's counters now."""
        return AxonStatistics(
            commit_batches=self._committer.batches,
            commit_ops=self._committer.ops,
            dedup_hits=self.dedup_hits,
            journaled=self.store.journaled(),
            sync_interval=self.sync_interval,
            not_durable=self.store.index.deferred(),
            syncs=self.store.index.syncs,
        )

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self.store.root

    @property
    def spool_dir(self) -> Path:
        """Where files being written wait to become blobs."""
        return self.store.tmp

    def watch(self, watcher: BlobWatcher) -> None:
        """Tell *watcher* of every blob added or deleted from now on."""
        self._watchers.append(watcher)

    def _tell(self, added: Sequence[BlobRow] = (), deleted: Sequence[BlobRow] = ()) -> None:
        for watcher in self._watchers:
            try:
                if added:
                    watcher.blobs_added(added)
                if deleted:
                    watcher.blobs_deleted(deleted)
            except Exception:  # the commit is done: a watcher's bug must not fail it
                log.exception("a watcher of blob changes failed")

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        root: Path,
        *,
        backend: BlobBackend | None = None,
        limits: Limits | None = None,
        sync_interval: float = 0.0,
    ) -> AsyncIterator[Axon]:
        """Open (creating if needed) the store at *root*; close it on exit.

        *sync_interval* (seconds; 0, the default, for none): commits of small
        blobs return once visible, and become durable within that time, all
        in one sync (see :meth:`Store.commit <axonfs.store.store.Store.commit>`).
        Closing the store makes them durable.
        """
        store = await trio.to_thread.run_sync(
            partial(Store, root, backend, limits, deferred=sync_interval > 0)
        )
        try:
            axon = cls(store, sync_interval=sync_interval)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(axon._spill_in_background)
                    if sync_interval > 0:
                        nursery.start_soon(axon._sync_in_background)
                    axon._background = nursery
                    try:
                        yield axon
                    finally:
                        nursery.cancel_scope.cancel()  # a running spill step finishes first
            except BaseExceptionGroup as group:
                # Only the caller's block can raise here (the spiller catches its
                # errors): hand its exception on as it was raised.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        finally:
            # Shielded: a cancelled caller must still release the lock and
            # the index, or this process could never open the store again.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)

    # -- writing -----------------------------------------------------------------

    async def put(self, byts: bytes) -> tuple[int, bytes]:
        """Store *byts*; return ``(size, sha256)``."""
        return (await self.puts([byts]))[0]

    async def puts(self, files: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """Store several byte strings in one commit; return ``(size, sha256)`` each."""
        files = list(files)
        small = [_in_memory(data) for data in files]
        spooled: list[CommitOp] = []
        if big := [files[i] for i, op in enumerate(small) if op is None]:
            spooled = await trio.to_thread.run_sync(
                self._spool_all, big, limiter=self.limiters.disk_io
            )
        from_spool = iter(spooled)
        ops: list[CommitOp] = [op if op is not None else next(from_spool) for op in small]
        rows = await self._commit_adds(ops)
        return [(row.size, bytes(row.sha256)) for row in rows]

    async def upload(self) -> Upload:
        """Return a reusable streaming writer: ``write()`` bytes, then ``save()``."""
        return Upload(self)

    async def save_spool(self, spool: Spool) -> BlobRow:
        """Commit a written spool file as a blob (the spool is consumed)."""
        if spool.fully_hashed:
            sha = Sha256(spool.digest())  # hashed as written: finishing it is O(1)
        else:
            sha = Sha256(
                await trio.to_thread.run_sync(spool.digest, limiter=self.limiters.hash_cpu)
            )
        if spool.in_memory:  # a small file: from memory into the index journal
            data = spool.contents()
            spool.discard()
            return (await self._commit_adds([AddBlob(sha, len(data), data=data)]))[0]
        if spool.size > PRESYNC_MIN:
            # Flush a big blob here, beside other writers, rather than inside
            # the one commit thread where it would hold up everyone's commit.
            await trio.to_thread.run_sync(spool.sync, limiter=self.limiters.disk_io)
        elif spool.staged > INLINE_IO_MAX:  # detach() would write it on the trio thread
            await trio.to_thread.run_sync(spool.flush, limiter=self.limiters.disk_io)
        path = spool.detach()
        # Written O_DIRECT, the blob is not in the page cache, and is not read
        # back into it: a get reads cold pages round the cache (LocalReader),
        # faster than a read-back could fill it.
        return (await self._commit_adds([AddBlob(sha, spool.size, path)]))[0]

    async def _commit_adds(self, ops: list[CommitOp]) -> list[BlobRow]:
        """Commit adds whose bytes are spooled; skip the commit for known blobs."""
        rows: list[BlobRow | None] = []
        pending: list[tuple[int, CommitOp]] = []
        for op in ops:
            row = self.index.get(op.sha256)
            if row is not None and isinstance(op, AddBlob):
                op.discard()  # dedup before any limit, like the reference
                self.dedup_hits += 1
            else:
                pending.append((len(rows), op))
            rows.append(row)
        if pending:
            results = await self._committer.submit_many([op for _, op in pending])
            if self.store.index.deferred():
                self._deferred_commits.set()
            self._announce()
            self._last_commit = trio.current_time()
            if self.store.spill_wanted():
                self._spill_wanted.set()
            self._tell(added=[row for row in results if isinstance(row, BlobRow)])
            for (slot, _), result in zip(pending, results, strict=True):
                if isinstance(result, AxonError):
                    raise result
                assert isinstance(result, BlobRow)
                rows[slot] = result
        committed = [row for row in rows if row is not None]
        assert len(committed) == len(rows)  # every slot is a known or a committed blob
        return committed

    def _spool_all(self, files: list[bytes]) -> list[CommitOp]:
        ops: list[CommitOp] = []
        for data in files:
            spool = self.store.new_spool()
            try:
                spool.append(data)
                ops.append(AddBlob(Sha256(spool.digest()), spool.size, spool.detach()))
            except BaseException:
                spool.discard()
                raise
        return ops

    async def sync(self) -> int:
        """Make every commit durable now; return how many were not yet.

        Only a store with a sync interval has commits that are not durable
        when their call returns; elsewhere this returns 0 at once.
        """
        if not self.store.index.deferred():
            return 0
        count = await trio.to_thread.run_sync(self.store.sync, limiter=self.limiters.disk_io)
        synced, self._synced = self._synced, trio.Event()
        synced.set()
        return count

    async def wait_synced(self) -> None:
        """Return once commits that were not durable have been made durable
        (by the interval's sync or a :meth:`sync` call), next time that happens."""
        await self._synced.wait()

    async def _sync_in_background(self) -> None:
        """Make deferred commits durable within :attr:`sync_interval` of the
        first of them, all in one sync."""
        while True:
            await self._deferred_commits.wait()
            await trio.sleep(self.sync_interval)
            self._deferred_commits = trio.Event()
            try:
                await self.sync()
            except (AxonError, OSError) as exc:
                # They stay visible, and logged for a restart; a later sync may work.
                log.warning("cannot make recent commits durable yet (%s); will retry", exc)
                self._deferred_commits.set()

    async def spill_journal(self) -> int:
        """Write every journaled small blob to its file now; return how many.

        Never needed for safety (a journaled blob is durable); useful before
        looking at the backend's files directly.
        """
        return await trio.to_thread.run_sync(
            self.store.spill_journal, limiter=self.limiters.disk_io
        )

    async def _spill_in_background(self) -> None:
        """Write the files of journaled small blobs, off every caller's path.

        A put is durable once its index commit returns (the bytes are in the
        journal); this moves them to their files in batches: all of them once
        no commit has come for :data:`SPILL_IDLE` seconds, and down to
        :data:`~axonfs.store.store.JOURNAL_SPILL_START` while ingest goes on.
        """
        while True:
            with trio.move_on_after(SPILL_IDLE):
                await self._spill_wanted.wait()
            self._spill_wanted = trio.Event()
            try:
                while self._spill_due():
                    spilled = await trio.to_thread.run_sync(
                        # While puts stream in, no index sync of its own (it
                        # would hold commits for its flush): the interval's
                        # timer makes rows durable, the spill follows.
                        partial(self.store.spill_step, sync_first=self._ingest_quiet()),
                        limiter=self.limiters.disk_io,
                    )
                    if not spilled:  # what is left is not durable yet: the next sync
                        break
            except (AxonError, OSError) as exc:
                # Nothing is lost: the bytes stay in the journal and reads use them.
                log.warning(
                    "cannot write journaled small blobs to their files yet (%s); will retry", exc
                )

    def _spill_due(self) -> bool:
        return self.store.spill_wanted() or (self._ingest_quiet() and self.store.journaled() > 0)

    def _ingest_quiet(self) -> bool:
        """True if no commit came for :data:`SPILL_IDLE` seconds."""
        return trio.current_time() - self._last_commit >= SPILL_IDLE

    def _announce(self) -> None:
        """Wake hashes(wait=True) followers: new rows may have been committed."""
        event, self._new_rows = self._new_rows, trio.Event()
        event.set()

    # -- deleting -----------------------------------------------------------------

    async def del_(self, sha256: bytes) -> bool:
        """Remove a blob; False if it was not present."""
        return (await self.dels([sha256]))[0]

    async def dels(self, sha256s: Iterable[bytes]) -> list[bool]:
        """Remove several blobs in one commit; a bool per input, in order.

        Anything that is not a 32-byte digest is simply not present: False,
        as in the reference (whose ``del_`` asks ``has()`` first).
        """
        wanted = list(sha256s)
        ops: list[CommitOp] = [DeleteBlob(Sha256(bytes(s))) for s in wanted if _is_digest(s)]
        rows = [self.index.get(op.sha256) for op in ops]
        results = await self._committer.submit_many(ops) if ops else []
        self._tell(
            deleted=[
                row
                for row, gone in zip(rows, results, strict=True)
                if gone is True and row is not None
            ]
        )
        done = iter(results)
        return [bool(next(done)) if _is_digest(s) else False for s in wanted]

    async def apply_remote(
        self, adds: Sequence[tuple[Sha256, int]], deletes: Sequence[BlobRow]
    ) -> tuple[int, int]:
        """Apply what other hosts sharing the bucket did, in one commit.

        *adds* are blobs found in the bucket, indexed (dated now) unless
        present; *deletes* are rows whose bytes are gone from the bucket,
        dropped unless re-added since. Neither moves bytes nor is published
        again. Watchers (the mount) hear of both, as of local changes.

        Returns:
            How many rows were added and how many dropped.
        """
        fresh = [(sha, size) for sha, size in adds if not self.index.has(sha)]
        ops: list[CommitOp] = [AdoptBlob(sha, size) for sha, size in fresh]
        ops += [ForgetBlob(row.sha256, row.indx) for row in deletes]
        if not ops:
            return 0, 0
        results = await self._committer.submit_many(ops)
        added = [row for row in results[: len(fresh)] if isinstance(row, BlobRow)]
        dropped = [
            row for row, gone in zip(deletes, results[len(fresh) :], strict=True) if gone is True
        ]
        self._announce()
        self._tell(added=added, deleted=dropped)
        return len(added), len(dropped)

    # -- reading ------------------------------------------------------------------

    def stat(self, sha256: bytes) -> BlobRow | None:
        """The index row of a blob, or None (inline point read)."""
        if not isinstance(sha256, bytes) or len(sha256) != 32:
            return None
        return self.index.get(Sha256(sha256))

    async def has(self, sha256: bytes) -> bool:
        return isinstance(sha256, bytes) and len(sha256) == 32 and self.index.has(Sha256(sha256))

    async def size(self, sha256: bytes) -> int | None:
        row = self.stat(sha256)
        return None if row is None else row.size

    async def wants(self, sha256s: Iterable[bytes]) -> list[bytes]:
        """The inputs the store lacks, in input order, duplicates kept."""
        return [s for s in sha256s if self.stat(s) is None]

    async def metrics(self) -> dict[str, int]:
        """Exactly ``{"size:bytes": int, "file:count": int}``."""
        return self.index.metrics()

    def require(self, sha256: bytes) -> BlobRow:
        row = self.stat(sha256)
        if row is None:
            raise NoSuchFile(
                "Axon does not contain the requested file.",
                sha256=sha256.hex() if isinstance(sha256, bytes) else repr(sha256),
            )
        return row

    async def open_reader(self, sha256: bytes) -> BlobReader:
        """Open a stored blob for random reads (raises NoSuchFile)."""
        row = self.require(sha256)
        try:
            if self.backend.reads_are_local:
                return self.store.open_blob(row.sha256)  # an open(2) and fstat(2): ~5 µs
            return await trio.to_thread.run_sync(
                self.store.open_blob, row.sha256, limiter=self.limiters.blob_io
            )
        except BlobMissing:
            log.error(
                "blob %s is in the index but missing from the %s backend",
                row.sha256.hex(),
                self.backend.name,
            )
            raise

    async def read(self, reader: BlobReader, offset: int, size: int) -> bytes:
        """Read from an open blob: inline when small and already in memory
        (it cannot wait for a disk then), else in a worker thread."""
        if size <= INLINE_IO_MAX and (cached := reader.read_cached(offset, size)) is not None:
            return cached
        return await trio.to_thread.run_sync(
            reader.read, offset, size, limiter=self.limiters.blob_io
        )

    async def get(
        self, sha256: bytes, offs: int | None = None, size: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Yield the blob's bytes, whole or the range ``[offs, offs+size)``.

        Ranges follow the reference: NoSuchFile first; ``offs < 0`` or
        ``size < 1`` is BadArg; ``offs`` at or past the end yields one ``b''``;
        a size past the end is truncated; no other piece is empty.
        """
        row = self.require(sha256)
        start, end = _range_of(row.size, offs, size)
        if start >= row.size and offs is not None:
            yield b""
            return
        if not self.backend.reads_are_local and end - start >= STREAM_MIN:
            stream = await trio.to_thread.run_sync(
                self.store.stream_blob,
                row.sha256,
                row.size,
                start,
                end,
                limiter=self.limiters.blob_io,
            )
            if stream is not None:
                async for piece in self._streamed(stream, row.sha256, end - start):
                    yield piece
                return
        reader = await self.open_reader(row.sha256)
        chunk = LOCAL_READ_CHUNK if self.backend.reads_are_local else READ_CHUNK
        try:
            while start < end:
                piece = await self.read(reader, start, min(chunk, end - start))
                if not piece:
                    raise StoreCorrupt(
                        f"blob {row.sha256.hex()} is shorter than indexed", sha256=row.sha256.hex()
                    )
                start += len(piece)
                yield piece
        finally:
            reader.close()

    async def _streamed(
        self, stream: BlobStream, sha256: Sha256, expected: int
    ) -> AsyncGenerator[bytes, None]:
        """The pieces of a backend's stream, as they come, then a check that all came."""
        got = 0
        try:
            while pieces := await trio.to_thread.run_sync(
                stream.next_pieces, limiter=self.limiters.blob_io
            ):
                for piece in pieces:
                    got += len(piece)
                    yield piece
        finally:
            with trio.CancelScope(shield=True):  # it may wait for the last cache writes
                await trio.to_thread.run_sync(stream.close)
        if got != expected:
            raise StoreCorrupt(f"blob {sha256.hex()} is shorter than indexed", sha256=sha256.hex())

    async def unpack(self, sha256: bytes, fmt: str, offs: int = 0) -> tuple[Any, ...]:
        """``struct.unpack(fmt, ...)`` of the blob's bytes at *offs*, reading only those.

        As the reference: NoSuchFile first; a format that is not a string, is
        malformed, or would read over 1 MiB is BadArg; fewer bytes than the
        format needs is BadDataValu.
        """
        if not isinstance(fmt, str):
            raise BadArg("Format string must be a string", fmt=repr(fmt))
        try:
            size = struct.calcsize(fmt)
        except struct.error as exc:
            raise BadArg(f"Failed to unpack bytes with format {fmt}: {exc}", fmt=fmt) from None
        if size > UNPACK_MAX:
            raise BadArg(f"Struct format would read too much data: {size} bytes", size=size)
        data = b"".join([piece async for piece in self.get(sha256, offs, size)])
        if len(data) != size:
            raise BadDataValu(
                f"Expected {size} bytes but got {len(data)} bytes",
                expected=size,
                received=len(data),
            )
        return struct.unpack(fmt, data)

    async def hashset(self, sha256: bytes) -> dict[str, str]:
        """md5, sha1, sha256 and sha512 of a blob as hex (computed once, cached)."""
        row = self.require(sha256)
        digests = self.index.get_hashset(row.sha256)
        if digests is None:
            digests = await trio.to_thread.run_sync(
                self._compute_hashset, row.sha256, limiter=self.limiters.hash_cpu
            )
            await trio.to_thread.run_sync(self.index.put_hashset, row.sha256, digests)
        return {name: digests[name].hex() for name in ("md5", "sha1", "sha256", "sha512")}

    def _compute_hashset(self, sha256: Sha256) -> dict[str, bytes]:
        hashset = HashSet()
        with self.store.open_blob(sha256) as reader:
            offset = 0
            while piece := reader.read(offset, 4 * READ_CHUNK):
                hashset.update(piece)
                offset += len(piece)
        digests = hashset.digests()
        if digests["sha256"] != sha256:
            raise StoreCorrupt(f"blob {sha256.hex()} does not match its hash", sha256=sha256.hex())
        return digests

    def open_blob(self, sha256: Sha256) -> BlobReader:
        """Open a stored blob for reads. Blocking: call it from a worker thread."""
        return self.store.open_blob(sha256)

    def local_reader(self, reader: BlobReader) -> LocalReader | None:
        """*reader* as an open local file (to memory-map), or None if it is not one."""
        return reader if isinstance(reader, LocalReader) else None

    def new_spool(self, memory_max: int = 0) -> Spool:
        """An empty spool for bytes whose hash is not known yet (commit it with
        :meth:`save_spool`). Up to *memory_max* bytes stay in memory, so the
        call does no I/O then; otherwise it creates a file: call it from a thread."""
        return self.store.new_spool(memory_max=memory_max)

    def capacity(self) -> Capacity:
        """What ``df`` shows: an inline index read and the medium's ``statvfs``."""
        metrics = self.index.metrics()
        usage = self.backend.usage()
        return Capacity(
            used_bytes=metrics["size:bytes"],
            blobs=metrics["file:count"],
            free_bytes=usage[1] if usage is not None else None,
            max_bytes=self.store.limits.max_bytes,
        )

    # -- sequence and history ---------------------------------------------------

    async def hashes(
        self, offs: int, wait: bool = False, timeout: float | None = None
    ) -> AsyncIterator[tuple[int, tuple[bytes, int]]]:
        """Yield ``(indx, (sha256, size))`` of present blobs in added order from *offs*.

        With *wait*, keep following new rows until *timeout* seconds pass
        without one (forever if None).
        """
        async with aclosing(self.hashes_batches(offs, wait, timeout)) as batches:
            async for rows in batches:
                for row in rows:
                    yield row

    async def hashes_batches(
        self, offs: int, wait: bool = False, timeout: float | None = None
    ) -> AsyncGenerator[list[tuple[int, tuple[bytes, int]]], None]:
        """:meth:`hashes` a list of rows at a time (one index read each)."""
        if not isinstance(offs, int) or offs < 0:
            raise BadArg("offs must be an integer >= 0", offs=offs)
        indx = offs
        while True:
            new_rows = self._new_rows  # taken before reading, so no commit is missed
            rows, indx = self.index.present_batch(indx, HASHES_BATCH)
            if rows:
                yield [(row.indx, (bytes(row.sha256), row.size)) for row in rows]
            if rows or indx < self.index.next_indx():
                await trio.lowlevel.checkpoint()
                continue
            if not wait:
                return
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                await new_rows.wait()
                continue
            return

    async def history(
        self, tick: int, tock: int | None = None
    ) -> AsyncIterator[tuple[int, tuple[bytes, int]]]:
        """Yield ``(tick_ms, (sha256, size))`` added in ``[tick, tock]`` (ms, inclusive).

        Deleted blobs' rows are still shown, as in the reference.
        """
        async with aclosing(self.history_batches(tick, tock)) as batches:
            async for rows in batches:
                for row in rows:
                    yield row

    async def history_batches(
        self, tick: int, tock: int | None = None
    ) -> AsyncGenerator[list[tuple[int, tuple[bytes, int]]], None]:
        """:meth:`history` a list of rows at a time (one index read each)."""
        if not isinstance(tick, int) or tick < 0:
            raise BadArg("tick must be an integer >= 0 (epoch milliseconds)", tick=tick)
        if tock is not None and (not isinstance(tock, int) or tock < 0):
            raise BadArg("tock must be an integer >= 0 (epoch milliseconds)", tock=tock)
        key = (tick, 0)
        while True:
            rows = self.index.history_batch(key, tock, HASHES_BATCH)
            if rows:
                yield [(row.tick_ms, (bytes(row.sha256), row.size)) for row in rows]
            if len(rows) < HASHES_BATCH:
                return
            key = (rows[-1].tick_ms, rows[-1].indx + 1)
            await trio.lowlevel.checkpoint()

    def next_indx(self) -> int:
        """The indx the next added blob will get (inline point read)."""
        return self.index.next_indx()

    def sequence_rows(self, indx: int, count: int) -> list[tuple[SeqnRow, bool]]:
        """Up to *count* rows of the added-order sequence from *indx*, deleted
        blobs' rows included, each with whether it is its blob's live row.
        An inline bounded index scan: keep *count* small on the trio thread."""
        return self.index.seqn_batch(indx, count)

    def history_rows(
        self, start: tuple[int, int], tock_ms: int | None, count: int
    ) -> list[HistoryRow]:
        """Up to *count* by-time rows from key ``(tick_ms, indx)`` *start* up to
        *tock_ms* (inclusive), deleted blobs' rows included. An inline bounded
        index scan, like :meth:`sequence_rows`."""
        return self.index.history_batch(start, tock_ms, count)

    # -- recovery -----------------------------------------------------------------

    async def recover(
        self,
        *,
        verify: bool | None = None,
        progress: Callable[[int, int], Awaitable[None] | None] | None = None,
    ) -> RecoverReport:
        """Index every blob the backend holds and the index lacks, dated now.

        Blobs already indexed are skipped. With *verify* (the default for local
        backends; for S3 it would download every object), each adopted blob is
        re-hashed first and skipped (reported corrupt) on a mismatch. The
        listing streams in, so *progress*, if given, is called (and awaited,
        if it returns an awaitable) with ``(listed, added)`` after every batch,
        even during a long listing.
        Safe to interrupt and run again.
        """
        if verify is None:
            verify = self.backend.reads_are_local
        async with self._recovering:
            # Journaled small blobs have no file yet: write them, so the listing
            # shows every blob the store holds (and counts them as skipped).
            await self.spill_journal()
            report = _RecoverTally()
            send, receive = trio.open_memory_channel[list[Listing]](4)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._list_backend, send)
                async with receive:
                    async for items in receive:
                        await self._recover_batch(items, verify, report)
                        if progress is not None:
                            called = progress(report.listed, report.added)
                            if inspect.isawaitable(called):
                                await called
            if report.corrupt:
                log.warning(
                    "recover: %d blobs do not match their names: %s",
                    len(report.corrupt),
                    ", ".join(report.corrupt[:5]),
                )
            return RecoverReport(
                report.listed, report.added, report.skipped, self.backend.ignored, report.corrupt
            )

    async def _list_backend(self, send: trio.MemorySendChannel[list[Listing]]) -> None:
        """Feed the backend's listing into *send* in batches, from a thread."""

        def produce() -> None:
            batch: list[Listing] = []
            for item in self.backend.list():
                batch.append(item)
                if len(batch) >= HASHES_BATCH:
                    trio.from_thread.run(send.send, batch)
                    batch = []
            if batch:
                trio.from_thread.run(send.send, batch)

        async with send:
            await trio.to_thread.run_sync(produce, limiter=self.limiters.blob_io)

    async def _recover_batch(
        self, items: list[Listing], verify: bool, report: _RecoverTally
    ) -> None:
        batch: list[CommitOp] = []
        for item in items:
            report.listed += 1
            if self.index.has(item.sha256):
                report.skipped += 1
            elif verify and not await trio.to_thread.run_sync(
                self._verify, item.sha256, limiter=self.limiters.hash_cpu
            ):
                report.corrupt.append(item.sha256.hex())
            else:
                batch.append(AdoptBlob(item.sha256, item.size))
        await self._adopt(batch)
        report.added += len(batch)

    async def _adopt(self, ops: list[CommitOp]) -> None:
        if ops:
            results = await self._committer.submit_many(ops)
            self._announce()
            self._tell(added=[row for row in results if isinstance(row, BlobRow)])

    def _verify(self, sha256: Sha256) -> bool:
        hasher = hashlib.sha256()
        with self.backend.open(sha256) as reader:
            offset = 0
            while piece := reader.read(offset, 4 * READ_CHUNK):
                hasher.update(piece)
                offset += len(piece)
        return hasher.digest() == sha256

    # -- network and parsers --------------------------------------------------------
    # Thin delegations to axonfs.fetch and axonfs.parsers (owned by the control-socket
    # work); the reference's names, arguments and argument quirks are kept.

    async def wget(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: bytes | str | dict[str, Any] | None = None,
        method: str = "GET",
        ssl: bool = True,
        timeout: float | None = None,
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
        *,
        progress: Callable[[int, int | None], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Download *url* into the store; see :func:`axonfs.fetch.wget`.

        *progress* (in-process callers only) is told the bytes received so far.
        """
        from axonfs import fetch

        return await fetch.wget(
            self,
            url,
            params=params,
            headers=headers,
            json=json,
            body=body,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
            progress=progress,
        )

    async def wput(
        self,
        sha256: bytes,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str = "PUT",
        ssl: bool = True,
        timeout: float | None = None,
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a blob to *url*; see :func:`axonfs.fetch.wput`."""
        from axonfs import fetch

        return await fetch.wput(
            self,
            sha256,
            url,
            params=params,
            headers=headers,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    async def postfiles(
        self,
        fields: Sequence[dict[str, Any]],
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        ssl: bool = True,
        timeout: float | None = None,
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a multipart form of values and blobs; see :func:`axonfs.fetch.postfiles`."""
        from axonfs import fetch

        return await fetch.postfiles(
            self,
            fields,
            url,
            params=params,
            headers=headers,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    def readlines(self, sha256: str, errors: str | None = "ignore") -> AsyncIterator[str]:
        """Yield the lines of a text blob (*sha256* as hex, like the reference)."""
        from axonfs import parsers

        return parsers.readlines(self, sha256, errors)

    def csvrows(
        self, sha256: bytes, dialect: str = "excel", errors: str | None = "ignore", **fmtparams: Any
    ) -> AsyncIterator[tuple[str, ...]]:
        """Yield the rows of a CSV blob as tuples (*sha256* as raw bytes)."""
        from axonfs import parsers

        return parsers.csvrows(self, sha256, dialect, errors, **fmtparams)

    def jsonlines(self, sha256: str, errors: str | None = "ignore") -> AsyncIterator[Any]:
        """Yield the JSON value of each non-blank line (*sha256* as hex)."""
        from axonfs import parsers

        return parsers.jsonlines(self, sha256, errors)

    def iterMpkFile(self, sha256: str) -> AsyncIterator[Any]:  # noqa: N802 - reference name
        """Yield the items of a msgpack blob (*sha256* as hex)."""
        from axonfs import parsers

        return parsers.iter_msgpack(self, sha256)


class Upload:
    """A reusable streaming writer (the reference's UpLoad).

    ``write()`` appends and hashes; ``save()`` commits what was written as one
    blob and starts afresh. Leaving the ``async with`` block discards unsaved
    bytes. Memory stays flat: bytes go to a direct-mode spool file (see
    :mod:`axonfs.store.spool`), which holds at most one stage in memory (and,
    with ``write(behind=True)``, the one write still being written).
    """

    def __init__(self, axon: Axon) -> None:
        self._axon = axon
        self._spool: Spool | None = None
        self._behind: trio.Event | None = None
        """Set once the write left behind (``write(behind=True)``) is done."""
        self._behind_error: BaseException | None = None

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, byts: bytes, behind: bool = False) -> None:
        """Append *byts*.

        *behind*: a large write returns once it has begun, and is hashed and
        written while the caller sends the next one (a client that waits for
        each write's answer then waits for none of the disk's work). Its
        error, if any, is raised by this upload's next ``write`` or ``save``,
        which first drop the unsaved bytes.
        """
        await self._caught_up()
        spool = await self._current()
        if len(byts) <= INLINE_IO_MAX:
            if spool.fills_stage(len(byts)):  # this one writes a whole stage to disk
                await trio.to_thread.run_sync(
                    spool.append, byts, limiter=self._axon.limiters.disk_io
                )
            else:
                spool.append(byts)  # a copy into the spool's stage, and a small hash
            return
        background = self._axon._background
        if behind and background is not None:
            done = self._behind = trio.Event()
            background.start_soon(self._write_behind, spool, byts, done)
            return
        await self._write_large(spool, byts)

    async def _write_behind(self, spool: Spool, byts: bytes, done: trio.Event) -> None:
        try:
            await self._write_large(spool, byts)
        except BaseException as exc:
            # Cancelled too (the Axon is closing): the spool misses these bytes.
            self._behind_error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            done.set()

    async def _caught_up(self) -> None:
        """Wait for the write left behind. If it failed, drop the unsaved
        bytes (they are not what the caller wrote) and raise its error."""
        if self._behind is None:
            return
        await self._behind.wait()
        self._behind = None
        error, self._behind_error = self._behind_error, None
        if error is None:
            return
        await self.close()
        if isinstance(error, Exception):
            raise error
        raise AxonError("a write of this upload was interrupted: the daemon is stopping")

    async def _write_large(self, spool: Spool, byts: bytes) -> None:
        # Write and hash in two threads at once: hashing is the bottleneck,
        # and the O_DIRECT write of the stage then costs nothing extra.
        offset = spool.size
        limiters = self._axon.limiters
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(
                        trio.to_thread.run_sync,
                        spool.hash_bytes,
                        byts,
                        offset,
                        limiter=limiters.hash_cpu,
                    )
                )
                await trio.to_thread.run_sync(
                    spool.write_bytes, byts, offset, limiter=limiters.disk_io
                )
        except BaseExceptionGroup as group:  # a full disk reaches the caller as its OSError
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def save(self) -> tuple[int, bytes]:
        """Commit the bytes written since the last save; return ``(size, sha256)``."""
        await self._caught_up()
        spool = await self._current()
        self._spool = None
        try:
            row = await self._axon.save_spool(spool)
        except BaseException:
            spool.discard()
            raise
        return row.size, bytes(row.sha256)

    async def close(self) -> None:
        if self._behind is not None:
            with trio.CancelScope(shield=True):  # bounded: one write
                await self._behind.wait()
            self._behind, self._behind_error = None, None
        if self._spool is not None:
            spool, self._spool = self._spool, None
            with trio.CancelScope(shield=True):  # a cancelled upload must not leak its spool
                await trio.to_thread.run_sync(spool.discard)

    async def _current(self) -> Spool:
        if self._spool is None:
            # Direct mode: an upload only appends, and its bytes are bound for the disk.
            self._spool = await trio.to_thread.run_sync(
                partial(self._axon.store.new_spool, direct=True)
            )
        return self._spool


def _range_of(filesize: int, offs: int | None, size: int | None) -> tuple[int, int]:
    """Validate a get() range; return ``[start, end)`` clipped to the blob."""
    if offs is None and size is None:
        return 0, filesize
    if offs is None or size is None:
        raise BadArg("offs and size must be given together", offs=offs, size=size)
    if offs < 0:
        raise BadArg("Offs must be >= 0", offs=offs)
    if size < 1:
        raise BadArg("Size must be >= 1", size=size)
    return offs, min(filesize, offs + size)


def _in_memory(data: bytes) -> AddBlob | None:
    """An add that carries a small blob's bytes (hashed here: a few µs), else None."""
    if len(data) > INLINE_IO_MAX:
        return None
    data = bytes(data)
    return AddBlob(Sha256(hashlib.sha256(data).digest()), len(data), data=data)


def _is_digest(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 32


def now_ms() -> int:
    return time.time_ns() // 1_000_000
