"""``/``: the root directory, listing the registered subtrees by name.

Its extended attributes say where the daemon's control socket is and the
daemon's pid, so tools find both from a path into the mount.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from axonfs.inodes import ROOT_INODE
from axonfs.tree.base import (
    IMMUTABLE_TIMEOUT,
    XATTR_PREFIX,
    Attributes,
    AttrsT,
    Listing,
    MakeAttributes,
    ReadOnlySubtree,
    Subtree,
    TreeOptions,
    dir_attrs,
    error,
)


class RootDir(ReadOnlySubtree):
    """The root directory; :attr:`subtrees` are its entries, in listing order."""

    name = ""
    inode = ROOT_INODE
    inodes = (range(ROOT_INODE, ROOT_INODE + 1),)

    def __init__(self, started_ns: int, options: TreeOptions) -> None:
        self.started_ns = started_ns
        self.options = options
        self.subtrees: list[Subtree] = []

    async def lookup(self, parent: int, name: str) -> Attributes:
        for subtree in self.subtrees:
            if subtree.name == name:
                return await subtree.getattr(subtree.inode)
        raise error(errno.ENOENT)

    async def getattr(self, inode: int) -> Attributes:
        return self.listed()

    def listed(self) -> Attributes:
        return dir_attrs(self.inode, self.started_ns, IMMUTABLE_TIMEOUT)

    def opendir(self, inode: int) -> Listing:
        return _RootListing(inode, self.subtrees)

    def listxattr(self, inode: int) -> list[str]:
        return [XATTR_PREFIX + "socket", XATTR_PREFIX + "pid"]

    async def getxattr(self, inode: int, key: str) -> bytes:
        if key == "socket" and self.options.socket_path is not None:
            return os.fsencode(self.options.socket_path)
        if key == "pid" and self.options.daemon_pid:
            return str(self.options.daemon_pid).encode()
        raise error(errno.ENODATA)


class _RootListing(Listing):
    counts_lookups = True

    def __init__(self, inode: int, subtrees: list[Subtree]) -> None:
        super().__init__(inode)
        self.subtrees = subtrees

    def entries(
        self, start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        for position, subtree in enumerate(self.subtrees[start:], start + 1):
            yield subtree.name, make(*subtree.listed()), position
