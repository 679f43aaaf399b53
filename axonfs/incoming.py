"""The write path of ``/incoming``: scratch directories and commit-on-close files.

``/incoming`` is a small in-memory tree. Directories are plain scratch
directories. A file's bytes go to a :class:`~axonfs.store.spool.Spool` next to
the blob store, hashed as they arrive when writes are sequential (the spool
re-hashes once at commit otherwise). The file is committed as a blob when the
close that ends its writing arrives (FUSE ``FLUSH``), so ``close(2)`` returns
only once the blob is durable and visible under ``/by-sha256/``, and commit
errors reach the writer.

A file is in one of three states (:class:`FileState`)::

    create ──> WRITING ──(the close that ends a writer's writing)──> COMMITTED
                 ^  │                                                   │
                 │  └──(writer killed, write or commit error)──> revert │
                 └────────(open O_TRUNC, or a write or truncate)────────┘

*revert* returns to COMMITTED if the file was committed before (it keeps
showing that blob), else the entry goes away (nothing was ever stored).
A COMMITTED entry reads the blob, shows it in ``user.axonfs.sha256``, and
reports the blob's inode number and link count, as a hard link would, so
``du`` counts the bytes once. Writing it again (a re-copy, ``>``, ``>>``)
starts a new upload from its bytes (or from nothing, with ``O_TRUNC``) whose
commit replaces what the entry shows; the earlier blob stays stored.

Which close commits. FUSE sends ``FLUSH`` on every ``close()`` of a
descriptor: a shell's ``dup2``-and-close of a redirection, a child's copy
inherited across ``fork`` (a command run while the file is open), a process
exiting. A flush commits when the open file it closes (one ``open()``) has
changed the file since the last commit, and the process that opened it

* is not being killed by a signal (a writer killed mid-copy commits nothing:
  its upload is thrown away when the last descriptor goes), and
* holds no other descriptor of the file any more (read from ``/proc``, see
  :mod:`axonfs.writers`): otherwise this close was a duplicate's or a child's,
  and the writer is not done.

So ``cmd > f``, ``( echo a; /bin/true; echo b ) > f`` and a Python program
that runs a subprocess while its file is open each store one blob, the final
content. Each ``open()`` is its own writer: two programs writing one name
commit at each one's last close, and a close that returned 0 keeps what it
committed even if the other writer is killed later. Not covered: a child
that keeps writing after the process that opened the file closed it commits
again at its own last close (a second blob, the final content). A release
without a committing flush (the kernel sends one per open file after its
last close) commits as a fallback; its errors can only be logged.

After commit the entry stays until it is removed, written again, or
``retention`` seconds pass.

Concurrency: everything runs on the trio thread; spool writes larger than
:data:`INLINE_IO_MAX` (or that create the spool's file) and commits run in
worker threads. The kernel serialises writes to one inode, and a per-file
:class:`trio.Lock` orders writes, truncates and the commit.
"""

from __future__ import annotations

import collections
import enum
import errno
import itertools
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import trio

from axonfs.axon import INLINE_IO_MAX, Axon, BlobReader, Spool
from axonfs.hashbehind import HashBehind
from axonfs.hashing import Sha256
from axonfs.inodes import INCOMING_BASE, INCOMING_INODE
from axonfs.kernelcache import KernelCache, NoKernelCache
from axonfs.writers import ProcWriters, Writers, WriterState

log = logging.getLogger(__name__)

MEMORY_SPOOL_MAX = 64 << 10
"""An upload's bytes stay in memory up to this size (see axonfs.store.spool):
most files of a corpus are small, and a small file then never touches the
spool directory. It bounds what each file being written holds in memory."""
RETENTION_DEFAULT = 3600.0
"""Seconds a committed entry stays listed in ``/incoming`` by default."""
_COPY_CHUNK = 1 << 20
NAME_MAX = 255
"""Longest name in bytes (what statfs reports as f_namemax)."""


def _error(code: int, message: str = "") -> OSError:
    return OSError(code, message or os.strerror(code))


