"""The virtual tree the mount shows; defined here and only here.

::

    /                      root (xattrs user.axonfs.socket, user.axonfs.pid)
    /by-sha256/<hex>       one read-only file per blob
    /history/YYYY-MM-DD/   one directory per UTC day with rows
        HHMMSS.mmm-<hex>   symlink to ../../by-sha256/<hex>, in added order
    /history.log           one line per sequence row; only ever grows
    /incoming/...          writable scratch tree (axonfs.incoming)

Inode numbers (64 bits, stable for the life of the store except /incoming):

============================== =========================================
``1`` ... ``5``                 root, by-sha256, incoming, history,
                                history.log
``DAY_BASE + day``              /history/<day> (days since 1970-01-01)
``INCOMING_BASE + n``           entries below /incoming (per daemon run)
``BLOB_BASE + indx``            /by-sha256/<hex>; *indx* is the blob's
                                sequence number in the index
``LINK_BASE + indx``            the blob's /history symlink
============================== =========================================

Directory offsets are stable under concurrent ingest: /by-sha256 lists in
added order with ``next_id = indx + 1``; a history day lists by
``(millisecond, indx)`` packed into one integer; /incoming lists by inode.
Listings read the index a bounded batch at a time, so memory stays flat
whatever the number of blobs.

Errors are raised as ``OSError(errno)`` (tree rules) or
:class:`~axonfs.errors.AxonError` (the store); :mod:`axonfs.ops` maps both.

Concurrency: index reads are inline point reads or bounded scans on the trio
thread (see :mod:`axonfs.store.index`); anything slower runs in a thread.
"""

from __future__ import annotations

import collections
import datetime
import errno
import logging
import mmap
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyfuse3

from axonfs.axon import Axon
from axonfs.backends.base import BlobReader
from axonfs.backends.local import LocalReader
from axonfs.fuseattrs import set_reported_ino
from axonfs.hashing import Sha256, is_sha256_hex
from axonfs.historylog import HistoryLog, iso_time
from axonfs.incoming import INCOMING_BASE, INCOMING_INODE, Dir, File, Incoming, IncomingFile, Node
from axonfs.kernelcache import KernelCache, NoKernelCache
from axonfs.store.index import BlobRow

log = logging.getLogger(__name__)

ROOT_INODE = 1
BY_SHA256_INODE = 2
HISTORY_INODE = 4
HISTORY_LOG_INODE = 5
DAY_BASE = 1 << 24
BLOB_BASE = 1 << 40
LINK_BASE = 1 << 52

IMMUTABLE_TIMEOUT = 3600.0
"""Entry/attribute cache time of things that never change (blobs, static dirs)."""
MUTABLE_TIMEOUT = 1.0
"""Cache time of /incoming entries and history days."""
BLOCK_SIZE = 1 << 20
"""st_blksize: tools size their I/O by it (cp, cat), and FUSE requests follow."""
MAP_WINDOW = 16 << 20
"""Bytes of a blob file mapped at once to answer reads (see :class:`_MappedBlob`)."""
LIST_BATCH = 128
"""Index rows read per scan while listing a directory."""
DELETED_REMEMBERED = 65_536
"""Deleted blobs whose names are dropped from the kernel again if they come back."""
DAY_MS = 86_400_000
_OFFSET_INDX_BITS = 36  # history-day offsets: ms-in-day << 36 | indx

XATTR_PREFIX = "user.axonfs."
BLOB_XATTRS = ("md5", "sha1", "sha256", "sha512", "added")

_ROOT_ENTRIES = (("by-sha256", BY_SHA256_INODE), ("history", HISTORY_INODE),
                 ("history.log", HISTORY_LOG_INODE), ("incoming", INCOMING_INODE))


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass(frozen=True, slots=True)
class TreeOptions:
    """What the tree needs from the mount's configuration."""

    allow_delete: bool = False
    socket_path: Path | None = None
    daemon_pid: int = 0


# -- open handles --------------------------------------------------------------


class OpenFile:
    """An open file of the tree: what ops keeps per file handle."""

    keep_cache = False
    direct_io = False

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise _error(errno.EBADF)

    async def write(self, offset: int, data: bytes) -> int:
        raise _error(errno.EBADF)

    async def flush(self) -> None:
        return None

    async def release(self) -> None:
        return None


