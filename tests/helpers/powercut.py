"""A FUSE file system that loses, on a simulated power cut, what was never synced.

A store whose directory lives on this file system can be "power cut": the
harness process is SIGKILLed, its mount is detached, and the next start shows
only what ``fsync``/``fdatasync``/``msync`` (file data and size) and
``fsync`` of a directory (its entries) made durable. That is the POSIX
worst case a real disk may leave after losing power, and it is what the
kernel's page cache hides from a test that only kills the store's daemon.

Model (the "disk" lives in a backing directory)::

    <backing>/live/<id>          the data of every file as the mount shows it
    <backing>/durable/objs/<id>  the data (and size) of a file as of its last sync
    <backing>/durable/dirs/<id>  a directory's entries as of its last fsync (JSON)
    <backing>/generation         bumped at each start; inode ids are never reused

The tree (names, modes, links) lives in memory; only file data goes through
``live/``. Identities are the harness's own inode numbers, so a rename, a
hard link or an unlinked-but-open file needs no path bookkeeping, and an
inode number freed by the backing file system can never make one file's
synced data land in another's.

* ``fsync``/``fdatasync`` of a file copies the pieces written since its last
  sync (tracked per :data:`CHUNK`) and its size to ``durable/objs``. An
  ``msync(MS_SYNC)`` of a shared mapping reaches the daemon as the same FSYNC
  (after the kernel wrote the dirty pages as WRITEs), so it is covered.
  ``datasync`` is treated like a full fsync: metadata other than the size is
  not modelled.
* A write through a handle opened ``O_SYNC``/``O_DSYNC`` is durable when it
  returns (LMDB writes its meta page that way). The kernel also sends an
  FSYNC after such a write; either is enough.
* ``fsync`` of a directory records its current entries (name, inode, kind,
  mode, symlink target). A file created, renamed, linked or unlinked is
  durable under its new name only once its directory (both directories, for
  a rename) was synced; a directory created by ``mkdir`` likewise needs its
  parent synced. An entry can be durable while its file's data is not: it
  then comes back with its last synced data, or empty (the classic
  zero-length file after a crash).
* ``syncfs(2)`` does not reach a FUSE daemon: the kernel sends FUSE_SYNCFS to
  virtiofs only (checked on Linux 6.18), and libfuse/pyfuse3 have no handler
  for it. On this file system, as on any FUSE file system, syncfs makes
  nothing durable. ``sync(2)`` likewise.
* A crash is a SIGKILL of this process at any instant (or, with
  ``--crash-after-syncs K``, at the start of the K-th sync, before it takes
  effect). Every sync persists its effect before it replies, so whatever
  was acknowledged to a caller is in ``durable/``; nothing else is.

* With ``--keep-unsynced P`` the start after a cut lets each unsynced 4 KiB
  piece of a durable file's data, and its unsynced size, survive with
  probability P, as if the kernel's writeback was part way through when the
  power went: in any order, so a later write may survive where an earlier one
  did not. Directory entries stay strict.

Not modelled: torn sectors; unsynced directory changes that survive anyway
(a real file system may persist a create or rename early); timestamps,
ownership and xattrs across a crash; file locks (the kernel keeps them
locally); fallocate (not implemented, glibc emulates it with writes).

Run as ``python powercut.py BACKING MOUNTPOINT [--crash-after-syncs K]
[--keep-unsynced P --seed S]``; it
prints ``ready`` once mounted and, after a clean unmount, ``syncs N``.
:class:`PowerCutDisk` drives it from a test.

Concurrency: one trio task serves every request (``max_tasks=1``), so the
in-memory tree needs no locks; file I/O is done inline, which is fine for a
test harness whose backing directory is a local disk.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyfuse3

CHUNK = 64 << 10
"""Granularity of the unsynced-write tracking: a sync copies whole chunks."""
SECTOR = 4096
"""Granularity of the unsynced writes ``--keep-unsynced`` lets survive."""
ROOT = 1
_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
_TIMEOUT = 5.0


@dataclass
class Node:
    """One inode of the live tree."""

    id_: int
    mode: int
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    nlink: int = 0
    target: bytes = b""
    children: dict[bytes, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # chunk numbers written since the last sync
    opened: int = 0
    mtime_ns: int = field(default_factory=time.time_ns)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


class Disk:
    """The live tree and its durable image (everything blocking, no FUSE)."""

    def __init__(
        self,
        backing: Path,
        crash_after_syncs: int | None = None,
        keep_unsynced: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.live = backing / "live"
        self.keep_unsynced = keep_unsynced
        self._rng = random.Random(seed)
        self.objs = backing / "durable" / "objs"
        self.dirs = backing / "durable" / "dirs"
        for path in (self.objs, self.dirs):
            path.mkdir(parents=True, exist_ok=True)
        gen_file = backing / "generation"
        generation = int(gen_file.read_text()) + 1 if gen_file.exists() else 1
        gen_file.write_text(str(generation))
        self._next = generation << 40
        self.crash_after_syncs = crash_after_syncs
        self.syncs = 0
        self.nodes: dict[int, Node] = {}
        self._restore()

    # -- start: live := durable -------------------------------------------------

    def _restore(self) -> None:
        """Rebuild the live tree from the durable image; drop everything else."""
        crashed = self.live.with_name("live.before")  # the last run's live data
        shutil.rmtree(crashed, ignore_errors=True)
        if self.live.exists():
            os.rename(self.live, crashed)
        self.live.mkdir()
        self.nodes[ROOT] = Node(ROOT, stat.S_IFDIR | 0o755, nlink=2)
        pending = [ROOT]
        while pending:
            parent = self.nodes[pending.pop()]
            for name, (id_, mode, target) in self._durable_entries(parent.id_).items():
                node = self.nodes.get(id_)
                if node is None:
                    node = self.nodes[id_] = Node(id_, mode, target=bytes.fromhex(target))
                    if node.is_dir:
                        pending.append(id_)
                    elif node.is_file:
                        self._restore_data(id_, crashed / str(id_))
                node.nlink += 1
                parent.children[os.fsencode(name)] = id_
        shutil.rmtree(crashed, ignore_errors=True)
        for directory in (self.objs, self.dirs):  # unreachable: lost with the power
            for entry in os.scandir(directory):
                if int(entry.name.split(".")[0]) not in self.nodes:
                    os.unlink(entry.path)

    def _durable_entries(self, id_: int) -> dict[str, tuple[int, int, str]]:
        try:
            raw = json.loads((self.dirs / f"{id_}.json").read_text())
        except FileNotFoundError:
            return {}
        return {name: (int(v[0]), int(v[1]), str(v[2])) for name, v in raw.items()}

    def _restore_data(self, id_: int, before: Path) -> None:
        durable = self.objs / str(id_)
        data = durable.read_bytes() if durable.exists() else b""
        if self.keep_unsynced and before.exists():
            data = self._mix(data, before.read_bytes())
            durable.write_bytes(data)  # what reached the disk stays there
        (self.live / str(id_)).write_bytes(data)

    def _mix(self, durable: bytes, unsynced: bytes) -> bytes:
        """Let each unsynced :data:`SECTOR` (and the unsynced size) have reached
        the disk with probability :attr:`keep_unsynced`: a power cut in the
        middle of the kernel's writeback."""
        keep = self._rng.random
        size = len(unsynced) if keep() < self.keep_unsynced else len(durable)
        mixed = bytearray(durable[:size].ljust(size, b"\0"))
        for offset in range(0, size, SECTOR):
            piece = unsynced[offset : min(offset + SECTOR, size)]
            if piece != mixed[offset : offset + len(piece)] and keep() < self.keep_unsynced:
                mixed[offset : offset + len(piece)] = piece
        return bytes(mixed)

    # -- the tree -----------------------------------------------------------------

    def new_node(self, mode: int, uid: int, gid: int, rdev: int = 0, target: bytes = b"") -> Node:
        self._next += 1
        node = Node(self._next, mode, uid, gid, rdev, target=target)
        self.nodes[node.id_] = node
        if node.is_file:
            (self.live / str(node.id_)).touch()
        return node

    def link(self, parent: Node, name: bytes, node: Node) -> None:
        parent.children[name] = node.id_
        node.nlink += 2 if node.is_dir else 1
        if node.is_dir:
            parent.nlink += 1
        parent.mtime_ns = time.time_ns()

    def unlink(self, parent: Node, name: bytes) -> None:
        node = self.nodes[parent.children.pop(name)]
        node.nlink -= 2 if node.is_dir else 1
        if node.is_dir:
            parent.nlink -= 1
        parent.mtime_ns = time.time_ns()
        self.maybe_free(node)

    def maybe_free(self, node: Node) -> None:
        if node.nlink <= 0 and node.opened == 0 and node.is_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.live / str(node.id_))

    def size(self, node: Node) -> int:
        if not node.is_file:
            return len(node.target) if stat.S_ISLNK(node.mode) else 0
        try:
            return os.stat(self.live / str(node.id_)).st_size
        except FileNotFoundError:
            return 0

    def mark_dirty(self, node: Node, offset: int, length: int) -> None:
        if length > 0:
            node.dirty.update(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1))
        node.mtime_ns = time.time_ns()

    def truncate(self, node: Node, size: int) -> None:
        old = self.size(node)
        os.truncate(self.live / str(node.id_), size)
        self.mark_dirty(node, min(old, size), abs(old - size))

    # -- syncs: the only way anything becomes durable -----------------------------

    def _count_sync(self) -> None:
        self.syncs += 1
        if self.crash_after_syncs is not None and self.syncs >= self.crash_after_syncs:
            # The power goes out as this sync starts: it has no effect.
            os.kill(os.getpid(), signal.SIGKILL)

    def sync_file(self, node: Node, fd: int) -> None:
        """Make *node*'s data and size durable (fsync, fdatasync, msync, O_DSYNC)."""
        self._count_sync()
        size = os.fstat(fd).st_size
        target = os.open(self.objs / str(node.id_), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for chunk in sorted(node.dirty):
                start = chunk * CHUNK
                if start < size:
                    os.pwrite(target, os.pread(fd, min(CHUNK, size - start), start), start)
            os.ftruncate(target, size)
        finally:
            os.close(target)
        node.dirty.clear()

    def sync_dir(self, node: Node) -> None:
        """Make *node*'s current entries durable (fsync of a directory)."""
        self._count_sync()
        entries = {}
        for name, id_ in node.children.items():
            child = self.nodes[id_]
            entries[os.fsdecode(name)] = [id_, child.mode, child.target.hex()]
        path = self.dirs / f"{node.id_}.json"
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(entries))
        os.replace(temp, path)  # this process may be SIGKILLed at any instant


