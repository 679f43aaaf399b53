"""The commit intent: what a commit is about to do, so a crash cannot leave orphans.

:meth:`Store.commit <axonfs.store.store.Store.commit>` hands new blobs to the
backend *before* the index transaction that makes them visible, and removes
deleted blobs' bytes *after* it. A crash in between would leave bytes the
index does not name. So before any bytes move, the commit writes
``<store>/commit.intent`` (one ``add <hex>`` or ``del <hex>`` line per op, in
batch order) and empties the file once the batch is done. A store that opens
and finds the file not empty settles each blob it names by the batch's last
word on it:

* the index has the blob: nothing to do (the batch either committed, or never
  reached the index and left the bytes alone);
* ``add``, the index lacks it, the backend has it and it hashes to its name:
  index it, dated now (roll forward: the bytes were durable, the put just had
  not returned);
* otherwise, if the backend has it: remove the bytes (finish a delete, or drop
  a copy that does not match its name).

After that the store is exactly what some prefix of the crashed process's
calls would have made it: ``fsck`` finds nothing.

Durability: the record is synced before the commit moves any bytes (and, the
first time, its directory entry too: the file is then kept, and emptied
rather than removed, so later commits pay one fdatasync and no directory
fsync). A crash between the index commit and the bytes becoming durable (or
gone) must find it: without it a deleted blob's file could outlive its row
(an orphan that ``fsck --repair`` or ``recover`` would index again, undoing
the delete), and an added blob's file could sit unindexed. Emptying a
record of adds needs no sync: one that comes back after a crash is harmless,
since settling is idempotent (a blob the index has is left alone). A record
with deletes is emptied durably: settled again, a stale ``del`` would remove
bytes that another host sharing the bucket may have added since. A deferred
commit (a sync interval, adds to a backend that keeps the bytes off this
machine) does not sync its record: it then guards only against a crash of
the process.

Layout: a header (``AXI2``, the length of the text, its CRC-32) and the
``add``/``del`` lines, written in place at offset 0; emptying it overwrites
the magic with zeros. The file is never truncated: overwriting blocks it has
keeps its size, so the fdatasync writes no metadata, and ext4 starts no
writeback of its own (it does for a file truncated to zero and written
again). A record and its emptying took ~350 us synced and ~230 us unsynced
with truncation, ~150 and ~10 us in place. Bytes past the header's length
are an older record's tail, and a record whose CRC does not match was torn
before any bytes moved under it: both are ignored. A file of the older
layout (text lines only, emptied by truncation) is still read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from axonfs.backends.base import BlobBackend
from axonfs.errors import BlobMissing
from axonfs.fsutil import fsync_path
from axonfs.hashing import Sha256, is_sha256_hex

log = logging.getLogger(__name__)

INTENT_NAME = "commit.intent"
_READ = 4 << 20
_MAGIC = b"AXI2"
_EMPTIED = bytes(len(_MAGIC))
_HEADER = struct.Struct("<4sII")  # magic, length of the text, its CRC-32


def write(path: Path, ops: Iterable[tuple[Sha256, bool]], sync: bool = True) -> None:
    """Record a batch's ``(sha256, is_add)`` ops at *path*, replacing any old
    record; durably unless *sync* is false."""
    text = "".join(f"{'add' if add else 'del'} {sha.hex()}\n" for sha, add in ops).encode()
    data = _HEADER.pack(_MAGIC, len(text), zlib.crc32(text)) + text
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        created = True
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        created = False
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        if sync or created:  # created once: later synced records rely on its name
            os.fdatasync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_path(path.parent)  # a new file's name is durable only once its directory is


def read(path: Path) -> dict[Sha256, bool] | None:
    """The last word on each blob in the record at *path* (True: add), or None
    if there is no record (no file, an emptied one, or a torn one)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data or data.startswith(_EMPTIED):
        return None
    if data.startswith(_MAGIC):
        _, length, crc = _HEADER.unpack_from(data.ljust(_HEADER.size, b"\0"))
        text = data[_HEADER.size : _HEADER.size + length]
        if len(data) < _HEADER.size or len(text) != length or zlib.crc32(text) != crc:
            log.warning("%s: ignoring a torn commit intent (written before any bytes moved)", path)
            return None
    else:
        text = data  # the older layout: the lines alone, emptied by truncation
    final: dict[Sha256, bool] = {}
    for line in text.decode(errors="replace").splitlines():
        kind, _, hexd = line.partition(" ")
        if kind in ("add", "del") and is_sha256_hex(hexd):  # a torn last line is skipped
            final[Sha256(bytes.fromhex(hexd))] = kind == "add"
    return final


def clear(path: Path, sync: bool = False) -> None:
    """Empty the record: its magic overwritten in place (the file is kept, so
    the next :func:`write` need not sync its directory); durably if *sync*."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, _EMPTIED, 0)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def verified_size(backend: BlobBackend, sha256: Sha256) -> int | None:
    """The size of the backend's copy of *sha256* if it hashes to its name, else None."""
    hasher = hashlib.sha256()
    try:
        with backend.open(sha256) as reader:
            offset = 0
            while piece := reader.read(offset, _READ):
                hasher.update(piece)
                offset += len(piece)
    except BlobMissing:
        return None
    return offset if hasher.digest() == sha256 else None
