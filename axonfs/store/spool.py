"""Spool files: where bytes wait while their hash is unknown.

Spools live in ``<store>/tmp/`` on the same filesystem as the local blob
directory, so committing one is a rename. They are never listed as blobs, and
whatever is left behind by a crash is removed when the store opens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from axonfs.fsutil import start_writeback

log = logging.getLogger(__name__)

SPOOL_PREFIX = "spool-"
WRITEBACK_MIN = 4 << 20
"""Start writeback of every this many appended bytes (see Spool.start_writeback)."""


class Spool:
    """A temporary file plus the running sha256 of what was appended to it.

    Appends (:meth:`append`) hash as they go. Random writes (:meth:`pwrite`)
    mark the hash stale; :meth:`digest` then re-reads the file once.
    Synchronous: call the blocking methods from a worker thread.
    """

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=directory)
        self.fd = fd
        self.path = Path(name)
        self.size = 0
        self._hasher = hashlib.sha256()
        self._hashed = 0  # bytes of the file covered by _hasher, from offset 0
        self._written_back = 0  # writeback was started for bytes below this offset

    def append(self, data: bytes | memoryview) -> None:
        """Write *data* at the end and hash it."""
        self.pwrite(data, self.size)

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        """Write *data* at *offset* and hash it if it extends the hashed prefix."""
        written = self.write_bytes(data, offset)
        self.hash_bytes(data, offset)
        return written

    def write_bytes(self, data: bytes | memoryview, offset: int) -> int:
        """Only the write half of :meth:`pwrite` (may run beside :meth:`hash_bytes`)."""
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.pwrite(self.fd, view[written:], offset + written)
        self.size = max(self.size, offset + len(view))
        self.start_writeback()
        return written

    def hash_bytes(self, data: bytes | memoryview, offset: int) -> None:
        """Only the hash half of :meth:`pwrite`: extend the running sha256."""
        if offset == self._hashed:
            self._hasher.update(data)
            self._hashed += len(data)
        elif offset < self._hashed:
            self._hashed = -1  # rewrote hashed bytes: re-hash at the end

    def start_writeback(self) -> None:
        """Ask the kernel to start writing out what was appended so far.

        A large blob is then mostly on disk by the time the commit's sync
        runs, instead of the whole blob being flushed after the last write:
        the disk works while the CPU hashes. Failures only cost that overlap.
        """
        if self.size - self._written_back < WRITEBACK_MIN:
            return
        if start_writeback(self.fd, self._written_back, self.size - self._written_back):
            self._written_back = self.size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        if size < self._hashed:
            self._hashed = -1
        self.size = size

    @property
    def fully_hashed(self) -> bool:
        """True if :meth:`digest` is free (every byte was hashed as it came)."""
        return self._hashed == self.size

    def digest(self) -> bytes:
        """Return the sha256 of the whole file, re-reading it if needed."""
        if self._hashed != self.size:
            self._rehash()
        return self._hasher.digest()

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def _rehash(self) -> None:
        hasher = hashlib.sha256()
        offset = 0
        while offset < self.size:
            chunk = os.pread(self.fd, 1 << 20, offset)
            if not chunk:
                break
            hasher.update(chunk)
            offset += len(chunk)
        self._hasher, self._hashed = hasher, offset

    def sync(self) -> None:
        """fdatasync the spool (before it is committed)."""
        os.fdatasync(self.fd)

    def detach(self) -> Path:
        """Close the descriptor and hand over the file (to a backend)."""
        self.close()
        return self.path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the file."""
        self.close()
        self.path.unlink(missing_ok=True)


def write_file(directory: Path, data: bytes) -> Path:
    """Write *data* to a new spool file (unsynced) and return its path."""
    spool = Spool(directory)
    try:
        spool.write_bytes(data, 0)
    except BaseException:
        spool.discard()
        raise
    return spool.detach()


def sweep(directory: Path) -> int:
    """Remove spool files a crashed process left behind; return how many."""
    removed = 0
    for entry in os.scandir(directory):
        if entry.name.startswith(SPOOL_PREFIX):
            os.unlink(entry.path)
            removed += 1
    if removed:
        log.info("removed %d stale spool files from %s", removed, directory)
    return removed