def _make_operations(disk: Disk) -> pyfuse3.Operations:
    """The pyfuse3 adapter (built here so that importing this module needs no pyfuse3)."""
    import pyfuse3

    class Operations(pyfuse3.Operations):
        """A thin FUSE adapter over :class:`Disk`."""

        def __init__(self) -> None:
            super().__init__()
            self.handles: dict[int, tuple[Node, int, bool]] = {}  # fh -> node, fd, O_DSYNC
            self.dir_handles: dict[int, Node] = {}
            self._next_fh = 0

        def _node(self, inode: int) -> Node:
            node = disk.nodes.get(inode)
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return node

        def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
            attrs = pyfuse3.EntryAttributes()
            attrs.st_ino = node.id_
            attrs.st_mode = node.mode
            attrs.st_nlink = max(node.nlink, 0)
            attrs.st_uid, attrs.st_gid, attrs.st_rdev = node.uid, node.gid, node.rdev
            attrs.st_size = disk.size(node)
            attrs.st_blksize = 4096
            attrs.st_blocks = (attrs.st_size + 511) // 512
            attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = node.mtime_ns
            attrs.entry_timeout = attrs.attr_timeout = _TIMEOUT
            return attrs

        def _child(self, parent_inode: int, name: bytes) -> Node:
            node = disk.nodes.get(self._node(parent_inode).children.get(name, -1))
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return node

        def _new_entry(self, parent_inode: int, name: bytes, node: Node) -> None:
            parent = self._node(parent_inode)
            if name in parent.children:
                raise pyfuse3.FUSEError(errno.EEXIST)
            disk.link(parent, name, node)

        def _open_fh(self, node: Node, flags: int) -> pyfuse3.FileInfo:
            fd = os.open(disk.live / str(node.id_), os.O_RDWR | os.O_CLOEXEC)
            self._next_fh += 1
            self.handles[self._next_fh] = (node, fd, bool(flags & _SYNC_FLAGS))
            node.opened += 1
            return pyfuse3.FileInfo(fh=self._next_fh, keep_cache=True)

        async def lookup(
            self, parent_inode: int, name: bytes, ctx: object
        ) -> pyfuse3.EntryAttributes:
            return self._attrs(self._child(parent_inode, name))

        async def getattr(self, inode: int, ctx: object) -> pyfuse3.EntryAttributes:
            return self._attrs(self._node(inode))

        async def setattr(
            self,
            inode: int,
            attr: pyfuse3.EntryAttributes,
            fields: pyfuse3.SetattrFields,
            fh: int | None,
            ctx: object,
        ) -> pyfuse3.EntryAttributes:
            node = self._node(inode)
            if fields.update_size:
                disk.truncate(node, attr.st_size)
            if fields.update_mode:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                node.uid = attr.st_uid
            if fields.update_gid:
                node.gid = attr.st_gid
            if fields.update_mtime:
                node.mtime_ns = attr.st_mtime_ns
            return self._attrs(node)

        async def readlink(self, inode: int, ctx: object) -> bytes:
            return self._node(inode).target

        async def mknod(
            self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.EntryAttributes:
            node = disk.new_node(mode, ctx.uid, ctx.gid, rdev)
            self._new_entry(parent_inode, name, node)
            return self._attrs(node)

        async def mkdir(
            self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.EntryAttributes:
            node = disk.new_node(stat.S_IFDIR | stat.S_IMODE(mode), ctx.uid, ctx.gid)
            self._new_entry(parent_inode, name, node)
            return self._attrs(node)

        async def symlink(
            self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.EntryAttributes:
            node = disk.new_node(stat.S_IFLNK | 0o777, ctx.uid, ctx.gid, target=target)
            self._new_entry(parent_inode, name, node)
            return self._attrs(node)

        async def unlink(self, parent_inode: int, name: bytes, ctx: object) -> None:
            if self._child(parent_inode, name).is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            disk.unlink(self._node(parent_inode), name)

        async def rmdir(self, parent_inode: int, name: bytes, ctx: object) -> None:
            node = self._child(parent_inode, name)
            if not node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if node.children:
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
            disk.unlink(self._node(parent_inode), name)

        async def rename(
            self,
            parent_inode_old: int,
            name_old: bytes,
            parent_inode_new: int,
            name_new: bytes,
            flags: int,
            ctx: object,
        ) -> None:
            node = self._child(parent_inode_old, name_old)
            new_parent = self._node(parent_inode_new)
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise pyfuse3.FUSEError(errno.EINVAL)
            if name_new in new_parent.children:
                if flags & pyfuse3.RENAME_NOREPLACE:
                    raise pyfuse3.FUSEError(errno.EEXIST)
                replaced = disk.nodes[new_parent.children[name_new]]
                if replaced.is_dir and replaced.children:
                    raise pyfuse3.FUSEError(errno.ENOTEMPTY)
                if replaced.id_ == node.id_:
                    return
                disk.unlink(new_parent, name_new)
            disk.link(new_parent, name_new, node)
            disk.unlink(self._node(parent_inode_old), name_old)

        async def link(
            self, inode: int, new_parent_inode: int, new_name: bytes, ctx: object
        ) -> pyfuse3.EntryAttributes:
            node = self._node(inode)
            self._new_entry(new_parent_inode, new_name, node)
            return self._attrs(node)

        async def open(self, inode: int, flags: int, ctx: object) -> pyfuse3.FileInfo:
            node = self._node(inode)
            if flags & os.O_TRUNC:
                disk.truncate(node, 0)
            return self._open_fh(node, flags)

        async def create(
            self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
        ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
            node = disk.new_node(stat.S_IFREG | stat.S_IMODE(mode), ctx.uid, ctx.gid)
            self._new_entry(parent_inode, name, node)
            return self._open_fh(node, flags), self._attrs(node)

        async def read(self, fh: int, off: int, size: int) -> bytes:
            return os.pread(self.handles[fh][1], size, off)

        async def write(self, fh: int, off: int, buf: bytes) -> int:
            node, fd, synchronous = self.handles[fh]
            written = os.pwrite(fd, buf, off)
            disk.mark_dirty(node, off, written)
            if synchronous:
                disk.sync_file(node, fd)
            return written

        async def fsync(self, fh: int, datasync: bool) -> None:
            node, fd, _ = self.handles[fh]
            disk.sync_file(node, fd)

        async def release(self, fh: int) -> None:
            node, fd, _ = self.handles.pop(fh)
            os.close(fd)
            node.opened -= 1
            disk.maybe_free(node)

        async def opendir(self, inode: int, ctx: object) -> int:
            node = self._node(inode)
            if not node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            self._next_fh += 1
            self.dir_handles[self._next_fh] = node
            return self._next_fh

        async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
            entries = sorted(self.dir_handles[fh].children.items())
            for i, (name, id_) in enumerate(entries[start_id:], start_id + 1):
                if not pyfuse3.readdir_reply(token, name, self._attrs(disk.nodes[id_]), i):
                    break

        async def fsyncdir(self, fh: int, datasync: bool) -> None:
            disk.sync_dir(self.dir_handles[fh])

        async def releasedir(self, fh: int) -> None:
            self.dir_handles.pop(fh, None)

        async def statfs(self, ctx: object) -> pyfuse3.StatvfsData:
            st = os.statvfs(disk.live)
            data = pyfuse3.StatvfsData()
            for name in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_favail",
                "f_namemax",
            ):
                setattr(data, name, getattr(st, name))
            return data

    return Operations()


def main(argv: list[str] | None = None) -> None:
    import pyfuse3
    import trio

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--crash-after-syncs", type=int, default=None)
    parser.add_argument("--keep-unsynced", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    disk = Disk(args.backing, args.crash_after_syncs, args.keep_unsynced, args.seed)
    options = set(pyfuse3.default_options) | {"fsname=powercut", "subtype=powercut"}
    pyfuse3.init(_make_operations(disk), str(args.mountpoint), options)
    print("ready", flush=True)
    try:
        trio.run(pyfuse3.main, 1, 1)
    finally:
        pyfuse3.close(unmount=True)
    print(f"syncs {disk.syncs}", flush=True)


# -- the test side ----------------------------------------------------------------------


class PowerCutDisk:
    """Drives the harness from a test: start, power cut, restart, always unmount.

    Use as a context manager (or call :meth:`close` in a ``finally``): whatever
    happened, the mount is detached and the process gone afterwards.
    """

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.process: subprocess.Popen[str] | None = None
        self.syncs: int | None = None
        mountpoint.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> PowerCutDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self, crash_after_syncs: int | None = None, keep_unsynced: float = 0.0, seed: int = 0
    ) -> Path:
        """Mount the durable image (live := durable); return the mount point.

        *keep_unsynced*: the chance that each unsynced 4 KiB piece of a file (and
        its unsynced size) written before the last cut reached the disk anyway;
        directory entries stay strict.
        """
        assert self.process is None or self.process.poll() is not None
        self._close_pipe()
        command = [
            sys.executable,
            __file__,
            str(self.backing),
            str(self.mountpoint),
            "--keep-unsynced",
            str(keep_unsynced),
            "--seed",
            str(seed),
        ]
        if crash_after_syncs is not None:
            command += ["--crash-after-syncs", str(crash_after_syncs)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until mounted (or dead)
        if line != "ready\n":
            self.close()
            raise RuntimeError(f"the power-cut harness did not start: {line!r}")
        return self.mountpoint

    def wait_power_cut(self, timeout: float) -> bool:
        """Wait for the harness to cut the power itself (``crash_after_syncs``);
        True if it did, False if it is still running after *timeout*."""
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._detach()
        return self.process.returncode == -signal.SIGKILL

    def power_cut(self) -> None:
        """Cut the power now: SIGKILL the harness, detach its mount."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._detach()

    def stop(self) -> int:
        """A clean unmount (nothing is lost: the live tree is not re-read, but the
        next :meth:`start` shows only what was synced); return the syncs served."""
        assert self.process is not None and self.process.stdout is not None
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=True, capture_output=True)
        tail = self.process.stdout.read()
        self.process.wait(10)
        self.syncs = int(tail.split()[-1]) if tail.startswith("syncs") else None
        return self.syncs or 0

    def _detach(self) -> None:
        if _is_mounted(self.mountpoint):
            subprocess.run(
                ["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False
            )

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def close(self) -> None:
        """Unmount and end the harness for sure (a fixture's finally)."""
        try:
            self.power_cut()
        finally:
            self._close_pipe()

    def durable_names(self) -> set[str]:
        """Paths (relative to the mount) of every durable entry, for checks."""
        disk_dirs = self.backing / "durable" / "dirs"
        names: set[str] = set()
        pending = [(ROOT, "")]
        while pending:
            id_, prefix = pending.pop()
            try:
                entries = json.loads((disk_dirs / f"{id_}.json").read_text())
            except FileNotFoundError:
                continue
            for name, (child, mode, _) in entries.items():
                names.add(prefix + name)
                if stat.S_ISDIR(mode):
                    pending.append((child, prefix + name + "/"))
        return names


def _is_mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as file:
        return any(line.split()[4] == str(path) for line in file)


if __name__ == "__main__":
    main()
