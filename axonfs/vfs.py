"""The virtual tree the mount shows: the root and its subtrees, one handler each.

::

    /                      root (xattrs user.axonfs.socket, user.axonfs.pid)
    /by-sha256/<hex>       one read-only file per blob        (axonfs.tree.blobs)
    /history/YYYY-MM-DD/   one directory per UTC day with rows (axonfs.tree.history)
        HHMMSS.mmm-<hex>   symlink to ../../by-sha256/<hex>, in added order
    /history.log           one line per sequence row; only ever grows
                                                              (axonfs.tree.historylog)
    /incoming/...          writable scratch tree              (axonfs.tree.incoming)

:class:`Vfs` routes each request to the handler owning the inode it names
(every handler implements :class:`~axonfs.tree.base.Subtree`; the inode
scheme is in :mod:`axonfs.tree.base`) and keeps the rules that span
subtrees: which extended attributes exist, what ``df`` shows, and what the
kernel must forget when a blob comes or goes. A new subtree is a handler
plus one :meth:`Vfs.register` call.

Errors are raised as ``OSError(errno)`` (tree rules) or
:class:`~axonfs.errors.AxonError` (the store); :mod:`axonfs.ops` maps both.

Concurrency: index reads are inline point reads or bounded scans on the trio
thread (see :mod:`axonfs.store.index`); anything slower runs in a thread.
"""

from __future__ import annotations

import bisect
import collections
import errno
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from axonfs.axon import Axon, BlobRow
from axonfs.hashing import Sha256
from axonfs.incoming import Incoming
from axonfs.inodes import BLOB_BASE, BY_SHA256_INODE
from axonfs.kernelcache import KernelCache, NoKernelCache
from axonfs.tree.base import (
    BLOCK_SIZE,
    XATTR_PREFIX,
    AttrChange,
    Attributes,
    Listing,
    OpenFile,
    Owner,
    Subtree,
    TreeOptions,
    error,
    is_writing,
)
from axonfs.tree.blobs import BlobsTree
from axonfs.tree.history import HistoryTree, day_and_name
from axonfs.tree.historylog import HistoryLogTree
from axonfs.tree.incoming import IncomingTree
from axonfs.tree.root import RootDir

DELETED_REMEMBERED = 65_536
"""Deleted blobs whose names are dropped from the kernel again if they come back."""


@dataclass(frozen=True, slots=True)
class FsStats:
    """What ``statfs`` answers (``df``), in the fields of ``struct statvfs``."""

    block_size: int
    fragment_size: int
    blocks: int
    free_blocks: int
    files: int
    free_files: int
    name_max: int