class FileState(enum.Enum):
    """Where an ``/incoming`` file stands (see the module docstring)."""

    WRITING = "writing"
    """An upload is open: the file's bytes are in a spool, not yet a blob."""
    COMMITTED = "committed"
    """The file shows a stored blob."""
    GONE = "gone"
    """Never committed, and its upload was thrown away."""


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

    @property
    def path(self) -> str:
        """The path below the mount point (``incoming/dir/name``)."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))


class Dir(Node):
    """A scratch directory."""

    children: dict[str, Node]

    def __init__(self, inode: int, name: str, mode: int, uid: int, gid: int) -> None:
        super().__init__(inode, name, stat.S_IFDIR | (mode & 0o7777), uid, gid)
        self.children = {}


class File(Node):
    """A file of ``/incoming``: an upload being written and/or a committed blob.

    Attributes:
        state: see :class:`FileState`.
        spool: the upload's bytes (WRITING only).
        hashing: the upload's running hash, when large writes hash behind.
        error: the first write error of the upload; its commit will fail with it.
        sha256: the blob last committed (shown when COMMITTED; kept while
            WRITING, to revert to if the upload is thrown away).
        committed_size: that blob's size.
    """

    state: FileState
    spool: Spool | None
    hashing: HashBehind | None
    error: OSError | None
    sha256: Sha256 | None
    committed_size: int
    handles: set[IncomingFile]
    lock: trio.Lock

    def __init__(self, inode: int, name: str, mode: int, uid: int, gid: int, spool: Spool) -> None:
        super().__init__(inode, name, stat.S_IFREG | (mode & 0o7777), uid, gid)
        self.state = FileState.WRITING
        self.spool = spool
        self.hashing = None
        self.error = None
        self.sha256 = None
        self.committed_size = 0
        self.handles = set()
        self.lock = trio.Lock()

    @property
    def committed(self) -> bool:
        return self.state is FileState.COMMITTED

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else self.committed_size


@dataclass(eq=False)
class IncomingFile:
    """One open file (one ``open()``; shared by its duplicates and forks).

    Attributes:
        changed: this open file created, truncated or wrote the file since
            its last commit: its last close commits.
        killed: its opener was killed; its changes are thrown away.
    """

    node: File
    writable: bool
    pid: int
    changed: bool = False
    killed: bool = False
    reader: BlobReader | None = None
    reader_sha256: Sha256 | None = None
    keep_cache: bool = False
    direct_io: bool = False


class Incoming:
    """The ``/incoming`` tree over an :class:`~axonfs.axon.Axon`.

    Args:
        axon: the store service.
        retention: seconds a committed entry stays listed (0: removed at once).
        kernel: told when an entry goes away or its attributes change without
            a request from the kernel (expiry, a failed commit, a commit).
        writers: what ``/proc`` says of the processes that opened files
            (default: read from ``/proc``, with nothing mounted).
    """

    def __init__(
        self,
        axon: Axon,
        *,
        retention: float = RETENTION_DEFAULT,
        kernel: KernelCache | None = None,
        writers: Writers | None = None,
    ) -> None:
        self.axon = axon
        self.retention = retention
        self.kernel: KernelCache = kernel or NoKernelCache()
        self.writers: Writers = writers or ProcWriters(None)
        self.root = Dir(INCOMING_INODE, "incoming", 0o755, os.getuid(), os.getgid())
        self.nodes: dict[int, Node] = {INCOMING_INODE: self.root}
        self.links: collections.Counter[Sha256] = collections.Counter()
        """How many entries show each blob (its link count, less the /by-sha256 name)."""
        self.links_changed: Callable[[Sha256], None] = lambda sha256: None
        """Called when a blob's count in :attr:`links` changes (set by the tree)."""
        self._inodes = itertools.count(INCOMING_BASE)
        self._expiry: collections.deque[tuple[float, File, Sha256]] = collections.deque()
        self._expiry_wakeup = trio.Event()
        self._uploads_changed = trio.Event()

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

    def rename(
        self,
        parent_old: int,
        name_old: str,
        parent_new: int,
        name_new: str,
        *,
        noreplace: bool = False,
    ) -> None:
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
        node.parent.mtime_ns = time.time_ns()
        node.name = name_new
        node.parent = target_dir
        target_dir.children[name_new] = node
        target_dir.mtime_ns = time.time_ns()

    def change(
        self,
        node: Node,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        mtime_ns: int | None = None,
    ) -> None:
        """``chmod``, ``chown``, ``touch -m``: an entry's own metadata (never the blob's)."""
        if mode is not None:
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        node.ctime_ns = time.time_ns()

    # -- files --------------------------------------------------------------------

    def create(
        self, parent_inode: int, name: str, mode: int, uid: int, gid: int, pid: int
    ) -> IncomingFile:
        """Create an empty file and return a writable handle on it."""
        parent = self._free_slot(parent_inode, name)
        # A memory spool: no file until the upload outgrows MEMORY_SPOOL_MAX.
        node = File(
            next(self._inodes),
            name,
            mode,
            uid,
            gid,
            self.axon.new_spool(memory_max=MEMORY_SPOOL_MAX),
        )
        self._attach(parent, node)
        return self._new_handle(node, writable=True, pid=pid, changed=True)

    async def open(self, inode: int, flags: int, pid: int) -> IncomingFile:
        """Open a file; ``O_TRUNC`` empties it (a new upload if it was committed)."""
        node = self.node(inode)
        if not isinstance(node, File):
            raise _error(errno.EISDIR)
        if node.state is FileState.GONE:
            raise _error(errno.ENOENT)  # its upload failed or was discarded
        truncate = bool(flags & os.O_TRUNC)
        writable = flags & os.O_ACCMODE != os.O_RDONLY or truncate
        handle = self._new_handle(node, writable=writable, pid=pid)
        if truncate:
            try:
                await self.truncate(node, 0, handle)
            except BaseException:
                node.handles.discard(handle)
                raise
        return handle

    async def write(self, handle: IncomingFile, offset: int, data: bytes) -> int:
        if not handle.writable:
            raise _error(errno.EBADF)
        node = handle.node
        async with node.lock:
            spool = await self._writable_spool(node)
            if node.error is not None:  # keep the first failure's errno: ENOSPC stays ENOSPC
                raise _error(node.error.errno or errno.EIO, "an earlier write to this file failed")
            try:
                if len(data) <= INLINE_IO_MAX and not spool.creates_file(offset + len(data)):
                    spool.write_bytes(data, offset)
                else:
                    await trio.to_thread.run_sync(
                        spool.write_bytes, data, offset, limiter=self.axon.limiters.disk_io
                    )
            except OSError as exc:
                node.error = exc
                raise
            await self._hash(node, spool, data, offset)
        self._changed(handle)
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
            return await trio.to_thread.run_sync(
                spool.read, offset, size, limiter=self.axon.limiters.disk_io
            )
        if node.sha256 is None:
            raise _error(errno.EIO)
        if handle.reader is None or handle.reader_sha256 != node.sha256:
            if handle.reader is not None:  # the entry was committed again meanwhile
                handle.reader.close()
            handle.reader = await self.axon.open_reader(node.sha256)
            handle.reader_sha256 = node.sha256
        return await self.axon.read(handle.reader, offset, size)

    async def truncate(self, node: File, size: int, handle: IncomingFile | None = None) -> None:
        """Change a file's size; through *handle* if one is known (its close commits).

        A truncate by path alone (no open file of it is writing) is a whole
        change by itself and is committed at once.
        """
        async with node.lock:
            spool = await self._writable_spool(node, empty=size == 0)
            await self._hashed(node)  # the running hash and a truncate touch the same state
            if spool.size != size:
                await trio.to_thread.run_sync(
                    spool.truncate, size, limiter=self.axon.limiters.disk_io
                )
        writers = [h for h in node.handles if h.writable and not h.killed]
        if handle is not None:
            self._changed(handle)
        elif writers:
            for other in writers:
                self._changed(other)
        else:
            node.mtime_ns = time.time_ns()
            await self._commit(node)

    async def flush(self, handle: IncomingFile) -> None:
        """Commit the file if this close ends its open file's writing (see the module doc).

        Raises:
            OSError, AxonError: the write or the commit failed; the upload is
                gone (the entry shows its earlier commit, if any).
        """
        node = handle.node
        if not handle.changed or node.state is not FileState.WRITING or node.parent is None:
            return
        if node.error is not None:
            error = node.error
            self._revert(node)
            raise error
        writer = self.writers.state(handle.pid)
        if writer is WriterState.KILLED:
            log.info("%s: its writer (pid %d) was killed; not committing", node.path, handle.pid)
            handle.killed = True
            return
        if writer is WriterState.ALIVE and self.writers.holds(handle.pid, node.path):
            return  # a duplicate's or a child's close: the writer is not done
        await self._commit(node)

    async def release(self, handle: IncomingFile) -> None:
        """Drop an open file; commit what it changed if no flush did (see the module doc)."""
        try:
            await self._release(handle)
        finally:
            self._uploads_changed.set()  # for wait_uploads_done

    async def _release(self, handle: IncomingFile) -> None:
        node = handle.node
        node.handles.discard(handle)
        if handle.reader is not None:
            handle.reader.close()
            handle.reader = None
        if node.state is FileState.WRITING and node.parent is not None:
            if handle.changed and not handle.killed:
                try:
                    await self._commit(node)
                except Exception as exc:
                    log.error("%s: commit at release failed: %s", node.path, exc)
            elif not any(h.changed and not h.killed for h in node.handles):
                self._revert(node)  # a killed writer's, or nobody's, changes
        self._maybe_drop(node)

    # -- commit and expiry --------------------------------------------------------

    async def _commit(self, node: File) -> None:
        async with node.lock:
            if node.state is not FileState.WRITING or node.spool is None:
                return
            if node.error is not None:
                error = node.error
                self._revert(node)
                raise error
            await self._hashed(node)
            spool, node.spool = node.spool, None
            try:
                row = await self.axon.save_spool(spool)
            except BaseException:
                spool.discard()
                self._revert(node)
                raise
            self._show(node, row.sha256, row.size)
            self._uploads_changed.set()
            for handle in node.handles:
                handle.changed = False
            log.debug("%s committed as %s (%d bytes)", node.path, row.sha256.hex(), row.size)
            self._schedule_expiry(node)

    def _schedule_expiry(self, node: File) -> None:
        assert node.sha256 is not None
        if self.retention <= 0:
            self._expire(node, node.sha256)
            return
        self._expiry.append((time.monotonic() + self.retention, node, node.sha256))
        self._expiry_wakeup.set()

    async def run_expiry(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Remove committed entries once their retention has passed (runs forever)."""
        task_status.started()
        while True:
            while self._expiry and self._expiry[0][0] <= time.monotonic():
                _, node, sha = self._expiry.popleft()
                self._expire(node, sha)
            if self._expiry:
                await trio.sleep_until(trio.current_time() + self._expiry[0][0] - time.monotonic())
            else:
                self._expiry_wakeup = trio.Event()
                await self._expiry_wakeup.wait()

    def _expire(self, node: File, sha: Sha256) -> None:
        """Remove *node* if it still shows blob *sha* and nobody writes to it."""
        if node.parent is None or node.state is not FileState.COMMITTED or node.sha256 != sha:
            return
        self._remove(node)

    def blob_deleted(self, sha256: Sha256) -> None:
        """A blob left the store: entries showing it go, uploads forget it."""
        for node in list(self.nodes.values()):
            if not isinstance(node, File) or node.sha256 != sha256:
                continue
            if node.state is FileState.COMMITTED and node.parent is not None:
                self._remove(node)
            if node.state is FileState.WRITING:
                node.sha256, node.committed_size = None, 0  # nothing to revert to

    def uploads(self) -> list[File]:
        """The files being written: what shutting down now would discard."""
        return [
            node
            for node in self.nodes.values()
            if isinstance(node, File) and node.state is FileState.WRITING
        ]

    async def wait_uploads_done(self) -> None:
        """Return once no file is being written (each was committed or abandoned)."""
        while self.uploads():
            self._uploads_changed = trio.Event()
            await self._uploads_changed.wait()

    def close(self) -> None:
        """Discard every uncommitted upload (daemon shutdown), saying which."""
        for node in list(self.nodes.values()):
            if isinstance(node, File) and node.spool is not None:
                log.warning(
                    "%s: discarded at shutdown while being written (%d bytes, not "
                    "stored; its writer gets ENOTCONN)",
                    node.path,
                    node.size,
                )
                self._drop_upload(node)

    # -- state changes ------------------------------------------------------------

    def _show(self, node: File, sha256: Sha256, size: int) -> None:
        """WRITING -> COMMITTED: the entry shows blob *sha256*."""
        node.state = FileState.COMMITTED
        node.sha256, node.committed_size = sha256, size
        node.mtime_ns = time.time_ns()
        if node.parent is not None:
            self._link(sha256, +1)
        self.kernel.forget_attrs(node.inode)  # its inode number, size and links changed

    def _start_upload(self, node: File, spool: Spool) -> None:
        """COMMITTED -> WRITING: a new upload, starting from *spool*."""
        if node.state is FileState.COMMITTED and node.parent is not None:
            assert node.sha256 is not None
            self._link(node.sha256, -1)
        node.state = FileState.WRITING
        node.spool = spool
        node.error = None
        node.mtime_ns = time.time_ns()

    def _revert(self, node: File) -> None:
        """WRITING -> COMMITTED (its earlier blob) or GONE: the upload is thrown away."""
        self._drop_upload(node)
        for handle in node.handles:
            handle.changed = False
        if node.state is not FileState.WRITING:
            return
        if node.sha256 is not None:
            node.state = FileState.COMMITTED
            if node.parent is not None:
                self._link(node.sha256, +1)
            self.kernel.forget_attrs(node.inode)
            return
        node.state = FileState.GONE
        if node.parent is not None:
            self._remove(node)

    def _changed(self, handle: IncomingFile) -> None:
        handle.changed, handle.killed = True, False
        handle.node.mtime_ns = time.time_ns()

    def _link(self, sha256: Sha256, delta: int) -> None:
        self.links[sha256] += delta
        if self.links[sha256] <= 0:
            del self.links[sha256]
        self.links_changed(sha256)

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    async def _hashed(node: File) -> None:
        """Wait until every write so far is in the spool's running hash."""
        if node.hashing is not None:
            await node.hashing.wait()
            node.hashing = None

    @staticmethod
    def _drop_upload(node: File) -> None:
        if node.hashing is not None:
            node.hashing.cancel()
            node.hashing = None
        if node.spool is not None:
            node.spool.discard()
            node.spool = None
        node.error = None

    async def _writable_spool(self, node: File, *, empty: bool = False) -> Spool:
        """The upload to change; a committed file starts a new one holding its
        bytes (or none, if it is about to be emptied)."""
        if node.state is FileState.WRITING and node.spool is not None:
            return node.spool
        if node.state is FileState.GONE or node.sha256 is None:
            raise _error(errno.ENOENT)
        if empty:
            spool = self.axon.new_spool(memory_max=MEMORY_SPOOL_MAX)
        else:
            spool = await trio.to_thread.run_sync(
                self._spool_from_blob, node.sha256, limiter=self.axon.limiters.disk_io
            )
        if node.state is FileState.WRITING and node.spool is not None:  # raced: keep theirs
            spool.discard()
            return node.spool
        self._start_upload(node, spool)
        return spool

    def _spool_from_blob(self, sha256: Sha256) -> Spool:
        spool = self.axon.new_spool(memory_max=MEMORY_SPOOL_MAX)
        try:
            with self.axon.open_blob(sha256) as reader:
                while piece := reader.read(spool.size, _COPY_CHUNK):
                    spool.append(piece)
                    spool.hash_bytes(piece, spool.size - len(piece))
        except BaseException:
            spool.discard()
            raise
        return spool

    def _new_handle(
        self, node: File, *, writable: bool, pid: int, changed: bool = False
    ) -> IncomingFile:
        handle = IncomingFile(node, writable, pid, changed=changed)
        node.handles.add(handle)
        return handle

    def _remove(self, node: Node) -> None:
        """Take an entry out of the tree without a request from the kernel."""
        assert node.parent is not None
        parent_inode, name = node.parent.inode, node.name
        self._detach(node)
        self.kernel.forget_entry(parent_inode, name)

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
        if isinstance(node, File) and node.state is FileState.COMMITTED:
            assert node.sha256 is not None
            self._link(node.sha256, +1)

    def _detach(self, node: Node) -> None:
        if node.parent is not None:
            node.parent.children.pop(node.name, None)
            node.parent.mtime_ns = time.time_ns()
            node.parent = None
            if isinstance(node, File) and node.state is FileState.COMMITTED:
                assert node.sha256 is not None
                self._link(node.sha256, -1)
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        """Free an inode nobody can reach any more."""
        if node.parent is not None or node.lookups > 0 or node.inode == INCOMING_INODE:
            return
        if isinstance(node, File):
            if node.handles:
                return
            self._drop_upload(node)
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
