"""The commit log: deferred index commits, kept where a killed daemon finds them.

A deferred commit (see :mod:`axonfs.store.pending`) lives in memory until the
next sync writes it into LMDB. So that killing the daemon loses nothing, each
one is also appended here, with a plain ``write()``: the kernel keeps it
whatever happens to the process. Nothing here is ever synced; a power cut may
keep any part of the file, which is why every record carries a checksum and
the log's generation.

Layout of ``<store>/commit.log``::

    header   b"AXCL" + generation u64
    record*  payload length u32 + blake2b-128(generation, payload) + payload
    payload  msgpack: a list of [db number, key, value or nil if deleted]

The generation ties the log to the index: a sync writes ``generation + 1``
into the index in the same transaction that makes the log's changes durable,
then starts the log afresh under that number. At open, a log whose generation
is not the index's was already synced (the process stopped between the two
steps) and is dropped; otherwise the records up to the first one that does not
check out are replayed, in order, so the index is as a prefix of the deferred
commits left it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgpack

log = logging.getLogger(__name__)

LOG_NAME = "commit.log"
_MAGIC = b"AXCL"
_HEADER = struct.Struct(">4sQ")
_RECORD = struct.Struct(">I16s")

Change = tuple[int, bytes, bytes | None]
"""One change of a record: (db number, key, value or None if deleted)."""


def _digest(generation: int, payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16, key=generation.to_bytes(8, "big")).digest()


def encode(changes: Sequence[Change]) -> bytes:
    payload: bytes = msgpack.packb(changes)
    return payload


def decode(payload: bytes) -> list[Change]:
    return [
        (int(db), bytes(key), None if value is None else bytes(value))
        for db, key, value in msgpack.unpackb(payload)
    ]


class CommitLog:
    """The open log file of one index: :meth:`append` deferred commits to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._end = 0
        self._started = False
        self.generation = 0

    def records(self, generation: int) -> Iterator[list[Change]]:
        """The log's records if it belongs to *generation*: each record's
        changes, up to the first record that does not check out."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if len(data) < _HEADER.size:
            return
        magic, found = _HEADER.unpack_from(data)
        if magic != _MAGIC or found != generation:
            return
        at = _HEADER.size
        while at + _RECORD.size <= len(data):
            length, digest = _RECORD.unpack_from(data, at)
            payload = data[at + _RECORD.size : at + _RECORD.size + length]
            if len(payload) < length or _digest(generation, payload) != digest:
                log.info(
                    "the commit log ends in a record that does not check out "
                    "(an interrupted write) at byte %d",
                    at,
                )
                return
            try:
                yield decode(payload)
            except (ValueError, TypeError):  # checks out but does not parse: a bug
                log.error("an unreadable record in %s at byte %d", self.path, at)
                return
            at += _RECORD.size + length

    def start(self, generation: int) -> None:
        """Begin the log anew, empty, as *generation*.

        If this fails, the next :meth:`append` starts it again (and fails
        in its turn if it still cannot): a record is never written to a log
        whose header does not name its generation.
        """
        self.generation = generation
        self._started = False
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(self._fd, 0)
        self._write_at(0, _HEADER.pack(_MAGIC, generation))
        self._end = _HEADER.size
        self._started = True

    def append(self, changes: Sequence[Change]) -> int:
        """Add one deferred commit (not synced: see the module's docstring);
        return the size of its record."""
        if not self._started:
            self.start(self.generation)
        payload = encode(changes)
        record = _RECORD.pack(len(payload), _digest(self.generation, payload)) + payload
        try:
            self._write_at(self._end, record)
        except OSError:
            # Cut off what part of it was written: records after it must follow
            # the last good one, or replay would stop short of them.
            os.ftruncate(self._fd, self._end)
            raise
        self._end += len(record)
        return len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written
