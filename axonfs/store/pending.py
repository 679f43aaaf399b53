"""Index changes that are committed and visible but not yet durable.

With a sync interval (``--sync-interval``), a commit of small blobs does not
pay for a synced LMDB transaction. :meth:`Index.apply
<axonfs.store.index.Index.apply>` runs the same transaction body against a
:class:`StagingTxn` instead: its puts and deletes land in :class:`Pending`,
an in-memory layer over LMDB, and in the commit log
(:mod:`axonfs.store.commitlog`), which survives the daemon being killed. Every
read of the index goes through a :class:`ReadView` that shows LMDB with the
layer on top, so a deferred commit is visible the moment it returns. The next
durable write (the interval's sync, or any commit that must be durable)
freezes the layer, writes what it froze into its transaction, and once that
is durable takes it out of the layer: commits made meanwhile stay.

The layer works on LMDB's own terms (named database, key, value or deleted)
rather than on blobs, so the index's transaction bodies run unchanged against
it and nothing here knows the schema.

Concurrency: a commit stages and merges, a sync freezes and thaws, any
thread reads, each holding :attr:`Pending.lock` throughout. A reader holds it
for the life of its view, so the layer cannot be thawed between its LMDB
snapshot and its reads of the layer (which would hide the rows that moved
into LMDB after the snapshot).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import lmdb

if TYPE_CHECKING:
    from lmdb import _StatDict

Database = lmdb._Database | None
"""A named DB of the environment (None: the main DB)."""
Changes = dict[Database, dict[bytes, bytes | None]]
"""Per named DB: key -> new value, or None for a deleted key."""
Counts = dict[Database, tuple[int, int]]
"""Per counted DB: how many more entries, and bytes of values, it has with
the changes than without them."""
_ABSENT = b"\0absent"
"""Compared by identity (``is``): no stored value is this very object."""


class ReadCursor(Protocol):
    """What the index reads with of an ``lmdb.Cursor``."""

    def set_range(self, key: bytes, /) -> bool: ...

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]: ...


class ReadTxn(Protocol):
    """What the index reads with of an ``lmdb.Transaction``: a plain one, or a
    :class:`ReadView` that shows the deferred commits too."""

    def get(self, key: bytes, default: None = None, db: Database = None) -> bytes | None: ...

    def cursor(self, db: Database = None) -> ReadCursor: ...

    def stat(self, db: Database = None) -> _StatDict: ...


class WriteTxn(ReadTxn, Protocol):
    """What the index's commits write with: a real write transaction, or a
    :class:`StagingTxn` that collects a deferred commit."""

    def put(self, key: bytes, value: bytes, *, db: Database = None) -> bool: ...

    def delete(self, key: bytes, *, db: Database = None) -> bool: ...


class Pending:
    """The layer of deferred changes over the LMDB environment.

    Entry counts (``stat(db)["entries"]``) and the bytes of values are kept
    only for the named DBs in *counted*: knowing whether a put adds an entry
    costs a read per put.
    """

    def __init__(self, counted: tuple[Database, ...] = ()) -> None:
        self.counted = frozenset(counted)
        self.lock = threading.RLock()
        self.changes: Changes = {}
        self._sorted: dict[Database, list[bytes]] = {}
        self._counts: Counts = {}
        self.commits = 0
        """Deferred commits merged since the layer was last emptied."""
        self.bytes = 0
        """Bytes of keys and values the layer holds (its memory, roughly)."""

    def __bool__(self) -> bool:
        return self.commits > 0

    def entries_delta(self, db: Database) -> int:
        """How many more entries *db* has with the layer than without it."""
        return self._counts.get(db, (0, 0))[0]

    def bytes_delta(self, db: Database) -> int:
        """How many more bytes of values *db* holds with the layer than without it."""
        return self._counts.get(db, (0, 0))[1]

    def deleted(self, db: Database) -> set[bytes]:
        """The keys of *db* the layer deletes."""
        with self.lock:
            return {key for key, value in self.changes.get(db, {}).items() if value is None}

    def sorted_keys(self, db: Database) -> list[bytes]:
        """The layer's keys of *db* in LMDB order (cached until the next merge)."""
        keys = self._sorted.get(db)
        if keys is None:
            keys = self._sorted[db] = sorted(self.changes.get(db, ()))
        return keys

    def merge(self, staged: StagingTxn, size: int) -> None:
        """Make a staged commit of about *size* bytes part of the layer
        (visible to every reader)."""
        with self.lock:
            for db, changes in staged.changes.items():
                self.changes.setdefault(db, {}).update(changes)
                self._sorted.pop(db, None)
            self.bytes += size
            for db, (entries, size) in staged.counts.items():
                _count(self._counts, db, entries, size)
            self.commits += 1

    def freeze(self) -> Frozen:
        """What the layer holds now, for a sync to write into LMDB while
        commits go on merging into the layer."""
        with self.lock:
            return Frozen(
                {db: dict(changes) for db, changes in self.changes.items()},
                dict(self._counts),
                self.commits,
                self.bytes,
            )

    def thaw(self, frozen: Frozen) -> None:
        """Forget what *frozen* holds: it is durable in LMDB now.

        A key changed again since the freeze stays, with its newer value.
        Until this returns readers may see a row both in LMDB and here, with
        the same value: harmless. Only the other order would hide rows.
        """
        with self.lock:
            for db, changes in frozen.changes.items():
                mine = self.changes.get(db, {})
                for key, value in changes.items():
                    if mine.get(key, _ABSENT) is value:
                        del mine[key]
                if not mine:
                    self.changes.pop(db, None)
                self._sorted.pop(db, None)
            for db, (entries, size) in frozen.counts.items():
                _count(self._counts, db, -entries, -size)
            self.commits -= frozen.commits
            self.bytes -= frozen.bytes


