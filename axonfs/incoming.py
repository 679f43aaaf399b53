"""The write path of ``/incoming``: scratch directories and commit-on-close files.

``/incoming`` is a small in-memory tree. Directories are plain scratch
directories. A file's bytes go to a :class:`~axonfs.store.spool.Spool` next to
the blob store, hashed as they arrive when writes are sequential (the spool
re-hashes once at commit otherwise). The file is committed as a blob when it
is closed (FUSE ``FLUSH``), so ``close(2)`` returns only once the blob is
durable and visible under ``/by-sha256/``, and commit errors reach the writer.
A failed or abandoned upload leaves nothing behind: its spool is removed and
its entry disappears.

After commit the entry stays a read-only regular file showing the blob (with
``user.axonfs.sha256``) until it is removed or ``retention`` seconds pass
(decision D1 of the house style).

Which close commits: FUSE sends ``FLUSH`` on every ``close()`` of a descriptor,
including the implicit ones of a process that exits. A flush commits when the
file has unflushed writes and no other writable open handle of it is still
unflushed. A flush sent while the process that opened the file is dying from
a signal (``kill``, Ctrl-C) does not commit: the upload is discarded when the
last handle is released ("a writer killed mid-copy commits nothing").

Concurrency: everything runs on the trio thread; spool writes larger than
:data:`INLINE_IO_MAX` (or that create the spool's file) and commits run in
worker threads. The kernel serialises
writes to one inode, and a per-file :class:`trio.Lock` orders writes, truncates
and the commit.
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import trio

from axonfs.axon import INLINE_IO_MAX, Axon
from axonfs.backends.base import BlobReader
from axonfs.hashbehind import HashBehind
from axonfs.hashing import Sha256
from axonfs.store.spool import Spool

log = logging.getLogger(__name__)

INCOMING_INODE = 3
"""The inode of ``/incoming`` itself."""
INCOMING_BASE = 1 << 32
"""Inodes of entries below ``/incoming`` start here (see :mod:`axonfs.vfs`)."""
MEMORY_SPOOL_MAX = 64 << 10
"""An upload's bytes stay in memory up to this size (see axonfs.store.spool):
most files of a corpus are small, and a small file then never touches the
spool directory. It bounds what each file being written holds in memory."""
RETENTION_DEFAULT = 3600.0
"""Seconds a committed entry stays listed in ``/incoming`` by default."""
_COPY_CHUNK = 1 << 20
_PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit()
NAME_MAX = 255
"""Longest name in bytes (what statfs reports as f_namemax)."""


def _error(code: int, message: str = "") -> OSError:
    return OSError(code, message or os.strerror(code))


class Node:
    """An entry of the ``/incoming`` tree (file or directory)."""

    inode: int
    name: str
    parent: Dir | None
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int
    lookups: int

    def __init__(self, inode: int, name: str, mode: int, uid: int, gid: int) -> None:
        self.inode = inode
        self.name = name
        self.parent = None
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime_ns = self.ctime_ns = time.time_ns()
        self.lookups = 0


class Dir(Node):
    """A scratch directory."""

    children: dict[str, Node]

    def __init__(self, inode: int, name: str, mode: int, uid: int, gid: int) -> None:
        super().__init__(inode, name, stat.S_IFDIR | (mode & 0o7777), uid, gid)
        self.children = {}


class File(Node):
    """A file being written (``spool`` set) or committed (``sha256`` set)."""

    spool: Spool | None
    sha256: Sha256 | None
    committed_size: int
    handles: set[IncomingFile]
    dirty: bool
    killed: bool
    error: BaseException | None
    lock: trio.Lock

    def __init__(self, inode: int, name: str, mode: int, uid: int, gid: int,
                 spool: Spool) -> None:
        super().__init__(inode, name, stat.S_IFREG | (mode & 0o777), uid, gid)
        self.spool = spool
        self.sha256 = None
        self.committed_size = 0
        self.handles = set()
        self.dirty = True  # a new file is committed even if nothing is written
        self.killed = False
        self.error = None
        self.lock = trio.Lock()
        self.hashing: HashBehind | None = None  # for self.spool, once a large write came

    @property
    def committed(self) -> bool:
        return self.spool is None and self.sha256 is not None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else self.committed_size


@dataclass(eq=False)
class IncomingFile:
    """One open handle of an incoming file."""

    node: File
    writable: bool
    pid: int
    flushed: bool = False
    reader: BlobReader | None = None
    keep_cache: bool = False
    direct_io: bool = False


class Incoming:
    """The ``/incoming`` tree over an :class:`~axonfs.axon.Axon`.

    Args:
        axon: the store service.
        retention: seconds a committed entry stays listed (0: removed at once).
        invalidate: called with ``(parent_inode, name)`` when an entry goes away
            without a request from the kernel (expiry, a failed commit).
    """

    def __init__(self, axon: Axon, *, retention: float = RETENTION_DEFAULT,
                 invalidate: Callable[[int, str], None] = lambda inode, name: None) -> None:
        self.axon = axon
        self.retention = retention
        self.invalidate = invalidate
        self.root = Dir(INCOMING_INODE, "incoming", 0o755, os.getuid(), os.getgid())
        self.nodes: dict[int, Node] = {INCOMING_INODE: self.root}
        self._inodes = itertools.count(INCOMING_BASE)
        self._expiry: collections.deque[tuple[float, File, Sha256]] = collections.deque()
        self._expiry_wakeup = trio.Event()

    # -- tree ---------------------------------------------------------------------

    def node(self, inode: int) -> Node:
        try:
            return self.nodes[inode]
        except KeyError:
            raise _error(errno.ENOENT) from None

    def directory(self, inode: int) -> Dir:
        node = self.node(inode)
        if not isinstance(node, Dir):
            raise _error(errno.ENOTDIR)
        return node

    def lookup(self, parent_inode: int, name: str) -> Node:
        try:
            return self.directory(parent_inode).children[name]
        except KeyError:
            raise _error(errno.ENOENT) from None

    def entries(self, inode: int) -> list[Node]:
        """A snapshot of a directory's entries in inode (creation) order."""
        return sorted(self.directory(inode).children.values(), key=lambda n: n.inode)

    def forget(self, inode: int, count: int) -> None:
        node = self.nodes.get(inode)
        if node is not None:
            node.lookups = max(0, node.lookups - count)
            self._maybe_drop(node)

    def mkdir(self, parent_inode: int, name: str, mode: int, uid: int, gid: int) -> Dir:
        parent = self._free_slot(parent_inode, name)
        node = Dir(next(self._inodes), name, mode, uid, gid)
        self._attach(parent, node)
        return node

    def unlink(self, parent_inode: int, name: str) -> None:
        node = self.lookup(parent_inode, name)
        if isinstance(node, Dir):
            raise _error(errno.EISDIR)
        self._detach(node)

    def rmdir(self, parent_inode: int, name: str) -> None:
        node = self.lookup(parent_inode, name)
        if not isinstance(node, Dir):
            raise _error(errno.ENOTDIR)
        if node.children:
            raise _error(errno.ENOTEMPTY)
        self._detach(node)

    def rename(self, parent_old: int, name_old: str, parent_new: int, name_new: str,
               *, noreplace: bool = False) -> None:
        node = self.lookup(parent_old, name_old)
        target_dir = self.directory(parent_new)
        _check_name(name_new)
        if isinstance(node, Dir) and self._is_within(target_dir, node):
            raise _error(errno.EINVAL, "cannot move a directory into itself")
        existing = target_dir.children.get(name_new)
        if existing is node:
            return
        if existing is not None:
            self._check_replace(node, existing, noreplace)
            self._detach(existing)
        assert node.parent is not None
        del node.parent.children[node.name]
        node.name = name_new
        self._attach(target_dir, node)

    # -- files --------------------------------------------------------------------

    def create(self, parent_inode: int, name: str, mode: int, uid: int, gid: int,
               pid: int) -> IncomingFile:
        """Create an empty file and return a writable handle on it."""
        parent = self._free_slot(parent_inode, name)
        # A memory spool: no file until the upload outgrows MEMORY_SPOOL_MAX.
        node = File(next(self._inodes), name, mode, uid, gid,
                    self.axon.store.new_spool(memory_max=MEMORY_SPOOL_MAX))
        self._attach(parent, node)
        return self._new_handle(node, writable=True, pid=pid)

    def open(self, inode: int, flags: int, pid: int) -> IncomingFile:
        node = self.node(inode)
        if not isinstance(node, File):
            raise _error(errno.EISDIR)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable and node.committed:
            raise _error(errno.EPERM, "committed incoming entries are read-only")
        if node.spool is None and node.sha256 is None:
            raise _error(errno.ENOENT)  # its upload failed or was discarded
        return self._new_handle(node, writable=writable, pid=pid)

    async def write(self, handle: IncomingFile, offset: int, data: bytes) -> int:
        if not handle.writable:
            raise _error(errno.EBADF)
        node = handle.node
        async with node.lock:
            if node.error is not None:  # keep the first failure's errno: ENOSPC stays ENOSPC
                raise _error(getattr(node.error, "errno", None) or errno.EIO,
                             "an earlier write to this file failed")
            spool = await self._writable_spool(node)
            try:
                if len(data) <= INLINE_IO_MAX and not spool.creates_file(offset + len(data)):
                    spool.write_bytes(data, offset)
                else:
                    await trio.to_thread.run_sync(spool.write_bytes, data, offset,
                                                  limiter=self.axon.limiters.disk_io)
            except OSError as exc:
                node.error = exc
                raise
            await self._hash(node, spool, data, offset)
        handle.flushed = False
        node.dirty, node.killed = True, False
        node.mtime_ns = time.time_ns()
        return len(data)

    async def _hash(self, node: File, spool: Spool, data: bytes, offset: int) -> None:
        """Extend the spool's running hash with a write: inline for a small one,
        behind the writes for a large one (see :class:`HashBehind`), and
        behind them for every write once any is waiting there (order matters)."""
        lane = node.hashing if node.hashing is not None and node.hashing.spool is spool else None
        if len(data) <= INLINE_IO_MAX and (lane is None or lane.idle):
            spool.hash_bytes(data, offset)
            return
        if lane is None:
            lane = node.hashing = HashBehind(spool)
        await lane.add(data, offset)

    async def read(self, handle: IncomingFile, offset: int, size: int) -> bytes:
        node = handle.node
        if node.spool is not None:
            spool = node.spool
            return await trio.to_thread.run_sync(spool.read, offset, size,
                                                 limiter=self.axon.limiters.disk_io)
        if handle.reader is None:
            if node.sha256 is None:
                raise _error(errno.EIO)
            handle.reader = await self.axon.open_reader(node.sha256)
        return await self.axon.read(handle.reader, offset, size)

    async def truncate(self, node: File, size: int) -> None:
        if node.committed:
            raise _error(errno.EPERM, "committed incoming entries are read-only")
        async with node.lock:
            spool = await self._writable_spool(node)
            await self._hashed(node)  # the running hash and a truncate touch the same state
            await trio.to_thread.run_sync(spool.truncate, size,
                                          limiter=self.axon.limiters.disk_io)
            node.dirty, node.killed = True, False
            node.mtime_ns = time.time_ns()

    async def flush(self, handle: IncomingFile) -> None:
        """Commit the file if this close ends its writing (see the module doc).

        Raises:
            OSError, AxonError: the write or the commit failed; the upload and
                its entry are gone.
        """
        if not handle.writable:
            return
        handle.flushed = True
        node = handle.node
        if node.error is not None:
            error = node.error
            self._abandon(node)
            raise error
        if not node.dirty or node.parent is None:
            return
        if _killed_by_signal(handle.pid):
            log.info("incoming/%s: its writer (pid %d) was killed; not committing",
                     node.name, handle.pid)
            node.killed = True
            return
        if any(h.writable and not h.flushed for h in node.handles if h is not handle):
            return
        await self._commit(node)

    async def release(self, handle: IncomingFile) -> None:
        """Drop a handle; the last one discards an uncommitted upload."""
        node = handle.node
        node.handles.discard(handle)
        if handle.reader is not None:
            handle.reader.close()
            handle.reader = None
        if node.handles or not node.dirty:
            self._maybe_drop(node)
            return
        if node.killed or node.error is not None or node.parent is None:
            self._abandon(node)
            return
        try:  # unflushed writes (concurrent closes): commit; errors can only be logged
            await self._commit(node)
        except Exception as exc:
            log.error("incoming/%s: commit at release failed: %s", node.name, exc)

    # -- commit and expiry --------------------------------------------------------

    async def _commit(self, node: File) -> None:
        async with node.lock:
            if not node.dirty or node.spool is None:
                return
            await self._hashed(node)
            spool, node.spool = node.spool, None
            try:
                row = await self.axon.save_spool(spool)
            except BaseException:
                spool.discard()
                node.error = None
                self._abandon(node)
                raise
            node.sha256, node.committed_size = row.sha256, row.size
            node.dirty = False
            node.mode = stat.S_IFREG | 0o444
            log.debug("incoming/%s committed as %s (%d bytes)", node.name,
                      row.sha256.hex(), row.size)
            self._schedule_expiry(node)

    def _schedule_expiry(self, node: File) -> None:
        assert node.sha256 is not None
        if self.retention <= 0:
            self._expire(node, node.sha256)
            return
        self._expiry.append((time.monotonic() + self.retention, node, node.sha256))
        self._expiry_wakeup.set()

    async def run_expiry(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                         ) -> None:
        """Remove committed entries once their retention has passed (runs forever)."""
        task_status.started()
        while True:
            while self._expiry and self._expiry[0][0] <= time.monotonic():
                _, node, sha = self._expiry.popleft()
                self._expire(node, sha)
            if self._expiry:
                await trio.sleep_until(trio.current_time()
                                       + self._expiry[0][0] - time.monotonic())
            else:
                self._expiry_wakeup = trio.Event()
                await self._expiry_wakeup.wait()

    def _expire(self, node: File, sha: Sha256) -> None:
        """Remove *node* if it still shows blob *sha* and nobody writes to it."""
        if node.parent is None or node.sha256 != sha or node.dirty:
            return
        parent_inode, name = node.parent.inode, node.name
        self._detach(node)
        self.invalidate(parent_inode, name)

    def close(self) -> None:
        """Discard every uncommitted upload (daemon shutdown)."""
        for node in list(self.nodes.values()):
            if isinstance(node, File) and node.spool is not None:
                self._stop_hashing(node)
                node.spool.discard()
                node.spool = None

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    async def _hashed(node: File) -> None:
        """Wait until every write so far is in the spool's running hash."""
        if node.hashing is not None:
            await node.hashing.wait()
            node.hashing = None

    @staticmethod
    def _stop_hashing(node: File) -> None:
        if node.hashing is not None:
            node.hashing.cancel()
            node.hashing = None

    async def _writable_spool(self, node: File) -> Spool:
        """The spool to write to; a handle still writing after a commit gets a
        fresh spool holding the committed bytes (the next close commits again)."""
        if node.spool is not None:
            return node.spool
        if node.sha256 is None:
            raise _error(errno.EIO)
        node.spool = await trio.to_thread.run_sync(self._spool_from_blob, node.sha256,
                                                   limiter=self.axon.limiters.disk_io)
        node.mode = stat.S_IFREG | 0o644
        return node.spool

    def _spool_from_blob(self, sha256: Sha256) -> Spool:
        spool = self.axon.store.new_spool()
        try:
            with self.axon.store.open_blob(sha256) as reader:
                while piece := reader.read(spool.size, _COPY_CHUNK):
                    spool.append(piece)
        except BaseException:
            spool.discard()
            raise
        return spool

    def _new_handle(self, node: File, *, writable: bool, pid: int) -> IncomingFile:
        handle = IncomingFile(node, writable, pid)
        node.handles.add(handle)
        return handle

    def _abandon(self, node: File) -> None:
        """Forget an upload that must leave nothing: its spool and its entry."""
        self._stop_hashing(node)
        if node.spool is not None:
            node.spool.discard()
            node.spool = None
        node.dirty = False
        if node.parent is not None and node.sha256 is None:
            parent_inode, name = node.parent.inode, node.name
            self._detach(node)
            self.invalidate(parent_inode, name)
        self._maybe_drop(node)

    def _free_slot(self, parent_inode: int, name: str) -> Dir:
        parent = self.directory(parent_inode)
        _check_name(name)
        if name in parent.children:
            raise _error(errno.EEXIST)
        return parent

    def _attach(self, parent: Dir, node: Node) -> None:
        node.parent = parent
        parent.children[node.name] = node
        self.nodes[node.inode] = node
        parent.mtime_ns = time.time_ns()

    def _detach(self, node: Node) -> None:
        if node.parent is not None:
            node.parent.children.pop(node.name, None)
            node.parent.mtime_ns = time.time_ns()
            node.parent = None
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        """Free an inode nobody can reach any more."""
        if node.parent is not None or node.lookups > 0 or node.inode == INCOMING_INODE:
            return
        if isinstance(node, File):
            if node.handles:
                return
            self._stop_hashing(node)
            if node.spool is not None:
                node.spool.discard()
                node.spool = None
        self.nodes.pop(node.inode, None)

    @staticmethod
    def _is_within(node: Dir, ancestor: Dir) -> bool:
        current: Dir | None = node
        while current is not None:
            if current is ancestor:
                return True
            current = current.parent
        return False

    @staticmethod
    def _check_replace(node: Node, existing: Node, noreplace: bool) -> None:
        if noreplace:
            raise _error(errno.EEXIST)
        if isinstance(existing, Dir):
            if not isinstance(node, Dir):
                raise _error(errno.EISDIR)
            if existing.children:
                raise _error(errno.ENOTEMPTY)
        elif isinstance(node, Dir):
            raise _error(errno.ENOTDIR)

    def walk(self) -> Iterator[Node]:
        """Every node reachable from ``/incoming`` (tests and statistics)."""
        pending: list[Node] = [self.root]
        while pending:
            node = pending.pop()
            yield node
            if isinstance(node, Dir):
                pending.extend(node.children.values())


def _check_name(name: str) -> None:
    """Refuse a name longer than NAME_MAX bytes (FUSE itself lets up to 1024 through)."""
    if len(os.fsencode(name)) > NAME_MAX:
        raise _error(errno.ENAMETOOLONG)


def _killed_by_signal(pid: int) -> bool:
    """True if process *pid* is exiting because of a signal.

    The kernel sends the FLUSH of an exiting process's files from ``do_exit()``
    after setting ``PF_EXITING`` and the exit code, which ``/proc/PID/stat``
    shows (fields 9 and 52). Unknown (gone, no permission) counts as alive.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return False
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        flags, exit_code = int(fields[6]), int(fields[49])
    except (IndexError, ValueError):
        return False
    return bool(flags & _PF_EXITING) and (exit_code & 0x7F) != 0