class BlobFile(OpenFile):
    """An open /by-sha256 blob: immutable, so the kernel may keep its pages.

    A blob in a local file is answered with slices of a memory map of it, on
    the trio thread: the kernel then copies the reply straight from the
    blob's page-cache pages, with no ``pread`` copy and no thread round trip
    (a 1 MiB read costs ~0.1 ms instead of ~0.6 ms). Other backends go
    through :meth:`Axon.read <axonfs.axon.Axon.read>`.
    """

    keep_cache = True

    def __init__(self, axon: Axon, reader: BlobReader) -> None:
        self.axon = axon
        self.reader = reader
        self.local = reader if isinstance(reader, LocalReader) and reader.size > 0 else None
        self.mapped = _MappedBlob(self.local.fd, self.local.size) if self.local else None

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        # A slice of the map is copied by the kernel while it sends the reply,
        # on this thread: only when the pages are in memory. A cold read goes
        # to a worker thread instead, so a disk wait never stalls the loop.
        if self.mapped is not None and self.local is not None \
                and self.local.is_cached(offset, size):
            return self.mapped.read(offset, size)
        return await self.axon.read(self.reader, offset, size)

    async def release(self) -> None:
        if self.mapped is not None:
            self.mapped.close()
        self.reader.close()


class _MappedBlob:
    """Reads of an immutable local blob file as slices of a sliding memory map.

    Only a window of :data:`MAP_WINDOW` bytes is mapped at a time, so the
    pages a read touches stay counted in the daemon's RSS only until the
    window moves on (a replaced window is unmapped once the replies still
    holding slices of it are sent). A page fault on a blob the disk no longer
    has cannot happen: blob files are never truncated, and an unlinked one
    stays readable while mapped.
    """

    __slots__ = ("fd", "size", "_map", "_start", "_end")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._map: mmap.mmap | None = None
        self._start = self._end = 0

    def read(self, offset: int, size: int) -> memoryview | bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        if self._map is None or offset < self._start or end > self._end:
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            length = min(max(MAP_WINDOW, end - start), self.size - start)
            self._map = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ,
                                  offset=start)
            self._start, self._end = start, start + length
        return memoryview(self._map)[offset - self._start:end - self._start]

    def close(self) -> None:
        # Slices still held by replies in flight keep the old map alive; it is
        # unmapped when the last of them is dropped.
        self._map = None


class HistoryLogFile(OpenFile):
    """An open /history.log; direct I/O so ``tail -f`` always sees new lines."""

    direct_io = True

    def __init__(self, history_log: HistoryLog) -> None:
        self.history_log = history_log

    async def read(self, offset: int, size: int) -> bytes:
        return await self.history_log.read(offset, size)