class Frozen:
    """The layer as a sync found it (see :meth:`Pending.freeze`)."""

    __slots__ = ("changes", "counts", "commits", "bytes")

    def __init__(self, changes: Changes, counts: Counts, commits: int, size: int) -> None:
        self.changes = changes
        self.counts = counts
        self.commits = commits
        self.bytes = size

    def write_to(self, txn: lmdb.Transaction[bytes]) -> None:
        """Apply the frozen changes to a write transaction."""
        for db, changes in self.changes.items():
            for key, value in changes.items():
                if value is None:
                    txn.delete(key, db=db)
                else:
                    txn.put(key, value, db=db)


class ReadView:
    """A read transaction that sees LMDB with the layer on top.

    Offers the part of ``lmdb.Transaction`` the index reads with: ``get``,
    ``cursor`` (``set_range`` and iteration) and ``stat``.
    """

    def __init__(self, base: lmdb.Transaction[bytes], pending: Pending, db: Database) -> None:
        self.base = base
        self.pending = pending
        self.db = db

    def get(self, key: bytes, default: None = None, db: Database = None) -> bytes | None:
        db = self.db if db is None else db
        changes = self.pending.changes.get(db)
        if changes is not None:
            value = changes.get(key, _ABSENT)
            if value is not _ABSENT:
                return value
        return self.base.get(key, db=db)

    def cursor(self, db: Database = None) -> ReadCursor:
        db = self.db if db is None else db
        return MergedCursor(
            self.base.cursor(db=db), self.pending.sorted_keys(db), self.pending.changes.get(db, {})
        )

    def stat(self, db: Database = None) -> _StatDict:
        stat = self.base.stat(db)
        stat["entries"] += self.pending.entries_delta(db)
        return stat


class StagingTxn(ReadView):
    """A write transaction whose changes are collected, not committed.

    Reads see LMDB, the layer and this transaction's own changes.
    """

    def __init__(self, base: lmdb.Transaction[bytes], pending: Pending, db: Database) -> None:
        super().__init__(base, pending, db)
        self.changes: Changes = {}
        self.counts: Counts = {}

    def get(self, key: bytes, default: None = None, db: Database = None) -> bytes | None:
        db = self.db if db is None else db
        for changes in (self.changes.get(db), self.pending.changes.get(db)):
            if changes is not None:
                value = changes.get(key, _ABSENT)
                if value is not _ABSENT:
                    return value
        return self.base.get(key, db=db)

    def put(self, key: bytes, value: bytes, *, db: Database = None) -> bool:
        db = self.db if db is None else db
        if db in self.pending.counted:
            old = self.get(key, db=db)
            _count(self.counts, db, int(old is None), len(value) - len(old or b""))
        self.changes.setdefault(db, {})[key] = value
        return True

    def delete(self, key: bytes, *, db: Database = None) -> bool:
        """Delete *key*; True (whether or not it was there: a deferred
        commit does not ask, except in a counted DB)."""
        db = self.db if db is None else db
        if db in self.pending.counted:
            old = self.get(key, db=db)
            if old is None:
                return False
            _count(self.counts, db, -1, -len(old))
        self.changes.setdefault(db, {})[key] = None
        return True

    def cursor(self, db: Database = None) -> ReadCursor:
        raise NotImplementedError("a deferred commit reads by key only")


class MergedCursor:
    """A cursor over one named DB of LMDB with the layer's keys merged in.

    ``set_range(key)`` positions it at the first key >= *key*; iterating
    yields ``(key, value)`` from there on, in key order, skipping deleted keys.
    """

    def __init__(
        self, base: lmdb.Cursor[bytes], keys: list[bytes], changes: dict[bytes, bytes | None]
    ) -> None:
        self._base = base
        self._keys = keys
        self._changes = changes
        self._items: Iterator[tuple[bytes, bytes]] = iter(())
        self._head: tuple[bytes, bytes] | None = None

    def set_range(self, key: bytes) -> bool:
        key = bytes(key)
        self._items = self._merge(self._base.set_range(key), bisect.bisect_left(self._keys, key))
        self._head = next(self._items, None)
        return self._head is not None

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        if self._head is not None:
            head, self._head = self._head, None
            yield head
            yield from self._items

    def _merge(self, base_ok: bool, i: int) -> Iterator[tuple[bytes, bytes]]:
        keys, changes, base = self._keys, self._changes, self._base
        base_key = bytes(base.key()) if base_ok else None
        while True:
            mine = keys[i] if i < len(keys) else None
            if mine is None and base_key is None:
                return
            if mine is not None and (base_key is None or mine <= base_key):
                i += 1
                if mine == base_key:
                    base_key = bytes(base.key()) if base.next() else None
                value = changes[mine]
                if value is not None:
                    yield mine, value
            else:
                assert base_key is not None
                yield base_key, bytes(base.value())
                base_key = bytes(base.key()) if base.next() else None


def _count(counts: Counts, db: Database, entries: int, size: int) -> None:
    """Add *entries* and *size* bytes to the counts of *db*."""
    had_entries, had_size = counts.get(db, (0, 0))
    counts[db] = (had_entries + entries, had_size + size)
