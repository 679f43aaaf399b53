"""The read-only subtrees and the root, driven in-process (no kernel).

Requests go through :class:`~axonfs.ops.Operations` where the kernel would
send them; listings are read from the tree itself (``readdir`` needs a
kernel token), as their entries are what ``readdir`` replies with.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pyfuse3
import pytest
from helpers.requests import FakeContext
from pyfuse3 import InodeT

from axonfs.axon import Axon
from axonfs.incoming import Incoming
from axonfs.inodes import (
    BLOB_BASE,
    BY_SHA256_INODE,
    HISTORY_INODE,
    HISTORY_LOG_INODE,
    INCOMING_INODE,
    ROOT_INODE,
)
from axonfs.ops import Operations
from axonfs.tree.base import (
    IMMUTABLE_TIMEOUT,
    Attributes,
    AttrsT,
    Listing,
    MakeAttributes,
    ReadOnlySubtree,
    TreeOptions,
    dir_attrs,
    error,
)
from axonfs.vfs import Vfs


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Operations]:
    async with Axon.open(tmp_path / "store") as axon:
        incoming = Incoming(axon)
        yield Operations(
            Vfs(axon, incoming, TreeOptions(socket_path=tmp_path / "ctl.sock", daemon_pid=4242))
        )
        incoming.close()


async def lookup(ops: Operations, parent: int, name: str) -> pyfuse3.EntryAttributes:
    return await ops.lookup(InodeT(parent), os.fsencode(name), FakeContext())


async def errno_of(request: Awaitable[object]) -> int:
    with pytest.raises(pyfuse3.FUSEError) as info:
        await request
    return info.value.errno


def names(listing: Listing) -> list[str]:
    return [name for name, _, _ in listing.entries(0, Attributes)]


async def test_the_root_lists_every_subtree_in_order(ops: Operations) -> None:
    assert names(ops.vfs.opendir(ROOT_INODE)) == ["by-sha256", "history", "history.log", "incoming"]
    for name, inode in (
        ("by-sha256", BY_SHA256_INODE),
        ("history", HISTORY_INODE),
        ("history.log", HISTORY_LOG_INODE),
        ("incoming", INCOMING_INODE),
    ):
        assert (await lookup(ops, ROOT_INODE, name)).st_ino == inode
    assert await errno_of(lookup(ops, ROOT_INODE, "nothing")) == errno.ENOENT
    socket = await ops.getxattr(InodeT(ROOT_INODE), b"user.axonfs.socket", FakeContext())
    assert socket.endswith(b"ctl.sock")
    assert await ops.getxattr(InodeT(ROOT_INODE), b"user.axonfs.pid", FakeContext()) == b"4242"


async def test_a_blob_is_a_read_only_file_named_by_its_digest(ops: Operations) -> None:
    axon = ops.vfs.axon
    _, digest = await axon.put(b"hello")
    attrs = await lookup(ops, BY_SHA256_INODE, digest.hex())
    row = axon.stat(digest)
    assert row is not None
    assert attrs.st_ino == BLOB_BASE + row.indx and attrs.st_size == 5
    assert stat.S_ISREG(attrs.st_mode) and attrs.st_mode & 0o777 == 0o444
    assert attrs.entry_timeout == IMMUTABLE_TIMEOUT
    info = await ops.open(attrs.st_ino, os.O_RDONLY, FakeContext())
    assert info.keep_cache
    assert bytes(await ops.read(info.fh, 1, 3)) == b"ell"
    await ops.release(info.fh)
    md5 = await ops.getxattr(attrs.st_ino, b"user.axonfs.md5", FakeContext())
    assert md5 == hashlib.md5(b"hello").hexdigest().encode()
    assert names(ops.vfs.opendir(BY_SHA256_INODE)) == [digest.hex()]


async def test_refusals_keep_their_errnos(ops: Operations) -> None:
    ctx = FakeContext()
    _, digest = await ops.vfs.axon.put(b"x")
    blob = (await lookup(ops, BY_SHA256_INODE, digest.hex())).st_ino
    assert await errno_of(lookup(ops, BY_SHA256_INODE, "f" * 64)) == errno.ENOENT
    assert await errno_of(lookup(ops, blob, "x")) == errno.ENOTDIR
    assert await errno_of(ops.open(blob, os.O_WRONLY, ctx)) == errno.EROFS
    assert await errno_of(ops.open(InodeT(BY_SHA256_INODE), os.O_RDONLY, ctx)) == errno.EISDIR
    assert (
        await errno_of(ops.unlink(InodeT(BY_SHA256_INODE), digest.hex().encode(), ctx))
        == errno.EPERM
    )
    assert await errno_of(ops.mkdir(InodeT(HISTORY_INODE), b"d", 0o755, ctx)) == errno.EROFS
    assert await errno_of(ops.symlink(InodeT(ROOT_INODE), b"l", b"t", ctx)) == errno.EROFS
    assert await errno_of(ops.symlink(InodeT(INCOMING_INODE), b"l", b"t", ctx)) == errno.EPERM
    assert (
        await errno_of(
            ops.rename(InodeT(INCOMING_INODE), b"a", InodeT(BY_SHA256_INODE), b"b", 0, ctx)
        )
        == errno.EPERM
    )
    assert await errno_of(ops.setxattr(blob, b"user.x", b"1", ctx)) == errno.EPERM
    assert await errno_of(ops.getxattr(blob, b"security.selinux", ctx)) == errno.ENOTSUP
    assert await errno_of(ops.getattr(InodeT(7), ctx)) == errno.ENOENT


async def test_history_links_each_blob_under_its_day(ops: Operations) -> None:
    _, digest = await ops.vfs.axon.put(b"dated")
    [day] = names(ops.vfs.opendir(HISTORY_INODE))
    day_inode = (await lookup(ops, HISTORY_INODE, day)).st_ino
    [link] = names(ops.vfs.opendir(day_inode))
    assert link.endswith(digest.hex())
    attrs = await lookup(ops, day_inode, link)
    assert stat.S_ISLNK(attrs.st_mode)
    target = await ops.readlink(attrs.st_ino, FakeContext())
    assert target == f"../../by-sha256/{digest.hex()}".encode()
    assert await errno_of(ops.open(attrs.st_ino, os.O_RDONLY, FakeContext())) == errno.ELOOP


async def test_history_log_grows_with_each_blob(ops: Operations) -> None:
    _, digest = await ops.vfs.axon.put(b"logged")
    attrs = await ops.getattr(InodeT(HISTORY_LOG_INODE), FakeContext())
    assert attrs.attr_timeout == 0  # tail -f must see it grow
    info = await ops.open(InodeT(HISTORY_LOG_INODE), os.O_RDONLY, FakeContext())
    assert info.direct_io
    line = await ops.read(info.fh, 0, attrs.st_size)
    assert line.startswith(b"0\t") and line.endswith(f"\t{digest.hex()}\t6\n".encode())


async def test_statfs_counts_blobs_as_used_inodes(ops: Operations) -> None:
    await ops.vfs.axon.put(b"one")
    data = await ops.statfs(FakeContext())
    assert data.f_files - data.f_ffree == 1
    assert data.f_namemax == 255


class Greeting(ReadOnlySubtree):
    """A subtree added by one handler and one registration: a single directory."""

    name = "hello"
    inode = 6
    inodes = (range(6, 7),)

    async def lookup(self, parent: int, name: str) -> Attributes:
        raise error(errno.ENOENT)

    async def getattr(self, inode: int) -> Attributes:
        return self.listed()

    def listed(self) -> Attributes:
        return dir_attrs(self.inode, 0, IMMUTABLE_TIMEOUT)

    def opendir(self, inode: int) -> Listing:
        return Empty(inode)


class Empty(Listing):
    def entries(
        self, start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        return iter(())


async def test_a_new_subtree_is_one_handler_and_one_registration(ops: Operations) -> None:
    ops.vfs.register(Greeting())
    assert names(ops.vfs.opendir(ROOT_INODE))[-1] == "hello"
    assert (await lookup(ops, ROOT_INODE, "hello")).st_ino == 6
    assert names(ops.vfs.opendir(6)) == []
    with pytest.raises(ValueError):
        ops.vfs.register(Greeting())  # its inodes are taken now
