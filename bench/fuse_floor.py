#!/usr/bin/env python3
"""A pyfuse3 file system that stores nothing: the floor under any FUSE ingest.

It answers the requests ``cp -r`` makes (lookup, mkdir, create, write, flush,
release, getattr, setattr) from a table of names in memory and drops the
bytes, so the time ``cp -r`` takes into it is what the kernel round trips and
pyfuse3 with trio cost before a file system does any work of its own.
``bench_mount.py`` measures ``cp -r`` into it beside the same copy into axonfs.

Usage: ``python bench/fuse_floor.py MOUNTPOINT`` (foreground; unmount to stop).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import sys
import time

import pyfuse3
import trio


class Nothing(pyfuse3.Operations):
    """Names and sizes only."""

    def __init__(self) -> None:
        super().__init__()
        self._inodes = itertools.count(pyfuse3.ROOT_INODE + 1)
        self._names: dict[tuple[int, bytes], int] = {}
        self._modes: dict[int, int] = {pyfuse3.ROOT_INODE: stat.S_IFDIR | 0o755}
        self._sizes: dict[int, int] = {}

    def _attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.st_mode = self._modes[inode]
        attrs.st_nlink = 1
        attrs.st_size = self._sizes.get(inode, 0)
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        now = time.time_ns()
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = now
        attrs.entry_timeout = attrs.attr_timeout = 60
        return attrs

    def _new(self, parent: int, name: bytes, mode: int) -> pyfuse3.EntryAttributes:
        inode = next(self._inodes)
        self._names[(parent, name)] = inode
        self._modes[inode] = mode
        return self._attrs(inode)

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        inode = self._names.get((parent_inode, name))
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(inode)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attrs(inode)

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if fields.update_mode:
            self._modes[inode] = stat.S_IFMT(self._modes[inode]) | stat.S_IMODE(attr.st_mode)
        if fields.update_size:
            self._sizes[inode] = attr.st_size
        return self._attrs(inode)

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._new(parent_inode, name, stat.S_IFDIR | stat.S_IMODE(mode))

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        attrs = self._new(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode))
        return pyfuse3.FileInfo(fh=attrs.st_ino), attrs

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self._sizes[fh] = max(self._sizes.get(fh, 0), off + len(buf))
        return len(buf)

    async def flush(self, fh: int) -> None:
        return None

    async def release(self, fh: int) -> None:
        return None

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        return None


def main() -> None:
    mountpoint = sys.argv[1]
    pyfuse3.init(Nothing(), mountpoint, {"fsname=fuse-floor", "default_permissions"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
