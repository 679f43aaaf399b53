"""The pyfuse3 adapter: kernel requests in, attributes, bytes or errnos out.

This module translates and does nothing else. What the tree looks like lives
in :mod:`axonfs.vfs` and its subtrees' handlers (:mod:`axonfs.tree`), which
know nothing of pyfuse3; what the store does lives in :mod:`axonfs.axon`.
Here: file-handle and directory-handle tables, the tree's attributes and
errors turned into pyfuse3's (:func:`entry_attributes`, :func:`errno_for`,
the one place exceptions become errnos).

An unexpected exception in a handler never reaches ``pyfuse3.main()``: it is
logged with its traceback, :attr:`Operations.failsafe` is set, and the
request fails with ``EIO``.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio
from pyfuse3 import FileHandleT, FileNameT, FlagT, InodeT, ModeT, XAttrNameT

from axonfs.errors import AxonError, BackendError, BlobMissing, StoreCorrupt
from axonfs.fuseattrs import set_reported_ino
from axonfs.tree.base import BLOCK_SIZE, AttrChange, Attributes, Listing, OpenFile, Owner
from axonfs.vfs import Vfs

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC, errno.EDQUOT})
"""Errnos that say the daemon or its disk ran short, not that a blob is bad."""


def errno_for(exc: Exception) -> int | None:
    """The errno a handler answers for *exc*, or None if it is a bug.

    The table: :class:`~axonfs.errors.AxonError` subclasses carry their own
    ``errno`` (NoSuchFile ENOENT, BadArg EINVAL, HitLimit ENOSPC, StoreLocked
    EBUSY, StoreCorrupt/BackendError/BlobMissing EIO), except a
    ``BackendError`` that records the OS's errno (a full disk, no descriptor
    left), which answers that; ``OSError`` keeps its errno (the tree raises
    ENOENT, EROFS, EPERM, ... this way); anything else is unexpected.
    """
    if isinstance(exc, BackendError) and isinstance(exc.fields.get("errno"), int):
        return int(exc.fields["errno"]) or exc.errno
    if isinstance(exc, AxonError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return None


def _handler(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Wrap a request handler so that it raises only FUSEError."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            self = args[0]
            assert isinstance(self, Operations)
            raise pyfuse3.FUSEError(self.fail(method.__name__, exc)) from None

    return wrapper


class FuseKernelCache:
    """:class:`~axonfs.kernelcache.KernelCache` for the running mount.

    Entries are dropped through pyfuse3's own thread: the kernel takes the
    directory's lock for it, which a request being answered on this thread
    may hold. Dropping attributes takes no lock the kernel could be holding
    while it waits for this daemon, so it is done at once.
    """

    def forget_entry(self, parent_inode: int, name: str) -> None:
        pyfuse3.invalidate_entry_async(InodeT(parent_inode), os.fsencode(name), ignore_enoent=True)

    def forget_attrs(self, inode: int) -> None:
        try:
            pyfuse3.invalidate_inode(InodeT(inode), attr_only=True)
        except OSError as exc:  # ENOENT: the kernel has nothing cached for it
            if exc.errno != errno.ENOENT:
                log.debug("cannot drop cached attributes of inode %d: %s", inode, exc)


class Operations(pyfuse3.Operations):
    """The request handlers of the mount."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    """Measured and left off: with the writeback cache the kernel
    owns the size of every regular file and ignores the size the daemon reports,
    so /history.log would stop growing for ``tail -f``; it also adds a SETATTR
    per small file. Large writes instead return once copied into the spool,
    with the hash following behind (:class:`axonfs.hashbehind.HashBehind`),
    which measured faster. The commit path
    is proven for out-of-order and mmap writes by tests/mount/test_writeback.py."""

    def __init__(self, vfs: Vfs) -> None:
        super().__init__()
        self.vfs = vfs
        self.failsafe = False
        self.broken: set[str] = set()
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, Listing] = {}
        self._handles = itertools.count(1)
        self.initialized = trio.Event()

    def init(self) -> None:
        """The kernel's INIT request arrived; the reply follows when this returns."""
        self.initialized.set()

    def fail(self, operation: str, exc: Exception) -> int:
        """Log *exc* as its kind deserves and return the errno to answer."""
        code = errno_for(exc)
        if code in RESOURCE_ERRNOS and (
            isinstance(exc, BackendError) or code in (errno.EMFILE, errno.ENFILE)
        ):
            # The blob is fine; the daemon is out of descriptors or space.
            log.warning("%s: %s", operation, exc)
        elif isinstance(exc, BlobMissing) and self._deleted_since(exc):
            # Deleted (here or by another host sharing the bucket) while open:
            # the reader gets EIO, but nothing is lost or broken.
            log.info("%s: %s; it was deleted after it was opened", operation, exc)
        elif isinstance(exc, (BackendError, StoreCorrupt)):
            log.error("%s: %s", operation, exc)
            if sha := exc.fields.get("sha256"):
                self.broken.add(str(sha))
        elif code is None:
            log.exception("%s failed unexpectedly", operation)
            self.failsafe = True
            return errno.EIO
        else:
            log.debug("%s: %s", operation, exc)
        return code if code is not None else errno.EIO

    def _deleted_since(self, exc: BlobMissing) -> bool:
        sha = exc.fields.get("sha256")
        return isinstance(sha, str) and self.vfs.axon.stat(bytes.fromhex(sha)) is None

    # -- names ----------------------------------------------------------------------

    @_handler
    async def lookup(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        log.debug("lookup(%d, %r)", parent_inode, name)
        attrs = await self.vfs.lookup(parent_inode, os.fsdecode(name))
        self.vfs.remember(attrs.inode)
        return entry_attributes(attrs)

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        for inode, count in inode_list:
            self.vfs.forget(inode, count)

    @_handler
    async def getattr(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        log.debug("getattr(%d)", inode)
        return entry_attributes(await self.vfs.getattr(inode))

    @_handler
    async def setattr(
        self,
        inode: InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        log.debug("setattr(%d)", inode)
        change = AttrChange(
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        )
        open_file = self._files.get(fh) if fh is not None else None
        return entry_attributes(await self.vfs.setattr(inode, change, open_file))

    @_handler
    async def readlink(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> FileNameT:
        return os.fsencode(self.vfs.readlink(inode))

    @_handler
    async def mknod(
        self,
        parent_inode: InodeT,
        name: FileNameT,
        mode: ModeT,
        rdev: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        self.vfs.refuse_special(parent_inode)

    @_handler
    async def mkdir(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        log.debug("mkdir(%d, %r)", parent_inode, name)
        attrs = self.vfs.mkdir(parent_inode, os.fsdecode(name), mode, _owner(ctx))
        self.vfs.remember(attrs.inode)
        return entry_attributes(attrs)

    @_handler
    async def unlink(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        log.debug("unlink(%d, %r)", parent_inode, name)
        await self.vfs.unlink(parent_inode, os.fsdecode(name))

    @_handler
    async def rmdir(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        log.debug("rmdir(%d, %r)", parent_inode, name)
        self.vfs.rmdir(parent_inode, os.fsdecode(name))

    @_handler
    async def symlink(
        self, parent_inode: InodeT, name: FileNameT, target: FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self.vfs.refuse_special(parent_inode)

    @_handler
    async def link(
        self,
        inode: InodeT,
        new_parent_inode: InodeT,
        new_name: FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        self.vfs.refuse_special(new_parent_inode)

    @_handler
    async def rename(
        self,
        parent_inode_old: InodeT,
        name_old: FileNameT,
        parent_inode_new: InodeT,
        name_new: FileNameT,
        flags: FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        log.debug("rename(%d, %r, %d, %r)", parent_inode_old, name_old, parent_inode_new, name_new)
        self.vfs.rename(
            parent_inode_old,
            os.fsdecode(name_old),
            parent_inode_new,
            os.fsdecode(name_new),
            noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
            exchange=bool(flags & pyfuse3.RENAME_EXCHANGE),
        )

    # -- files ----------------------------------------------------------------------

    @_handler
    async def open(
        self, inode: InodeT, flags: FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        log.debug("open(%d, %#o)", inode, flags)
        return self._file_info(await self.vfs.open(inode, flags, ctx.pid))

    @_handler
    async def create(
        self,
        parent_inode: InodeT,
        name: FileNameT,
        mode: ModeT,
        flags: FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        log.debug("create(%d, %r)", parent_inode, name)
        open_file, attrs = await self.vfs.create(parent_inode, os.fsdecode(name), mode, _owner(ctx))
        self.vfs.remember(attrs.inode)
        return self._file_info(open_file), entry_attributes(attrs)

    @_handler
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        # pyfuse3 replies with any contiguous buffer: blob reads are memoryviews.
        return await self._files[fh].read(off, size)  # type: ignore[return-value]

    @_handler
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        return await self._files[fh].write(off, buf)

    @_handler
    async def flush(self, fh: FileHandleT) -> None:
        log.debug("flush(%d)", fh)
        await self._files[fh].flush()

    @_handler
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        await self.vfs.sync()

    @_handler
    async def release(self, fh: FileHandleT) -> None:
        log.debug("release(%d)", fh)
        await self._files.pop(fh).release()

    # -- directories ----------------------------------------------------------------

    @_handler
    async def opendir(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> FileHandleT:
        fh = next(self._handles)
        self._dirs[fh] = self.vfs.opendir(inode)
        return FileHandleT(fh)

    @_handler
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        log.debug("readdir(%d, %d)", fh, start_id)
        listing = self._dirs[fh]
        reply = pyfuse3.readdir_reply
        if not listing.counts_lookups:
            # The hot case (by-sha256, history): no entry needs a lookup count.
            for name, attrs, next_id in listing.entries(start_id, make_entry):
                if not reply(token, name.encode("utf-8", "surrogateescape"), attrs, next_id):
                    break
            return
        for name, attrs, next_id in listing.entries(start_id, make_entry):
            if not reply(token, os.fsencode(name), attrs, next_id):
                break
            self.vfs.remember(attrs.st_ino)  # the node id, whatever inode number it reports

    @_handler
    async def releasedir(self, fh: FileHandleT) -> None:
        self._dirs.pop(fh, None)

    @_handler
    async def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        await self.vfs.sync()

    @_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = self.vfs.statfs()
        data = pyfuse3.StatvfsData()
        data.f_bsize = stats.block_size
        data.f_frsize = stats.fragment_size
        data.f_blocks = stats.blocks
        data.f_bfree = data.f_bavail = stats.free_blocks
        data.f_ffree = data.f_favail = stats.free_files
        data.f_files = stats.files
        data.f_namemax = stats.name_max
        return data

    # -- extended attributes --------------------------------------------------------

    @_handler
    async def getxattr(self, inode: InodeT, name: XAttrNameT, ctx: pyfuse3.RequestContext) -> bytes:
        log.debug("getxattr(%d, %r)", inode, name)
        return await self.vfs.getxattr(inode, os.fsdecode(name))

    @_handler
    async def listxattr(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> Sequence[XAttrNameT]:
        return [os.fsencode(name) for name in self.vfs.listxattr(inode)]

    @_handler
    async def setxattr(
        self, inode: InodeT, name: XAttrNameT, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        self.vfs.refuse_xattr_change(inode)

    @_handler
    async def removexattr(
        self, inode: InodeT, name: XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        self.vfs.refuse_xattr_change(inode)

    # -- helpers --------------------------------------------------------------------

    def _file_info(self, open_file: OpenFile) -> pyfuse3.FileInfo:
        fh = next(self._handles)
        self._files[fh] = open_file
        return pyfuse3.FileInfo(
            fh=FileHandleT(fh), keep_cache=open_file.keep_cache, direct_io=open_file.direct_io
        )

    def statistics(self) -> dict[str, Any]:
        """Open files and directories, and whether an unexpected error happened."""
        return {
            "open_files": len(self._files),
            "open_dirs": len(self._dirs),
            "failsafe": self.failsafe,
            "broken": sorted(self.broken),
        }


def entry_attributes(attrs: Attributes) -> pyfuse3.EntryAttributes:
    """The kernel's record of the tree's :class:`~axonfs.tree.base.Attributes`."""
    return make_entry(*attrs)


def make_entry(
    inode: int,
    mode: int,
    nlink: int,
    uid: int,
    gid: int,
    size: int,
    blocks: int,
    mtime_ns: int,
    ctime_ns: int,
    entry_timeout: float,
    attr_timeout: float,
    reported_ino: int = 0,
) -> pyfuse3.EntryAttributes:
    """The kernel's record of these attributes (a
    :class:`~axonfs.tree.base.MakeAttributes`: listings build it directly)."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = inode
    entry.st_mode = mode
    entry.st_nlink = nlink
    entry.st_uid = uid
    entry.st_gid = gid
    entry.st_size = size
    entry.st_blocks = blocks
    entry.st_blksize = BLOCK_SIZE
    entry.st_atime_ns = entry.st_mtime_ns = mtime_ns
    entry.st_ctime_ns = ctime_ns
    entry.entry_timeout = entry_timeout
    entry.attr_timeout = attr_timeout
    if reported_ino and not set_reported_ino(entry, reported_ino):
        entry.st_nlink = 1  # not shown as a hard link, so not counted as one
    return entry


def _owner(ctx: pyfuse3.RequestContext) -> Owner:
    return Owner(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid)
