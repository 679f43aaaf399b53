"""``/incoming``: the writable subtree, over :class:`~axonfs.incoming.Incoming`.

The rules (which close commits, what a committed entry shows) are
:mod:`axonfs.incoming`'s; this handler gives its entries attributes and
routes requests to it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from axonfs.axon import Axon, BlobRow
from axonfs.incoming import File, Incoming, IncomingFile, Node
from axonfs.inodes import BLOB_BASE, INCOMING_BASE, INCOMING_INODE
from axonfs.tree.base import (
    MUTABLE_TIMEOUT,
    AttrChange,
    Attributes,
    AttrsT,
    Listing,
    MakeAttributes,
    OpenFile,
    Owner,
    error,
)
from axonfs.tree.blobs import blob_xattr, blob_xattr_names


class IncomingTree:
    """``/incoming`` and every entry below it."""

    name = "incoming"
    inode = INCOMING_INODE
    inodes = (range(INCOMING_INODE, INCOMING_INODE + 1), range(INCOMING_BASE, BLOB_BASE))
    writable = True

    def __init__(self, axon: Axon, incoming: Incoming) -> None:
        self.axon = axon
        self.incoming = incoming

    # -- names and attributes -------------------------------------------------------

    async def lookup(self, parent: int, name: str) -> Attributes:
        return self.attrs(self.incoming.lookup(parent, name))

    async def getattr(self, inode: int) -> Attributes:
        return self.attrs(self.incoming.node(inode))

    def listed(self) -> Attributes:
        return self.attrs(self.incoming.root)

    def attrs(self, node: Node) -> Attributes:
        """A committed entry reports its blob's inode number and link count
        (a hard link, so ``du`` counts the bytes once); it keeps its own node id."""
        size = blocks = reported_ino = 0
        nlink = 2
        if isinstance(node, File):
            size, nlink = node.size, 1
            blocks = (size + 511) // 512
            if node.committed and node.sha256 is not None and node.parent is not None:
                row = self.axon.stat(node.sha256)
                if row is not None:
                    reported_ino = BLOB_BASE + row.indx
                    nlink = 1 + self.incoming.links.get(node.sha256, 0)
        return Attributes(
            node.inode,
            node.mode,
            nlink,
            node.uid,
            node.gid,
            size,
            blocks,
            node.mtime_ns,
            node.ctime_ns,
            MUTABLE_TIMEOUT,
            MUTABLE_TIMEOUT,
            reported_ino,
        )

    def readlink(self, inode: int) -> str:
        raise error(errno.EINVAL)

    def remember(self, inode: int) -> None:
        node = self.incoming.nodes.get(inode)
        if node is not None:
            node.lookups += 1

    def forget(self, inode: int, count: int) -> None:
        self.incoming.forget(inode, count)

    # -- listings -------------------------------------------------------------------

    def opendir(self, inode: int) -> Listing:
        self.incoming.directory(inode)
        return _Snapshots(inode, self)

    # -- files ----------------------------------------------------------------------

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        return IncomingOpenFile(self.incoming, await self.incoming.open(inode, flags, pid))

    async def create(
        self, parent: int, name: str, mode: int, owner: Owner
    ) -> tuple[OpenFile, Attributes]:
        handle = self.incoming.create(parent, name, mode, owner.uid, owner.gid, owner.pid)
        return IncomingOpenFile(self.incoming, handle), self.attrs(handle.node)

    async def setattr(
        self, inode: int, change: AttrChange, open_file: OpenFile | None
    ) -> Attributes:
        node = self.incoming.node(inode)
        if change.size is not None:
            if not isinstance(node, File):
                raise error(errno.EISDIR)
            handle = open_file.handle if isinstance(open_file, IncomingOpenFile) else None
            await self.incoming.truncate(node, change.size, handle)
        self.incoming.change(
            node, mode=change.mode, uid=change.uid, gid=change.gid, mtime_ns=change.mtime_ns
        )
        return self.attrs(node)

    # -- directories ----------------------------------------------------------------

    def mkdir(self, parent: int, name: str, mode: int, owner: Owner) -> Attributes:
        return self.attrs(self.incoming.mkdir(parent, name, mode, owner.uid, owner.gid))

    async def unlink(self, parent: int, name: str) -> None:
        self.incoming.unlink(parent, name)

    def rmdir(self, parent: int, name: str) -> None:
        self.incoming.rmdir(parent, name)

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
        if exchange:
            raise error(errno.EINVAL)
        self.incoming.rename(parent_old, name_old, parent_new, name_new, noreplace=noreplace)

    # -- extended attributes --------------------------------------------------------

    def listxattr(self, inode: int) -> list[str]:
        return blob_xattr_names() if self._blob_of(inode) is not None else []

    async def getxattr(self, inode: int, key: str) -> bytes:
        return await blob_xattr(self.axon, self._blob_of(inode), key)

    def _blob_of(self, inode: int) -> BlobRow | None:
        """The blob a committed file shows."""
        node = self.incoming.nodes.get(inode)
        if isinstance(node, File) and node.committed and node.sha256 is not None:
            return self.axon.stat(node.sha256)
        return None


class _Snapshots(Listing):
    """A listing of an /incoming directory: a snapshot of its entries per pass,
    so offsets (inode numbers) stay valid while entries come and go."""

    counts_lookups = True

    def __init__(self, inode: int, tree: IncomingTree) -> None:
        super().__init__(inode)
        self.tree = tree
        self.snapshot: list[Node] | None = None

    def entries(
        self, start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        if self.snapshot is None or start == 0:
            self.snapshot = self.tree.incoming.entries(self.inode)
        return self._entries(self.snapshot, start, make)

    def _entries(
        self, snapshot: list[Node], start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        for node in snapshot:
            if node.inode >= start and node.parent is not None:
                yield node.name, make(*self.tree.attrs(node)), node.inode + 1


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
