"""Blobs as plain files: ``<root>/ab/cd/<sha256hex>``.

A spool file is renamed into place (same filesystem, so the rename is atomic)
and made durable by :meth:`LocalBackend.flush`, which calls ``syncfs(2)`` once
for a whole group of blobs: one journal commit covers every file's data and
every rename, instead of two fsyncs per blob. Nothing but complete, verified
blobs ever appears under ``<root>``: partial data lives in the spool directory
until its hash is known.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from axonfs.backends.base import BlobBackend, BlobReader, Listing
from axonfs.errors import BackendError, BlobMissing
from axonfs.hashing import Sha256, is_sha256_hex

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding *fd* (data, metadata, renames)."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class LocalReader(BlobReader):
    """An open blob file read with ``pread``."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalBackend(BlobBackend):
    """A directory of blob files, nested by the first two bytes of the hash."""

    name = "local"
    reads_are_local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self.ignored = 0

    def path_of(self, sha256: Sha256) -> Path:
        hexd = sha256.hex()
        return self.root / hexd[0:2] / hexd[2:4] / hexd

    def put_file(self, sha256: Sha256, path: Path) -> None:
        target = self.path_of(sha256)
        try:
            os.chmod(path, 0o444)
            try:
                os.rename(path, target)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(path, target)
        except OSError as exc:
            raise BackendError(f"cannot store blob {sha256.hex()}: {exc.strerror}",
                               sha256=sha256.hex(), errno=exc.errno) from exc

    def flush(self) -> None:
        try:
            syncfs(self._root_fd)
        except OSError as exc:
            raise BackendError(f"syncfs failed: {exc.strerror}", errno=exc.errno) from exc

    def open(self, sha256: Sha256) -> LocalReader:
        try:
            fd = os.open(self.path_of(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobMissing(f"blob {sha256.hex()} is missing from {self.root}",
                              sha256=sha256.hex()) from None
        except OSError as exc:
            raise BackendError(f"cannot open blob {sha256.hex()}: {exc.strerror}",
                               sha256=sha256.hex()) from exc
        return LocalReader(fd, os.fstat(fd).st_size)

    def delete(self, sha256: Sha256) -> bool:
        try:
            os.unlink(self.path_of(sha256))
        except FileNotFoundError:
            return False
        return True

    def exists(self, sha256: Sha256) -> bool:
        return self.path_of(sha256).exists()

    def list(self) -> Iterator[Listing]:
        self.ignored = 0
        for top in _scandir_sorted(self.root):
            for mid in _scandir_sorted(top):
                for entry in _scandir_sorted(mid):
                    if is_sha256_hex(entry.name) and entry.name.startswith(top.name + mid.name):
                        yield Listing(Sha256(bytes.fromhex(entry.name)),
                                      entry.stat(follow_symlinks=False).st_size)
                    else:
                        self.ignored += 1

    def usage(self) -> tuple[int, int]:
        st = os.statvfs(self._root_fd)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


def _scandir_sorted(path: Path | os.DirEntry[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if e.is_dir(follow_symlinks=False) or e.is_file(
                follow_symlinks=False)), key=lambda e: e.name)
    except NotADirectoryError:
        return []
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise
