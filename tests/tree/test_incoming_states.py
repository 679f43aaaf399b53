"""/incoming's states, driven in-process through ``Operations`` (no kernel).

Each test plays the requests the kernel sends for a pattern real programs
use (a shell redirection, a fork, two writers, a re-copy...) and checks
what the store ends up holding. What ``/proc`` would say about the writing
processes is played by :class:`FakeWriters`; the kernel's cache by
:class:`RecordingKernel`. ``tests/mount/test_incoming_programs.py`` runs the
same patterns with the real programs through the kernel.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3
import pytest
from helpers.hashes import sha_digest
from helpers.requests import FakeContext
from pyfuse3 import FileHandleT, InodeT

from axonfs.axon import Axon
from axonfs.fuseattrs import set_reported_ino
from axonfs.hashing import Sha256
from axonfs.incoming import File, FileState, Incoming
from axonfs.inodes import BLOB_BASE, BY_SHA256_INODE, INCOMING_INODE
from axonfs.ops import Operations
from axonfs.store.store import Limits
from axonfs.tree.base import TreeOptions
from axonfs.vfs import Vfs
from axonfs.writers import WriterState

OPENER, CHILD = 1001, 1002


@dataclass
class FakeWriters:
    """What /proc says: which processes still hold which files, who is dying."""

    held: set[tuple[int, str]] = field(default_factory=set)
    states: dict[int, WriterState] = field(default_factory=dict)

    def state(self, pid: int) -> WriterState:
        return self.states.get(pid, WriterState.ALIVE)

    def holds(self, pid: int, path: str) -> bool:
        return (pid, path) in self.held


@dataclass
class RecordingKernel:
    entries: list[tuple[int, str]] = field(default_factory=list)
    attrs: list[int] = field(default_factory=list)

    def forget_entry(self, parent_inode: int, name: str) -> None:
        self.entries.append((parent_inode, name))

    def forget_attrs(self, inode: int) -> None:
        self.attrs.append(inode)


@dataclass
class Tree:
    axon: Axon
    ops: Operations
    writers: FakeWriters
    kernel: RecordingKernel

    @property
    def incoming(self) -> Incoming:
        return self.ops.vfs.incoming

    async def create(self, name: str, pid: int = OPENER) -> FileHandleT:
        info, _ = await self.ops.create(
            InodeT(INCOMING_INODE),
            os.fsencode(name),
            0o644,
            os.O_WRONLY | os.O_CREAT,
            FakeContext(pid),
        )
        return info.fh

    async def open(self, name: str, flags: int, pid: int = OPENER) -> FileHandleT:
        inode = (await self.lookup(name)).st_ino
        info = await self.ops.open(inode, flags, FakeContext(pid))
        return info.fh

    async def lookup(self, name: str, parent: int = INCOMING_INODE) -> pyfuse3.EntryAttributes:
        return await self.ops.lookup(InodeT(parent), os.fsencode(name), FakeContext(OPENER))

    async def write(self, fh: FileHandleT, data: bytes, offset: int = 0) -> None:
        assert await self.ops.write(fh, offset, data) == len(data)

    async def close(self, fh: FileHandleT) -> None:
        """The last close of an open file: FLUSH, then RELEASE."""
        await self.ops.flush(fh)
        await self.ops.release(fh)

    def history(self) -> list[bytes]:
        """Every blob ever added, in added order (what `hashes` lists)."""
        return [row.sha256 for row, _ in self.axon.index.seqn_batch(0, 1000)]

    def file(self, name: str) -> File:
        node = self.incoming.lookup(INCOMING_INODE, name)
        assert isinstance(node, File)
        return node

    async def blob(self, sha256: bytes) -> bytes:
        return b"".join([piece async for piece in self.axon.get(sha256)])


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[Tree]:
    async with Axon.open(tmp_path / "store") as axon:
        writers, kernel = FakeWriters(), RecordingKernel()
        incoming = Incoming(axon, kernel=kernel, writers=writers)
        ops = Operations(Vfs(axon, incoming, TreeOptions(allow_delete=True), kernel))
        yield Tree(axon, ops, writers, kernel)
        incoming.close()


# -- which close commits --------------------------------------------------------


async def test_a_plain_copy_commits_once_at_close(tree: Tree) -> None:
    fh = await tree.create("f")
    await tree.write(fh, b"hello")
    await tree.close(fh)
    assert tree.history() == [sha_digest(b"hello")]
    assert tree.file("f").state is FileState.COMMITTED


async def test_redirection_closes_a_duplicate_first_and_commits_only_the_content(
    tree: Tree,
) -> None:
    # sh: open(f) as fd 3, dup2(3, 1), close(3) -> FLUSH while fd 1 holds it.
    fh = await tree.create("f")
    tree.writers.held.add((OPENER, "incoming/f"))
    await tree.ops.flush(fh)
    assert tree.history() == []  # no empty blob nobody wrote
    await tree.write(fh, b"x\n")
    tree.writers.held.clear()  # the restore of fd 1 closes the last descriptor
    await tree.close(fh)
    assert tree.history() == [sha_digest(b"x\n")]


async def test_a_child_closing_its_inherited_copy_does_not_commit(tree: Tree) -> None:
    # ( echo start; /bin/true; echo end ) > f: /bin/true exits while the subshell holds f.
    fh = await tree.create("f")
    tree.writers.held.add((OPENER, "incoming/f"))
    await tree.write(fh, b"start\n")
    await tree.ops.flush(fh)  # the child's exit
    assert tree.history() == []
    await tree.write(fh, b"end\n", 6)
    tree.writers.held.clear()
    tree.writers.states[OPENER] = WriterState.EXITING  # the subshell exits
    await tree.close(fh)
    assert tree.history() == [sha_digest(b"start\nend\n")]


async def test_a_touched_file_is_the_empty_blob(tree: Tree) -> None:
    await tree.close(await tree.create("empty"))
    assert tree.history() == [sha_digest(b"")]


async def test_a_writer_killed_by_a_signal_commits_nothing(tree: Tree) -> None:
    fh = await tree.create("k")
    await tree.write(fh, b"partial")
    tree.writers.states[OPENER] = WriterState.KILLED
    await tree.close(fh)
    assert tree.history() == []
    with pytest.raises(pyfuse3.FUSEError) as info:
        await tree.lookup("k")
    assert info.value.errno == errno.ENOENT
    assert (INCOMING_INODE, "k") in tree.kernel.entries
    assert not list((tree.axon.store.root / "tmp").iterdir())


async def test_a_release_without_a_committing_flush_still_commits(tree: Tree) -> None:
    fh = await tree.create("f")
    tree.writers.held.add((OPENER, "incoming/f"))
    await tree.write(fh, b"data")
    await tree.ops.flush(fh)
    await tree.ops.release(fh)  # /proc said "held", yet this was the last descriptor
    assert tree.history() == [sha_digest(b"data")]


# -- two writers, O_TRUNC ---------------------------------------------------------


async def test_o_trunc_on_a_second_open_truncates(tree: Tree) -> None:
    first = await tree.create("f")
    await tree.write(first, b"0123456789abcdef")
    second = await tree.open("f", os.O_WRONLY | os.O_TRUNC, pid=CHILD)
    await tree.write(second, b"XY")
    await tree.close(second)
    await tree.close(first)
    assert tree.history() == [sha_digest(b"XY")]
    assert await tree.blob(tree.history()[-1]) == b"XY"


async def test_a_close_that_returned_keeps_its_content_when_the_other_writer_is_killed(
    tree: Tree,
) -> None:
    first = await tree.create("f")
    second = await tree.open("f", os.O_WRONLY, pid=CHILD)
    await tree.write(first, b"kept")
    await tree.close(first)  # returns 0: "kept" is stored
    await tree.write(second, b"lost", 4)
    tree.writers.states[CHILD] = WriterState.KILLED
    await tree.close(second)
    assert tree.history() == [sha_digest(b"kept")]
    node = tree.file("f")
    assert node.state is FileState.COMMITTED and node.sha256 == sha_digest(b"kept")
    assert node.size == 4


async def test_two_writers_each_commit_at_their_own_last_close(tree: Tree) -> None:
    first = await tree.create("f")
    second = await tree.open("f", os.O_WRONLY, pid=CHILD)
    await tree.write(first, b"one")
    await tree.close(first)
    await tree.write(second, b"two", 3)
    await tree.close(second)
    assert tree.history() == [sha_digest(b"one"), sha_digest(b"onetwo")]


# -- writing a committed name again ----------------------------------------------


async def test_a_re_copy_stores_the_new_content_and_the_entry_shows_it(tree: Tree) -> None:
    fh = await tree.create("x")
    await tree.write(fh, b"old")
    await tree.close(fh)
    fh = await tree.open("x", os.O_WRONLY | os.O_TRUNC)
    assert tree.file("x").size == 0
    await tree.write(fh, b"new content")
    await tree.close(fh)
    assert tree.history() == [sha_digest(b"old"), sha_digest(b"new content")]
    assert tree.file("x").sha256 == sha_digest(b"new content")
    assert await tree.axon.has(sha_digest(b"old"))  # the earlier blob stays stored
    value = await tree.ops.getxattr(
        tree.file("x").inode, b"user.axonfs.sha256", FakeContext(OPENER)
    )
    assert value == sha_digest(b"new content").hex().encode()


async def test_an_append_stores_old_plus_new(tree: Tree) -> None:
    fh = await tree.create("log")
    await tree.write(fh, b"a\n")
    await tree.close(fh)
    fh = await tree.open("log", os.O_WRONLY | os.O_APPEND)
    await tree.write(fh, b"b\n", 2)
    await tree.close(fh)
    assert tree.history() == [sha_digest(b"a\n"), sha_digest(b"a\nb\n")]
    assert await tree.blob(sha_digest(b"a\nb\n")) == b"a\nb\n"


async def test_opening_a_committed_name_for_writing_without_writing_changes_nothing(
    tree: Tree,
) -> None:
    fh = await tree.create("x")
    await tree.write(fh, b"same")
    await tree.close(fh)
    await tree.close(await tree.open("x", os.O_WRONLY))
    assert tree.history() == [sha_digest(b"same")]
    assert tree.file("x").state is FileState.COMMITTED


async def test_a_truncate_by_path_of_a_committed_entry_commits_at_once(tree: Tree) -> None:
    fh = await tree.create("x")
    await tree.write(fh, b"0123456789")
    await tree.close(fh)
    await tree.incoming.truncate(tree.file("x"), 4)
    assert tree.history() == [sha_digest(b"0123456789"), sha_digest(b"0123")]


async def test_a_failed_commit_reaches_the_close_and_reverts(tmp_path: Path) -> None:
    async with Axon.open(tmp_path / "s", limits=Limits(max_count=1)) as axon:
        incoming = Incoming(axon, writers=FakeWriters())
        first = incoming.create(INCOMING_INODE, "a", 0o644, 0, 0, OPENER)
        await incoming.write(first, 0, b"one")
        await incoming.flush(first)
        await incoming.release(first)
        again = await incoming.open(first.node.inode, os.O_WRONLY | os.O_TRUNC, OPENER)
        await incoming.write(again, 0, b"two")
        with pytest.raises(Exception) as info:
            await incoming.flush(again)
        assert getattr(info.value, "errno", None) == errno.ENOSPC
        await incoming.release(again)
        node = first.node
        assert node.state is FileState.COMMITTED and node.sha256 == sha_digest(b"one")
        incoming.close()


# -- what the kernel is told, and attributes ----------------------------------------


async def test_committed_entries_are_hard_links_to_their_blob(tree: Tree) -> None:
    fh = await tree.create("f")
    await tree.write(fh, b"linked")
    await tree.close(fh)
    entry = await tree.lookup("f")
    blob = await tree.lookup(sha_digest(b"linked").hex(), BY_SHA256_INODE)
    assert entry.st_ino == tree.file("f").inode  # its own node id: writable again
    assert blob.st_nlink == 2
    reported = pyfuse3.EntryAttributes()
    reported.st_ino = blob.st_ino
    assert set_reported_ino(reported, blob.st_ino)  # the layout was recognised here
    row = tree.axon.index.get(Sha256(sha_digest(b"linked")))
    assert row is not None and BLOB_BASE + row.indx in tree.kernel.attrs
    await tree.ops.unlink(InodeT(INCOMING_INODE), b"f", FakeContext(OPENER))
    assert (await tree.lookup(sha_digest(b"linked").hex(), BY_SHA256_INODE)).st_nlink == 1


async def test_chmod_of_a_committed_entry_takes_effect(tree: Tree) -> None:
    fh = await tree.create("f")
    await tree.close(fh)
    node = tree.file("f")
    tree.incoming.change(node, mode=0o777)
    assert (await tree.lookup("f")).st_mode & 0o777 == 0o777


async def test_o_trunc_on_a_blob_is_refused(tree: Tree) -> None:
    _, digest = await tree.axon.put(b"blob")
    inode = (await tree.lookup(digest.hex(), BY_SHA256_INODE)).st_ino
    with pytest.raises(pyfuse3.FUSEError) as info:
        await tree.ops.open(inode, os.O_RDONLY | os.O_TRUNC, FakeContext(OPENER))
    assert info.value.errno == errno.EROFS
    assert await tree.blob(digest) == b"blob"


async def test_a_delete_from_any_front_end_drops_the_kernels_names(tree: Tree) -> None:
    _, digest = await tree.axon.put(b"gone soon")
    fh = await tree.create("f")
    await tree.write(fh, b"gone soon")
    await tree.close(fh)
    await tree.axon.del_(digest)  # as `axonfs ctl del` does
    assert (BY_SHA256_INODE, digest.hex()) in tree.kernel.entries
    assert any(
        name.endswith(digest.hex()) and parent != BY_SHA256_INODE
        for parent, name in tree.kernel.entries
    )  # its /history link too
    assert (INCOMING_INODE, "f") in tree.kernel.entries  # the entry showing it went
    with pytest.raises(pyfuse3.FUSEError):
        await tree.lookup("f")
    tree.kernel.entries.clear()
    await tree.axon.put(b"gone soon")  # added again: any name left over is dropped
    assert tree.kernel.entries == [(BY_SHA256_INODE, digest.hex())]
    attrs = await tree.lookup(digest.hex(), BY_SHA256_INODE)
    assert attrs.st_size == len(b"gone soon")
