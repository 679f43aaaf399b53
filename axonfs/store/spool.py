"""Spool files: where bytes wait while their hash is unknown.

Spools live in ``<store>/tmp/`` on the same filesystem as the local blob
directory, so committing one is a rename. They are never listed as blobs, and
whatever is left behind by a crash is removed when the store opens.

Direct mode (``Spool(directory, direct=True)``, for append-only writers such
as ``Axon.upload()``): appended bytes are gathered in a page-aligned staging
buffer of :data:`STAGE` bytes, and each full stage is written with
``O_DIRECT``, bypassing the page cache. On the VMs axonfs runs on, copying
into fresh page-cache pages runs at only 300-500 MB/s, while an ``O_DIRECT``
write of a few MiB runs at 1.3-1.5 GB/s; the bytes are going to disk before
the commit anyway (the writer syncs large spools). The cost: a just-uploaded blob
is not in the page cache (the Axon reads it back in the background after the
commit, see ``Axon.save_spool``).
Anything other than an append (a random write, a truncate, a read) flushes
the stage and leaves direct mode for good; a filesystem that refuses
``O_DIRECT`` (``EINVAL``) silently gets ordinary buffered writes.

Memory mode (``Spool(directory, memory_max=N)``, for ``/incoming``, where most
files are small): the bytes stay in memory until the spool would outgrow *N*;
only then is the file created. A small file is then committed from memory
straight into the index journal: no file is created, written, read back and
removed for it. Creating a file is also not the cheap syscall it looks like:
it waits while the filesystem's journal commits (every fsync of the index),
a few hundred microseconds that ``/incoming`` spent on its event loop per file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import mmap
import os
import tempfile
from pathlib import Path

from axonfs.fsutil import start_writeback

log = logging.getLogger(__name__)

SPOOL_PREFIX = "spool-"
WRITEBACK_MIN = 4 << 20
"""Start writeback of every this many appended bytes (see Spool.start_writeback)."""
STAGE = 4 << 20
"""Bytes per ``O_DIRECT`` write in direct mode, and the memory a direct spool
holds. A multiple of any block size, so every stage starts at an aligned
offset. In ``bench_store.py --only upload`` (8 MiB writes) 4 MiB did a little
better than 8 MiB (about 0.93x against 0.91x of sha256) with half the memory."""
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0: not Linux, direct mode never engages


class Spool:
    """A temporary file plus the running sha256 of what was appended to it.

    Appends (:meth:`append`) hash as they go. Random writes (:meth:`pwrite`)
    mark the hash stale; :meth:`digest` then re-reads the file once.
    Synchronous: call the blocking methods from a worker thread.

    With ``direct=True`` appends are staged in memory and written a whole
    :data:`STAGE` at a time with ``O_DIRECT`` (see the module docstring):
    then only :meth:`write_bytes` / :meth:`append` of a piece that
    :meth:`fills_stage` touch the disk, and :meth:`flush` (implied by
    :meth:`sync`, :meth:`detach` and every non-append operation) writes what
    is still staged. :attr:`direct_bytes` counts what went out ``O_DIRECT``.
    """

    def __init__(self, directory: Path, direct: bool = False, memory_max: int = 0) -> None:
        self._directory = directory
        self.fd = -1
        self.path: Path | None = None  # None while the bytes are in memory (memory mode)
        # Memory mode: the spool's bytes until they would pass memory_max.
        self._memory: bytearray | None = bytearray() if memory_max > 0 and not direct else None
        self._memory_max = memory_max
        if self._memory is None:
            self._create_file()
        self.size = 0
        self.direct_bytes = 0  # bytes written with O_DIRECT, all below _stage_start
        self._hasher = hashlib.sha256()
        self._hashed = 0  # bytes of the file covered by _hasher, from offset 0
        self._written_back = 0  # writeback was started for bytes below this offset
        # Direct mode: the file holds [0, _stage_start), the stage [_stage_start, size).
        self._stage: mmap.mmap | None = mmap.mmap(-1, STAGE) if direct and _O_DIRECT else None
        # The stage as a ctypes array, for copies that let go of the GIL (see _stage_bytes).
        self._stage_c = (ctypes.c_char * STAGE).from_buffer(self._stage) if self._stage else None
        self._stage_start = 0
        self._direct_fd = -1  # opened when the first stage fills

    def _create_file(self) -> None:
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=self._directory)
        self.fd, self.path = fd, Path(name)

    @property
    def in_memory(self) -> bool:
        """True while the spool has no file (memory mode, still small)."""
        return self._memory is not None

    def contents(self) -> bytes:
        """The bytes of a spool that is :attr:`in_memory`."""
        assert self._memory is not None
        return bytes(self._memory)

    def creates_file(self, end: int) -> bool:
        """True if growing to *end* bytes creates the file (so not on an event loop)."""
        return self._memory is not None and end > self._memory_max

    def _to_file(self) -> None:
        """Leave memory mode: create the file and write the bytes so far."""
        memory, self._memory = self._memory, None
        if memory is None:
            return
        self._create_file()
        try:
            _pwrite_all(self.fd, memoryview(memory), 0)
        except BaseException:
            self.discard()
            raise

    @property
    def direct(self) -> bool:
        """True while appends are staged for ``O_DIRECT`` writes."""
        return self._stage is not None

    @property
    def staged(self) -> int:
        """Bytes appended but not yet written to the file."""
        return self.size - self._stage_start if self._stage is not None else 0

    def fills_stage(self, nbytes: int) -> bool:
        """True if appending *nbytes* writes to disk (so not on an event loop)."""
        return self._stage is not None and self.staged + nbytes >= STAGE

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
        memory = self._memory
        if memory is not None:
            end = offset + len(data)
            if end <= self._memory_max:
                if offset > len(memory):
                    memory.extend(bytes(offset - len(memory)))  # a hole reads as zeros
                memory[offset:end] = data
                self.size = max(self.size, end)
                return len(data)
            self._to_file()
        if self._stage is not None:
            if offset == self.size:
                return self._stage_bytes(data)
            self.flush()  # a random write: the file must be whole first
        _pwrite_all(self.fd, memoryview(data), offset)
        self.size = max(self.size, offset + len(data))
        self.start_writeback()
        return len(data)

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
        (Ranges written ``O_DIRECT`` are on disk already and are skipped.)
        """
        if self.size - self._written_back < WRITEBACK_MIN or self.fd < 0:
            return
        if start_writeback(self.fd, self._written_back, self.size - self._written_back):
            self._written_back = self.size

    def truncate(self, size: int) -> None:
        memory = self._memory
        if memory is not None and size <= self._memory_max:
            if size < len(memory):
                del memory[size:]
            else:
                memory.extend(bytes(size - len(memory)))
        else:
            self._to_file()
            self.flush()
            os.ftruncate(self.fd, size)
        if size < self._hashed:
            self._hashed = -1
        self.size = size

    def forget_hash(self) -> None:
        """Make :meth:`digest` re-read the bytes (the running hash is not to be trusted)."""
        self._hashed = -1

    @property
    def fully_hashed(self) -> bool:
        """True if :meth:`digest` is free (every byte was hashed as it came)."""
        return self._hashed == self.size

    def digest(self) -> bytes:
        """Return the sha256 of the whole file, re-reading it if needed."""
        if self._hashed != self.size:
            self.flush()
            self._rehash()
        return self._hasher.digest()

    def read(self, offset: int, size: int) -> bytes:
        memory = self._memory  # once: a write in another thread may move it to a file
        if memory is not None:
            return bytes(memory[offset : offset + size])
        self.flush()
        return os.pread(self.fd, size, offset)

    def _rehash(self) -> None:
        memory = self._memory
        if memory is not None:
            self._hasher, self._hashed = hashlib.sha256(memory), len(memory)
            return
        hasher = hashlib.sha256()
        offset = 0
        while offset < self.size:
            chunk = os.pread(self.fd, 1 << 20, offset)
            if not chunk:
                break
            hasher.update(chunk)
            offset += len(chunk)
        self._hasher, self._hashed = hasher, offset

    def flush(self) -> None:
        """Write what is staged (buffered) and leave direct mode for good.

        The partial stage starts at an aligned offset, so it shares no page
        with the ``O_DIRECT`` part; one fdatasync then covers both.
        """
        stage = self._stage
        if stage is None:
            return
        with memoryview(stage) as view:
            _pwrite_all(self.fd, view[: self.staged], self._stage_start)
        self._written_back = max(self._written_back, self._stage_start)
        self._stage_start = self.size
        self._release_direct()

    def sync(self) -> None:
        """fdatasync the spool (before it is committed)."""
        self._to_file()
        self.flush()
        os.fdatasync(self.fd)

    def detach(self) -> Path:
        """Write what is staged, close the descriptor and hand over the file (to a backend)."""
        self._to_file()
        self.flush()
        self.close()
        assert self.path is not None
        return self.path

    def close(self) -> None:
        self._release_direct()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the file (or drop the bytes held in memory)."""
        self.close()
        self._memory = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    # -- direct mode -------------------------------------------------------------

    def _stage_bytes(self, data: bytes | memoryview) -> int:
        """Append *data* to the stage, writing out every stage it fills.

        The copy of a ``bytes`` goes through ``ctypes.memmove``, which releases
        the GIL: a slice assignment would hold it for the whole copy, and the
        hash of the same piece (the slower half of an upload) in the other
        thread could not even start until the copy was done.
        """
        stage, stage_c = self._stage, self._stage_c
        assert stage is not None and stage_c is not None
        view = memoryview(data)
        source = (
            ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
            if type(data) is bytes
            else None
        )  # the bytes' own buffer: no copy
        done = 0
        while done < len(view) and self._stage is not None:
            at = self.size - self._stage_start
            n = min(len(view) - done, STAGE - at)
            if source is not None:
                ctypes.memmove(ctypes.addressof(stage_c) + at, source + done, n)
            else:
                stage[at : at + n] = view[done : done + n]
            self.size += n
            done += n
            if at + n == STAGE:
                self._write_stage()
        if done < len(view):  # direct mode ended on the way (O_DIRECT refused)
            self.write_bytes(view[done:], self.size)
        return len(view)

    def _write_stage(self) -> None:
        """Write the full stage at its aligned offset, ``O_DIRECT`` if the filesystem lets us."""
        stage = self._stage
        assert stage is not None and self.size - self._stage_start == STAGE
        try:
            if self._direct_fd < 0:
                self._direct_fd = self._open_direct()
            written = self._pwrite_direct(stage, self._stage_start)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise  # ENOSPC, EIO...: the caller's error, as for a buffered write
            log.debug("%s: O_DIRECT refused (%s); writing through the page cache", self.path, exc)
            self.flush()
            return
        self.direct_bytes += written
        if written < STAGE:  # a short direct write (nearly full disk): finish buffered
            self._stage_start += written
            stage.move(0, written, STAGE - written)
            self.flush()
            return
        self._stage_start += STAGE

    def _open_direct(self) -> int:
        """A second, ``O_DIRECT`` descriptor onto the spool file."""
        assert self.path is not None  # direct spools are never in memory
        return os.open(self.path, os.O_WRONLY | os.O_CLOEXEC | _O_DIRECT)

    def _pwrite_direct(self, stage: mmap.mmap, offset: int) -> int:
        """One ``O_DIRECT`` write of the whole (page-aligned) stage at *offset*."""
        return os.pwrite(self._direct_fd, stage, offset)

    def _release_direct(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1
        stage, self._stage, self._stage_c = self._stage, None, None  # _stage_c: a view of it
        if stage is not None:
            # A view may still be held (by a traceback): then it goes when that does.
            with contextlib.suppress(BufferError):
                stage.close()


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)


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