class Vfs:
    """The tree: routes inodes to subtrees; watches the store for the kernel's sake.

    It watches the store (:meth:`Axon.watch <axonfs.axon.Axon.watch>`): a blob
    deleted or added by any front end has its names dropped from the
    kernel's cache at once, so ``stat`` and ``cat`` agree with ``has``.
    """

    def __init__(
        self,
        axon: Axon,
        incoming: Incoming,
        options: TreeOptions,
        kernel: KernelCache | None = None,
    ) -> None:
        self.axon = axon
        self.incoming = incoming
        self.options = options
        self.kernel: KernelCache = kernel or NoKernelCache()
        started_ns = time.time_ns()
        self.root = RootDir(started_ns, options)
        self._starts: list[int] = []
        self._ranges: list[tuple[range, Subtree]] = []
        self.register(self.root)
        self.register(BlobsTree(axon, incoming.links, started_ns, options.allow_delete))
        self.register(HistoryTree(axon, started_ns))
        self.register(HistoryLogTree(axon))
        self.register(IncomingTree(axon, incoming))
        self._deleted: collections.OrderedDict[Sha256, None] = collections.OrderedDict()
        incoming.links_changed = self._links_changed
        axon.watch(self)

    def register(self, subtree: Subtree) -> None:
        """Route *subtree*'s inodes to it; the root lists it under its name."""
        for inodes in subtree.inodes:
            at = bisect.bisect_left(self._starts, inodes.start)
            neighbours = self._ranges[max(0, at - 1) : at + 1]
            if any(
                inodes.start < other.stop and other.start < inodes.stop for other, _ in neighbours
            ):
                raise ValueError(f"{subtree.name!r}: inodes {inodes} are taken")
            self._starts.insert(at, inodes.start)
            self._ranges.insert(at, (inodes, subtree))
        if subtree.name:
            self.root.subtrees.append(subtree)

    def _owner(self, inode: int) -> Subtree | None:
        at = bisect.bisect_right(self._starts, inode) - 1
        if at >= 0:
            inodes, subtree = self._ranges[at]
            if inode < inodes.stop:
                return subtree
        return None

    def _owner_or(self, inode: int, code: int) -> Subtree:
        subtree = self._owner(inode)
        if subtree is None:
            raise error(code)
        return subtree

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
            self.kernel.forget_entry(*day_and_name(row))
            self.incoming.blob_deleted(row.sha256)
            self._deleted[row.sha256] = None
            if len(self._deleted) > DELETED_REMEMBERED:
                self._deleted.popitem(last=False)

    def _links_changed(self, sha256: Sha256) -> None:
        row = self.axon.stat(sha256)
        if row is not None:
            self.kernel.forget_attrs(BLOB_BASE + row.indx)

    # -- names and attributes ---------------------------------------------------

    async def lookup(self, parent: int, name: str) -> Attributes:
        return await self._owner_or(parent, errno.ENOTDIR).lookup(parent, name)

    async def getattr(self, inode: int) -> Attributes:
        return await self._owner_or(inode, errno.ENOENT).getattr(inode)

    def readlink(self, inode: int) -> str:
        return self._owner_or(inode, errno.EINVAL).readlink(inode)

    def remember(self, inode: int) -> None:
        """The kernel took a reference to *inode* (lookup, create, a counted listing)."""
        subtree = self._owner(inode)
        if subtree is not None:
            subtree.remember(inode)

    def forget(self, inode: int, count: int) -> None:
        subtree = self._owner(inode)
        if subtree is not None:
            subtree.forget(inode, count)

    async def setattr(
        self, inode: int, change: AttrChange, open_file: OpenFile | None
    ) -> Attributes:
        return await self._owner_or(inode, errno.EPERM).setattr(inode, change, open_file)

    # -- changes ----------------------------------------------------------------

    async def create(
        self, parent: int, name: str, mode: int, owner: Owner
    ) -> tuple[OpenFile, Attributes]:
        return await self._owner_or(parent, errno.EROFS).create(parent, name, mode, owner)

    def mkdir(self, parent: int, name: str, mode: int, owner: Owner) -> Attributes:
        return self._owner_or(parent, errno.EROFS).mkdir(parent, name, mode, owner)

    async def unlink(self, parent: int, name: str) -> None:
        await self._owner_or(parent, errno.EPERM).unlink(parent, name)

    def rmdir(self, parent: int, name: str) -> None:
        self._owner_or(parent, errno.EPERM).rmdir(parent, name)

    def rename(
        self,
        parent_old: int,
        name_old: str,
        parent_new: int,
        name_new: str,
        *,
        noreplace: bool,
        exchange: bool,
    ) -> None:
        subtree = self._owner(parent_old)
        if subtree is None or self._owner(parent_new) is not subtree:
            raise error(errno.EPERM)
        subtree.rename(
            parent_old, name_old, parent_new, name_new, noreplace=noreplace, exchange=exchange
        )

    def refuse_special(self, parent: int) -> NoReturn:
        """``mknod``, ``symlink``, ``link``: no subtree makes these."""
        raise error(errno.EPERM if self._writable(parent) else errno.EROFS)

    def _writable(self, inode: int) -> bool:
        subtree = self._owner(inode)
        return subtree is not None and subtree.writable

    # -- listings and files -----------------------------------------------------

    def opendir(self, inode: int) -> Listing:
        return self._owner_or(inode, errno.ENOTDIR).opendir(inode)

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        subtree = self._owner(inode)
        if subtree is None:
            raise error(errno.EROFS if is_writing(flags) else errno.EISDIR)
        return await subtree.open(inode, flags, pid)

    # -- extended attributes ------------------------------------------------------

    def listxattr(self, inode: int) -> list[str]:
        subtree = self._owner(inode)
        return subtree.listxattr(inode) if subtree is not None else []

    async def getxattr(self, inode: int, name: str) -> bytes:
        if not name.startswith(XATTR_PREFIX):
            # Only user.* attributes exist here. Saying so for the other namespaces
            # (security.selinux, system.posix_acl_*) lets ls -l remember the mount
            # as unsupported after one request, instead of asking twice per file.
            raise error(errno.ENODATA if name.startswith("user.") else errno.ENOTSUP)
        subtree = self._owner_or(inode, errno.ENODATA)
        return await subtree.getxattr(inode, name[len(XATTR_PREFIX) :])

    def refuse_xattr_change(self, inode: int) -> NoReturn:
        """``setxattr``, ``removexattr``: the attributes are the blob's, not the file's."""
        raise error(errno.ENOTSUP if self._writable(inode) else errno.EPERM)

    # -- whole filesystem ---------------------------------------------------------

    async def sync(self) -> None:
        """``fsync`` of any file or directory: make every committed blob durable.

        A file in /incoming is committed at close, not before: what an fsync
        before the close can promise is that everything committed so far is
        durable (with a sync interval, that is one sync of them all).
        """
        await self.axon.sync()

    def statfs(self) -> FsStats:
        """``df``: used = the store's bytes, available = the medium's free space.

        With a ``max_bytes`` limit the size is the limit and available is
        what the limit leaves (or the medium's free space, if less).
        ``df -i`` shows the blob count as used inodes (``f_files - f_ffree``).
        """
        capacity = self.axon.capacity()
        used = capacity.used_bytes
        free = capacity.free_bytes if capacity.free_bytes is not None else 1 << 50
        max_bytes = capacity.max_bytes
        total = used + free
        if max_bytes is not None:
            free = max(0, min(free, max_bytes - used))
            total = max(max_bytes, used)
        frsize = 4096
        free_files = 1 << 32
        return FsStats(
            block_size=BLOCK_SIZE,
            fragment_size=frsize,
            blocks=-(-total // frsize),  # rounded up: a limit of 1 byte is not size 0
            free_blocks=free // frsize,
            files=capacity.blobs + free_files,
            free_files=free_files,
            name_max=255,
        )


__all__ = ["FsStats", "TreeOptions", "Vfs"]