class IncomingOpenFile(OpenFile):
    """An open /incoming file; delegates to :class:`~axonfs.incoming.Incoming`."""

    def __init__(self, incoming: Incoming, handle: IncomingFile) -> None:
        self.incoming = incoming
        self.handle = handle

    async def read(self, offset: int, size: int) -> bytes:
        return await self.incoming.read(self.handle, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        return await self.incoming.write(self.handle, offset, data)

    async def flush(self) -> None:
        await self.incoming.flush(self.handle)

    async def release(self) -> None:
        await self.incoming.release(self.handle)


# -- the tree ------------------------------------------------------------------


class Vfs:
    """The tree: inodes, names, attributes, listings, xattrs and opening.

    It watches the store (:meth:`Axon.watch <axonfs.axon.Axon.watch>`): a blob
    deleted or added by any front end has its names dropped from the
    kernel's cache at once, so ``stat`` and ``cat`` agree with ``has``.
    """

    def __init__(self, axon: Axon, incoming: Incoming, options: TreeOptions,
                 kernel: KernelCache | None = None) -> None:
        self.axon = axon
        self.index = axon.index
        self.incoming = incoming
        self.options = options
        self.kernel: KernelCache = kernel or NoKernelCache()
        self.history_log = HistoryLog(axon.index)
        self.started_ns = time.time_ns()
        self.uid, self.gid = os.getuid(), os.getgid()
        self._deleted: collections.OrderedDict[Sha256, None] = collections.OrderedDict()
        incoming.links_changed = self._links_changed
        axon.watch(self)

    # -- the store changed ------------------------------------------------------

    def blobs_added(self, rows: Sequence[BlobRow]) -> None:
        for row in rows:
            if self._deleted.pop(row.sha256, 0) is None:
                # A name the kernel saw before the delete may still point at
                # the old inode if a lookup raced the delete.
                self.kernel.forget_entry(BY_SHA256_INODE, row.sha256.hex())

    def blobs_deleted(self, rows: Sequence[BlobRow]) -> None:
        for row in rows:
            self.kernel.forget_entry(BY_SHA256_INODE, row.sha256.hex())
            day, ms_in_day = divmod(row.added_ns // 1_000_000, DAY_MS)
            self.kernel.forget_entry(DAY_BASE + day, _link_name(ms_in_day, row.sha256))
            self.incoming.blob_deleted(row.sha256)
            self._deleted[row.sha256] = None
            if len(self._deleted) > DELETED_REMEMBERED:
                self._deleted.popitem(last=False)

    def _links_changed(self, sha256: Sha256) -> None:
        row = self.axon.stat(sha256)
        if row is not None:
            self.kernel.forget_attrs(BLOB_BASE + row.indx)

    # -- names and attributes ---------------------------------------------------

    async def lookup(self, parent: int, name: str) -> pyfuse3.EntryAttributes:
        if parent == ROOT_INODE:
            for entry_name, inode in _ROOT_ENTRIES:
                if entry_name == name:
                    return await self.getattr(inode)
            raise _error(errno.ENOENT)
        if parent == BY_SHA256_INODE:
            return self._blob_attrs(self._blob_by_name(name))
        if parent == HISTORY_INODE:
            return self._day_attrs(self._day_by_name(name))
        if DAY_BASE <= parent < INCOMING_BASE:
            return self._link_attrs(self._link_by_name(parent - DAY_BASE, name))
        if parent == INCOMING_INODE or INCOMING_BASE <= parent < BLOB_BASE:
            return self.node_attrs(self.incoming.lookup(parent, name))
        raise _error(errno.ENOTDIR)

    async def getattr(self, inode: int) -> pyfuse3.EntryAttributes:
        if inode in (ROOT_INODE, BY_SHA256_INODE, HISTORY_INODE):
            return self._dir_attrs(inode, self.started_ns, IMMUTABLE_TIMEOUT)
        if inode == HISTORY_LOG_INODE:
            return self._history_log_attrs(await self.history_log.size())
        if inode >= LINK_BASE:
            return self._link_attrs(self._row_by_indx(inode - LINK_BASE))
        if inode >= BLOB_BASE:
            return self._blob_attrs(self._row_by_indx(inode - BLOB_BASE))
        if inode == INCOMING_INODE or inode >= INCOMING_BASE:
            return self.node_attrs(self.incoming.node(inode))
        if inode >= DAY_BASE:
            return self._day_attrs(inode - DAY_BASE)
        raise _error(errno.ENOENT)

    def readlink(self, inode: int) -> str:
        if inode < LINK_BASE:
            raise _error(errno.EINVAL)
        return _link_target(self._row_by_indx(inode - LINK_BASE).sha256)

    def is_incoming(self, inode: int) -> bool:
        return inode == INCOMING_INODE or INCOMING_BASE <= inode < BLOB_BASE

    def _blob_by_name(self, name: str) -> BlobRow:
        # A bad or unknown name raises ENOENT, never cached: the blob may come later.
        if not is_sha256_hex(name):
            raise _error(errno.ENOENT)
        row = self.axon.stat(bytes.fromhex(name))
        if row is None:
            raise _error(errno.ENOENT)
        return row

    def _row_by_indx(self, indx: int) -> BlobRow:
        """The live blob whose sequence row is *indx* (ENOENT if deleted since)."""
        for row, live in self.index.seqn_batch(indx, 1):
            if row.indx == indx and live:
                return BlobRow(row.sha256, row.size, row.indx, row.added_ns)
        raise _error(errno.ENOENT)

    def _day_by_name(self, name: str) -> int:
        try:
            day = datetime.date.fromisoformat(name)
        except ValueError:
            raise _error(errno.ENOENT) from None
        if len(name) != 10 or day.isoformat() != name:
            raise _error(errno.ENOENT)
        number = (day - _EPOCH_DAY).days
        if number < 0 or self._first_live_day(number) != number:
            raise _error(errno.ENOENT)
        return number

    def _link_by_name(self, day: int, name: str) -> BlobRow:
        tick_ms = _parse_link_name(day, name)
        if tick_ms is None:
            raise _error(errno.ENOENT)
        row = self.axon.stat(bytes.fromhex(name[11:]))
        if row is None or row.added_ns // 1_000_000 != tick_ms:
            raise _error(errno.ENOENT)
        return row

    def _base_attrs(self, inode: int, mode: int, timeout: float) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.st_mode = mode
        attrs.st_nlink = 1
        attrs.st_uid, attrs.st_gid = self.uid, self.gid
        attrs.st_blksize = BLOCK_SIZE
        attrs.entry_timeout = attrs.attr_timeout = timeout
        return attrs

    def _dir_attrs(self, inode: int, mtime_ns: int, timeout: float) -> pyfuse3.EntryAttributes:
        attrs = self._base_attrs(inode, stat.S_IFDIR | 0o555, timeout)
        attrs.st_nlink = 2
        _set_times(attrs, mtime_ns)
        return attrs

    def _day_attrs(self, day: int) -> pyfuse3.EntryAttributes:
        return self._dir_attrs(DAY_BASE + day, (day * DAY_MS) * 1_000_000, MUTABLE_TIMEOUT)

    def _blob_attrs(self, row: BlobRow) -> pyfuse3.EntryAttributes:
        attrs = self._base_attrs(BLOB_BASE + row.indx, stat.S_IFREG | 0o444, IMMUTABLE_TIMEOUT)
        attrs.st_nlink = 1 + self.incoming.links.get(row.sha256, 0)
        attrs.st_size = row.size
        attrs.st_blocks = (row.size + 511) // 512
        _set_times(attrs, row.added_ns)
        return attrs

    def _link_attrs(self, row: BlobRow) -> pyfuse3.EntryAttributes:
        attrs = self._base_attrs(LINK_BASE + row.indx, stat.S_IFLNK | 0o777, IMMUTABLE_TIMEOUT)
        attrs.st_size = len(_link_target(row.sha256))
        _set_times(attrs, row.added_ns)
        return attrs

    def _history_log_attrs(self, size: int) -> pyfuse3.EntryAttributes:
        # attr_timeout 0: tail -f polls fstat() and must see the size grow.
        attrs = self._base_attrs(HISTORY_LOG_INODE, stat.S_IFREG | 0o444, 0)
        attrs.entry_timeout = IMMUTABLE_TIMEOUT
        attrs.st_size = size
        attrs.st_blocks = (size + 511) // 512
        _set_times(attrs, time.time_ns())
        return attrs

    def node_attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        attrs = self._base_attrs(node.inode, node.mode, MUTABLE_TIMEOUT)
        attrs.st_uid, attrs.st_gid = node.uid, node.gid
        if isinstance(node, File):
            attrs.st_size = node.size
            attrs.st_blocks = (node.size + 511) // 512
            if node.committed and node.sha256 is not None and node.parent is not None:
                self._as_link_to_blob(attrs, node.sha256)
        else:
            attrs.st_nlink = 2
        _set_times(attrs, node.mtime_ns, node.ctime_ns)
        return attrs

    def _as_link_to_blob(self, attrs: pyfuse3.EntryAttributes, sha256: Sha256) -> None:
        """A committed entry reports its blob's inode number and link count
        (a hard link, so ``du`` counts the bytes once); it keeps its own node id."""
        row = self.axon.stat(sha256)
        if row is not None and set_reported_ino(attrs, BLOB_BASE + row.indx):
            attrs.st_nlink = 1 + self.incoming.links.get(sha256, 0)

    # -- listings -----------------------------------------------------------------

    def opendir(self, inode: int) -> DirListing:
        if inode in (ROOT_INODE, BY_SHA256_INODE, HISTORY_INODE):
            return DirListing(inode)
        if DAY_BASE <= inode < INCOMING_BASE:
            return DirListing(inode)
        if self.is_incoming(inode):
            self.incoming.directory(inode)
            return DirListing(inode)
        raise _error(errno.ENOTDIR)

    def entries(self, listing: DirListing, start: int
                ) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        """Yield ``(name, attrs, next_id)`` from offset *start* (lazily)."""
        inode = listing.inode
        if inode == ROOT_INODE:
            return self._root_entries(start)
        if inode == BY_SHA256_INODE:
            return self._blob_entries(start)
        if inode == HISTORY_INODE:
            return self._day_entries(start)
        if inode < INCOMING_BASE and inode >= DAY_BASE:
            return self._link_entries(inode - DAY_BASE, start)
        if listing.snapshot is None or start == 0:
            listing.snapshot = self.incoming.entries(inode)
        return self._incoming_entries(listing.snapshot, start)

    def _root_entries(self, start: int) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        for position, (name, inode) in enumerate(_ROOT_ENTRIES[start:], start + 1):
            if inode == HISTORY_LOG_INODE:
                yield name, self._history_log_attrs(self.history_log.known_size), position
            elif inode == INCOMING_INODE:
                yield name, self.node_attrs(self.incoming.root), position
            else:
                yield name, self._dir_attrs(inode, self.started_ns, IMMUTABLE_TIMEOUT), position

    def _blob_entries(self, start: int) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        # The hot loop of `ls /by-sha256`: attributes are built in place rather
        # than through _blob_attrs (a BlobRow and three calls per entry), which
        # takes a third off the daemon's time per entry.
        indx = start
        uid, gid = self.uid, self.gid
        mode = stat.S_IFREG | 0o444
        new_attrs = pyfuse3.EntryAttributes
        links = self.incoming.links
        while batch := self.index.seqn_batch(indx, LIST_BATCH):
            for row, live in batch:
                if live:
                    attrs = new_attrs()
                    attrs.st_ino = BLOB_BASE + row.indx
                    attrs.st_mode = mode
                    attrs.st_nlink = 1 + links[row.sha256] if links else 1
                    attrs.st_uid = uid
                    attrs.st_gid = gid
                    attrs.st_blksize = BLOCK_SIZE
                    attrs.entry_timeout = attrs.attr_timeout = IMMUTABLE_TIMEOUT
                    attrs.st_size = size = row.size
                    attrs.st_blocks = (size + 511) // 512
                    attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = row.added_ns
                    yield row.sha256.hex(), attrs, row.indx + 1
            indx = batch[-1][0].indx + 1

    def _day_entries(self, start: int) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        day = self._first_live_day(start)
        while day is not None:
            name = (_EPOCH_DAY + datetime.timedelta(days=day)).isoformat()
            yield name, self._day_attrs(day), day + 1
            day = self._first_live_day(day + 1)

    def _first_live_day(self, day: int) -> int | None:
        """The first day >= *day* holding a live history row, or None."""
        key = (day * DAY_MS, 0)
        while rows := self.index.history_batch(key, None, LIST_BATCH):
            for row in rows:
                if self._is_live(row.sha256, row.indx):
                    return row.tick_ms // DAY_MS
            key = (rows[-1].tick_ms, rows[-1].indx + 1)
        return None

    def _link_entries(self, day: int, start: int
                      ) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        day_ms = day * DAY_MS
        key = (day_ms + (start >> _OFFSET_INDX_BITS), start & ((1 << _OFFSET_INDX_BITS) - 1))
        while rows := self.index.history_batch(key, day_ms + DAY_MS - 1, LIST_BATCH):
            for row in rows:
                if self._is_live(row.sha256, row.indx):
                    blob = BlobRow(row.sha256, row.size, row.indx, 0)
                    attrs = self._link_attrs(blob)
                    _set_times(attrs, row.tick_ms * 1_000_000)
                    next_id = ((row.tick_ms - day_ms) << _OFFSET_INDX_BITS) | (row.indx + 1)
                    yield _link_name(row.tick_ms - day_ms, row.sha256), attrs, next_id
            key = (rows[-1].tick_ms, rows[-1].indx + 1)

    def _incoming_entries(self, snapshot: list[Node], start: int
                          ) -> Iterator[tuple[str, pyfuse3.EntryAttributes, int]]:
        for node in snapshot:
            if node.inode >= start and node.parent is not None:
                yield node.name, self.node_attrs(node), node.inode + 1

    def _is_live(self, sha256: Sha256, indx: int) -> bool:
        row = self.axon.stat(sha256)
        return row is not None and row.indx == indx

    # -- files --------------------------------------------------------------------

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        writing = flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
        if self.is_incoming(inode):
            return IncomingOpenFile(self.incoming, await self.incoming.open(inode, flags, pid))
        if writing:
            raise _error(errno.EROFS)
        if inode == HISTORY_LOG_INODE:
            return HistoryLogFile(self.history_log)
        if BLOB_BASE <= inode < LINK_BASE:
            row = self._row_by_indx(inode - BLOB_BASE)
            return BlobFile(self.axon, await self.axon.open_reader(row.sha256))
        if inode >= LINK_BASE:
            raise _error(errno.ELOOP)
        raise _error(errno.EISDIR)

    async def delete_blob(self, name: str) -> None:
        """``rm /by-sha256/<hex>``: allowed only with ``--allow-delete``."""
        row = self._blob_by_name(name)
        if not self.options.allow_delete:
            raise _error(errno.EPERM)
        await self.axon.del_(row.sha256)

    # -- extended attributes ------------------------------------------------------

    def listxattr(self, inode: int) -> list[str]:
        if inode == ROOT_INODE:
            return [XATTR_PREFIX + "socket", XATTR_PREFIX + "pid"]
        if self._blob_of(inode) is not None:
            return [XATTR_PREFIX + name for name in BLOB_XATTRS]
        return []

    async def getxattr(self, inode: int, name: str) -> bytes:
        if not name.startswith(XATTR_PREFIX):
            # Only user.* attributes exist here. Saying so for the other namespaces
            # (security.selinux, system.posix_acl_*) lets ls -l remember the mount
            # as unsupported after one request, instead of asking twice per file.
            raise _error(pyfuse3.ENOATTR if name.startswith("user.") else errno.ENOTSUP)
        key = name[len(XATTR_PREFIX):]
        if inode == ROOT_INODE:
            return self._root_xattr(key)
        row = self._blob_of(inode)
        if row is None or key not in BLOB_XATTRS:
            raise _error(pyfuse3.ENOATTR)
        if key == "added":
            return iso_time(row.added_ns).encode()
        if key == "sha256":
            return row.sha256.hex().encode()
        return (await self.axon.hashset(row.sha256))[key].encode()

    def _root_xattr(self, key: str) -> bytes:
        if key == "socket" and self.options.socket_path is not None:
            return os.fsencode(self.options.socket_path)
        if key == "pid" and self.options.daemon_pid:
            return str(self.options.daemon_pid).encode()
        raise _error(pyfuse3.ENOATTR)

    def _blob_of(self, inode: int) -> BlobRow | None:
        """The blob an inode shows: a /by-sha256 file or a committed incoming file."""
        if BLOB_BASE <= inode < LINK_BASE:
            try:
                return self._row_by_indx(inode - BLOB_BASE)
            except OSError:
                return None
        if self.is_incoming(inode):
            node = self.incoming.nodes.get(inode)
            if isinstance(node, File) and node.committed and node.sha256 is not None:
                return self.axon.stat(node.sha256)
        return None

    # -- whole filesystem ---------------------------------------------------------

    def statfs(self) -> pyfuse3.StatvfsData:
        """``df``: used = the store's bytes, available = the medium's free space.

        With a ``max_bytes`` limit the size is the limit and available is
        what the limit leaves (or the medium's free space, if less).
        ``df -i`` shows the blob count as used inodes (``f_files - f_ffree``).
        """
        metrics = self.index.metrics()
        used = metrics["size:bytes"]
        usage = self.axon.backend.usage()
        free = usage[1] if usage is not None else 1 << 50
        max_bytes = self.axon.store.limits.max_bytes
        total = used + free
        if max_bytes is not None:
            free = max(0, min(free, max_bytes - used))
            total = max(max_bytes, used)
        frsize = 4096
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = frsize
        data.f_blocks = -(-total // frsize)  # rounded up: a limit of 1 byte is not size 0
        data.f_bfree = data.f_bavail = free // frsize
        data.f_ffree = data.f_favail = 1 << 32
        data.f_files = metrics["file:count"] + data.f_ffree
        data.f_namemax = 255
        return data


@dataclass(eq=False)
class DirListing:
    """An open directory; /incoming listings keep a snapshot per pass."""

    inode: int
    snapshot: list[Node] | None = None


_EPOCH_DAY = datetime.date(1970, 1, 1)


def _set_times(attrs: pyfuse3.EntryAttributes, mtime_ns: int, ctime_ns: int | None = None
               ) -> None:
    attrs.st_atime_ns = attrs.st_mtime_ns = mtime_ns
    attrs.st_ctime_ns = mtime_ns if ctime_ns is None else ctime_ns


def _link_target(sha256: bytes) -> str:
    return f"../../by-sha256/{sha256.hex()}"


def _link_name(ms_in_day: int, sha256: bytes) -> str:
    seconds, millis = divmod(ms_in_day, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}{minutes:02d}{seconds:02d}.{millis:03d}-{sha256.hex()}"


def _parse_link_name(day: int, name: str) -> int | None:
    """The added millisecond a ``HHMMSS.mmm-<hex>`` name in *day* stands for."""
    if len(name) != 75 or name[6] != "." or name[10] != "-" or not is_sha256_hex(name[11:]):
        return None
    digits = name[:6] + name[7:10]
    if not digits.isdigit():
        return None
    hours, minutes, seconds, millis = (int(digits[0:2]), int(digits[2:4]), int(digits[4:6]),
                                       int(digits[6:9]))
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return day * DAY_MS + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


__all__ = ["Vfs", "TreeOptions", "OpenFile", "DirListing", "Dir", "File"]
