"""Blobs as plain files: ``<root>/ab/<sha256hex>``.

One level of 256 directories keeps every directory reasonably small up to
tens of millions of blobs, while a batch of puts touches (and fsyncs) few
directories and creates none after the first few hundred blobs.

A batch's spool files first get their writeback started together
(:meth:`LocalBackend.prepare`), then each is fdatasync'ed, then renamed into
place (same filesystem, so the rename is atomic); :meth:`LocalBackend.flush`
fsyncs the directories the renames (and deletes) touched. Small blobs skip all of this: the
store journals their bytes in the index commit, and later writes a batch of
their files with ``put_file(sync=False)`` and makes them durable with one
:meth:`sync_blobs`. Within a batch only the first sync of each kind waits for a
journal commit (ext4 commits every pending change at once), so a batch of
blobs costs about two journal commits, not two per blob. Journaled small
blobs are synced with one ``syncfs(2)`` per batch instead (see
:meth:`LocalBackend.sync_blobs`): it also waits for other writers on the
filesystem, but it runs in the background, and a flush per file costs far more.
On a FUSE filesystem syncfs never reaches the server, so there the batch is
synced file by file.

Nothing but complete, verified blobs ever appears under ``<root>``: partial
data lives in the spool directory until its hash is known.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from axonfs.backends.base import BlobBackend, BlobReader, Listing, StagedBlobs
from axonfs.backends.direct import (
    O_DIRECT,
    DirectBuffers,
    pages_cached,
    pread_nowait,
    read_direct,
    refused,
)
from axonfs.backends.fileworker import FILE_MODE, STORED, FileWorker, FileWorkerError
from axonfs.errors import BackendError, BlobMissing
from axonfs.fsutil import fsync_path, start_writeback, syncfs, syncfs_is_durable
from axonfs.hashing import Sha256, is_sha256_hex

log = logging.getLogger(__name__)

_Args = TypeVar("_Args")
_Result = TypeVar("_Result")

DIRECT_READ_MIN = 4 << 20
"""Reads of at least this many bytes whose pages are not cached go round the
page cache (see :meth:`LocalReader.read`)."""
DIRECT_BUFFER = 16 << 20
_DIRECT_BUFFERS = 4

# Shared by every local reader. A read that finds none free goes through the
# page cache instead of waiting.
_direct_buffers = DirectBuffers(_DIRECT_BUFFERS, DIRECT_BUFFER)


class LocalReader(BlobReader):
    """An open blob file read with ``pread``."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._direct_fd = -1  # opened at the first direct read
        self._direct_refused = not O_DIRECT
        self._direct_lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        """Read through the page cache, or round it for a large read of a
        blob that is not cached.

        Reading cold pages through the cache costs more than the disk here:
        every page must be allocated first, and on a VM fresh pages are
        slow to fault in (a 1 GiB blob just written ``O_DIRECT`` read back at
        ~500 MB/s buffered against ~2.3 GB/s ``O_DIRECT``). Large gets stream a
        blob once, so they skip the cache rather than fill it; pages that are
        cached already (a blob read through the mount a moment ago) are read
        from memory, which is faster still.
        """
        if (
            size >= DIRECT_READ_MIN
            and not self._direct_refused
            and not self.is_cached(offset, size)
            and (data := self._read_direct(offset, size))
        ):
            return data
        return os.pread(self.fd, size, offset)

    def _read_direct(self, offset: int, size: int) -> bytes | None:
        """Up to *size* bytes at *offset* read ``O_DIRECT``, or None if that is
        not possible now (no buffer free, or the filesystem refuses it)."""
        fd = self._open_direct()
        if fd < 0:
            return None
        buffer = _direct_buffers.take()
        if buffer is None:
            return None
        try:
            return read_direct(fd, buffer, offset, size, self.size)
        except OSError as exc:
            if not refused(exc):
                raise
            log.debug("blob reads go through the page cache: O_DIRECT read refused")
            self._direct_refused = True
            return None
        finally:
            _direct_buffers.give(buffer)

    def _open_direct(self) -> int:
        """A second descriptor onto the blob, ``O_DIRECT``; -1 if refused.

        Opened through ``/proc/self/fd``, so it is the very file this reader
        holds even if the blob was deleted since."""
        with self._direct_lock:
            if self._direct_fd < 0 and not self._direct_refused:
                try:
                    self._direct_fd = os.open(
                        f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC | O_DIRECT
                    )
                except OSError as exc:  # tmpfs before Linux 6.6 refuses it; /proc may be absent
                    log.debug("blob reads go through the page cache: %s", exc)
                    self._direct_refused = True
            return self._direct_fd

    def read_cached(self, offset: int, size: int) -> bytes | None:
        """``preadv2(RWF_NOWAIT)``: the page cache's bytes, or None if the
        read would have to wait for the disk."""
        size = max(0, min(size, self.size - offset))
        buffer = bytearray(size)
        done = pread_nowait(self.fd, buffer, offset) if size else 0
        return bytes(buffer) if done == size else None

    def is_cached(self, offset: int, size: int) -> bool:
        """True if the first and last page of the range are in the page cache
        (the kernel's readahead fills what lies between)."""
        return pages_cached(self.fd, offset, size, self.size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1


class LocalBackend(BlobBackend):
    """A directory of blob files, nested by the first two hex digits of the hash."""

    name = "local"
    reads_are_local = True
    deferred_sync = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root_name = str(root)
        root.mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._dirty_dirs: set[Path] = set()
        self._syncfs_works = syncfs_is_durable(self._root_fd)
        self._worker = FileWorker()  # writes staged files; started at the first stage()
        self.ignored = 0

    def path_of(self, sha256: Sha256) -> Path:
        return Path(self._name_of(sha256))

    def _name_of(self, sha256: Sha256) -> str:
        # A str, not a Path: small-blob spills call this for every blob, and
        # pathlib's joins cost more than the syscalls they feed.
        hexd = sha256.hex()
        return f"{self._root_name}/{hexd[0:2]}/{hexd}"

    def prepare(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # put_file will report it
            try:
                start_writeback(fd)
            finally:
                os.close(fd)

    def put_file(self, sha256: Sha256, path: Path, sync: bool = True) -> None:
        target = self.path_of(sha256)
        try:
            if sync:
                fsync_path(path, data_only=True)
            os.chmod(path, FILE_MODE)
            try:
                os.rename(path, target)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._dirty_dirs.add(self.root)
                os.rename(path, target)
            if sync:
                self._dirty_dirs.add(target.parent)
        except OSError as exc:
            raise BackendError(
                f"cannot store blob {sha256.hex()}: {exc.strerror}",
                sha256=sha256.hex(),
                errno=exc.errno,
            ) from exc

    def flush(self) -> None:
        # Deepest first, so a new directory's entry is synced after its contents.
        dirs = sorted(self._dirty_dirs, key=lambda p: len(p.parts), reverse=True)
        self._dirty_dirs.clear()
        try:
            for directory in dirs:
                fsync_path(directory)
        except OSError as exc:
            raise BackendError(f"cannot sync {directory}: {exc.strerror}", errno=exc.errno) from exc

    def stage(self, blobs: Sequence[tuple[Sha256, bytes]], tmp_prefix: str) -> _StagedFiles:
        items = [(f"{tmp_prefix}{sha.hex()}", self._name_of(sha), data) for sha, data in blobs]
        results = _ask(self._worker.write, items)
        outcomes = list(zip((sha for sha, _ in blobs), items, results, strict=True))
        written = {sha: (temp, final) for sha, (temp, final, _), result in outcomes if not result}
        staged = _StagedFiles(self._worker, written)
        failed = [(sha, result) for sha, _, result in outcomes if result not in (0, STORED)]
        if failed:
            staged.place(())
            sha, number = failed[0]
            raise BackendError(
                f"cannot write blob {sha.hex()}: {os.strerror(number)}",
                sha256=sha.hex(),
                errno=number,
            )
        return staged

    def stored(self, sha256s: Sequence[Sha256]) -> set[Sha256]:
        present = _ask(self._worker.exists, [self._name_of(sha) for sha in sha256s])
        return {sha for sha, there in zip(sha256s, present, strict=True) if there}

    def sync_blobs(self, sha256s: list[Sha256]) -> None:
        # One syncfs for the whole batch: it makes the files, their inodes and
        # the renames durable with one journal commit and one disk flush. For
        # 256 files of 4 KiB it took 2-11 ms here, against 60-320 ms for an
        # fdatasync per file plus directory fsyncs (each fdatasync is a flush).
        try:
            if self._syncfs_works:
                syncfs(self._root_fd)
            else:
                self._sync_each(sha256s)
        except OSError as exc:
            raise BackendError(f"cannot sync blobs: {exc.strerror}", errno=exc.errno) from exc

    def _sync_each(self, sha256s: list[Sha256]) -> None:
        """What syncfs does, file by file, where syncfs does nothing (FUSE):
        each file's data, then its directory, then the root (a spill may have
        created the directory). Runs beside commits, so it leaves
        :attr:`_dirty_dirs` to them."""
        directories: set[str] = set()
        for sha in sha256s:
            name = self._name_of(sha)
            try:
                fsync_path(Path(name), data_only=True)
            except FileNotFoundError:
                continue  # deleted meanwhile; the caller was told it is missing
            directories.add(os.path.dirname(name))
        for directory in sorted(directories):
            fsync_path(Path(directory))
        fsync_path(self.root)

    def open(self, sha256: Sha256) -> LocalReader:
        try:
            fd = os.open(self._name_of(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobMissing(
                f"blob {sha256.hex()} is missing from {self.root}", sha256=sha256.hex()
            ) from None
        except OSError as exc:
            raise BackendError(
                f"cannot open blob {sha256.hex()}: {exc.strerror}",
                sha256=sha256.hex(),
                errno=exc.errno,
            ) from exc
        return LocalReader(fd, os.fstat(fd).st_size)

    def delete(self, sha256: Sha256) -> bool:
        name = self._name_of(sha256)
        try:
            os.unlink(name)
        except FileNotFoundError:
            return False
        self._dirty_dirs.add(Path(name).parent)  # the next flush makes the unlink durable
        return True

    def exists(self, sha256: Sha256) -> bool:
        return os.path.exists(self._name_of(sha256))

    def list(self) -> Iterator[Listing]:
        self.ignored = 0
        for top in _scandir_sorted(self.root):
            for entry in _scandir_sorted(top):
                if is_sha256_hex(entry.name) and entry.name.startswith(top.name):
                    yield Listing(
                        Sha256(bytes.fromhex(entry.name)), entry.stat(follow_symlinks=False).st_size
                    )
                else:
                    self.ignored += 1

    def usage(self) -> tuple[int, int]:
        st = os.statvfs(self._root_fd)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def close(self) -> None:
        self._worker.close()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


class _StagedFiles(StagedBlobs):
    """Files the worker wrote under temporary names, and where they go."""

    def __init__(self, worker: FileWorker, moves: dict[Sha256, tuple[str, str]]) -> None:
        self._worker = worker
        self._moves = moves
        self.shas = list(moves)

    def place(self, keep: Collection[Sha256], among: Collection[Sha256] | None = None) -> None:
        kept = set(keep)
        moves = {
            sha: self._moves.pop(sha)
            for sha in (list(self._moves) if among is None else among)
            if sha in self._moves
        }
        chosen = [move for sha, move in moves.items() if sha in kept]
        dropped = [temporary for sha, (temporary, _) in moves.items() if sha not in kept]
        if dropped:
            _ask(self._worker.unlink, dropped)
        if not chosen:
            return
        results = _ask(self._worker.rename, chosen)
        failed = [(move, number) for move, number in zip(chosen, results, strict=True) if number]
        if failed:
            _ask(self._worker.unlink, [temporary for (temporary, _), _ in failed])
            (_, target), number = failed[0]
            raise BackendError(f"cannot store blob {target}: {os.strerror(number)}", errno=number)


def _ask(call: Callable[[_Args], _Result], args: _Args) -> _Result:
    """A request to the file worker, its failure as a BackendError."""
    try:
        return call(args)
    except FileWorkerError as exc:
        raise BackendError(f"cannot write blob files: {exc.strerror}", errno=exc.errno) from exc


def _scandir_sorted(path: Path | os.DirEntry[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(
                (
                    e
                    for e in it
                    if e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)
                ),
                key=lambda e: e.name,
            )
    except NotADirectoryError:
        return []
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise
