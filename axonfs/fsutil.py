"""Small durability helpers over the syscalls Python's os module lacks."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_FUSE_SUPER_MAGIC = 0x65735546
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> bool:
    """Ask the kernel to start writing a file range out (0 bytes: to the end).

    It does not wait and promises nothing; a later fdatasync then finds the
    data already on its way. Starting the writeback of a whole batch of files
    before syncing any of them lets one journal commit cover all of their
    block allocations, instead of one commit per file. Returns False if the
    kernel refused (the caller loses only the head start).
    """
    return bool(_libc.sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE) == 0)


def syncfs(fd: int) -> None:
    """Make everything written to the filesystem holding *fd* durable: data,
    inodes and directory entries, for every file, with one journal commit.

    Raises OSError if writeback failed since *fd* was opened (Linux >= 5.8).
    """
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def syncfs_is_durable(fd: int) -> bool:
    """False if syncfs(2) on the filesystem holding *fd* makes nothing durable.

    That is the case for FUSE: the kernel sends FUSE_SYNCFS to virtiofs only,
    so on any other FUSE filesystem syncfs returns 0 without the server
    hearing of it, while fsync and fdatasync do reach it.
    """
    buffer = ctypes.create_string_buffer(256)  # struct statfs: f_type comes first
    if _libc.fstatfs(fd, buffer) != 0:
        return True  # cannot tell: trust syncfs, as before
    return ctypes.c_long.from_buffer(buffer).value != _FUSE_SUPER_MAGIC


def fsync_path(path: Path, data_only: bool = False) -> None:
    """Open *path* read-only and fsync (or fdatasync) it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; return the ``(old, new)`` soft limit.

    The soft limit (often 1024) is a guard for programs that use select(2);
    the daemon uses epoll and holds a descriptor per open blob, per spool and
    per connection, so it takes what the administrator allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
