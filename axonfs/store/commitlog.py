"""The commit log: deferred index commits, kept where a killed daemon finds them.

A deferred commit (see :mod:`axonfs.store.pending`) lives in memory until the
next sync writes it into LMDB. So that killing the daemon loses nothing, each
one is also appended here, with a plain ``write()``: the kernel keeps it
whatever happens to the process. Nothing here is ever synced; a power cut may
keep any part of a file, which is why every record carries a checksum and
the log's generation.

The log is two files, one per parity of the generation (``commit.log`` for
even ones, ``commit.1.log`` for odd ones), so that commits can go on during a
sync: the sync freezes what the layer holds, the log moves on to the next
generation's file, and the frozen records stay in theirs until the sync's
transaction, which writes ``generation + 1`` into the index, is durable.

Layout of each file::

    header   b"AXC2" + generation u64 + previous u64
    record*  payload length u32 + blake2b-128(generation, payload) + payload
    payload  msgpack: a list of [db number, key, value or nil if deleted]

*previous* is how long the previous generation's file was when this one
started: a log follows on from the previous one only if that one still
holds all of it. (A log of the older one-file layout has the header
``b"AXCL" + generation`` and follows on from nothing.)

At open, the index's generation *g* says what to replay: the records of the
log of generation *g* up to the first one that does not check out, then, if
that log was whole, those of generation *g + 1*. A log of any other
generation was synced already (the process stopped between a sync's
transaction and the log's next start) and is ignored. Records hold whole
values, never increments, so replaying one that LMDB already has is
harmless: a sync whose log could not move on leaves its generation in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack

log = logging.getLogger(__name__)

LOG_NAME = "commit.log"
ODD_LOG_NAME = "commit.1.log"
"""The log files of even and of odd generations (see the module's docstring)."""
_MAGIC = b"AXC2"
_HEADER = struct.Struct(">4sQQ")
_OLD_MAGIC = b"AXCL"
_OLD_HEADER = struct.Struct(">4sQ")
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


@dataclass(frozen=True, slots=True)
class _Found:
    """What one log file holds that checks out."""

    records: list[list[Change]]
    end: int
    """Where its last good record ends."""
    previous: int | None
    """How long the previous generation's log was when this one started
    (None: this one follows on from nothing)."""


class CommitLog:
    """The log files of one index: :meth:`append` deferred commits to them."""

    def __init__(self, path: Path) -> None:
        """*path* is the log of even generations; the odd ones' is beside it."""
        self.paths = (path, path.with_name(ODD_LOG_NAME))
        self._fds = [-1, -1]
        self._end = 0
        self.generation = -1
        """The generation appended to (-1: none started yet)."""

    def replay(self, generation: int) -> tuple[list[list[Change]], int]:
        """What to replay onto an index of *generation*: the records of its log
        and of the next one that follows on from it whole (see the module's
        docstring), and the generation of the last log they come from."""
        first = self._read(generation)
        if first is None:
            return [], generation
        after = self._read(generation + 1)
        if after is None or after.previous != first.end:
            return first.records, generation
        return first.records + after.records, generation + 1

    def _read(self, generation: int) -> _Found | None:
        """The records of the log file of *generation*, if there is one."""
        for path in self.paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            previous: int | None
            if data[:4] == _MAGIC and len(data) >= _HEADER.size:
                _, found, previous = _HEADER.unpack_from(data)
                at = _HEADER.size
            elif data[:4] == _OLD_MAGIC and len(data) >= _OLD_HEADER.size:
                _, found = _OLD_HEADER.unpack_from(data)
                previous, at = None, _OLD_HEADER.size
            else:
                continue
            if found == generation:
                return self._records(path, data, at, generation, previous)
        return None

    @staticmethod
    def _records(path: Path, data: bytes, at: int, generation: int, previous: int | None) -> _Found:
        records: list[list[Change]] = []
        while at + _RECORD.size <= len(data):
            length, digest = _RECORD.unpack_from(data, at)
            payload = data[at + _RECORD.size : at + _RECORD.size + length]
            if len(payload) < length or _digest(generation, payload) != digest:
                log.info(
                    "the commit log %s ends in a record that does not check out "
                    "(an interrupted write) at byte %d",
                    path.name,
                    at,
                )
                break
            try:
                records.append(decode(payload))
            except (ValueError, TypeError):  # checks out but does not parse: a bug
                log.error("an unreadable record in %s at byte %d", path, at)
                break
            at += _RECORD.size + length
        return _Found(records, at, previous)

    def start(self, generation: int, follows: bool = False) -> None:
        """Append from now on to the log of *generation*, begun anew, empty.

        *follows*: it follows on from the log appended to until now, whose
        records a sync has frozen and which stays until that sync is durable.
        Raises OSError and leaves the log as it was if the new one cannot be
        begun.
        """
        parity = generation % 2
        if self._fds[parity] < 0:
            self._fds[parity] = os.open(
                self.paths[parity], os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        fd = self._fds[parity]
        os.ftruncate(fd, 0)
        _write_at(fd, 0, _HEADER.pack(_MAGIC, generation, self._end if follows else 0))
        self.generation = generation
        self._end = _HEADER.size

    def append(self, changes: Sequence[Change]) -> int:
        """Add one deferred commit (not synced: see the module's docstring);
        return the size of its record."""
        fd = self._fds[self.generation % 2]
        payload = encode(changes)
        record = _RECORD.pack(len(payload), _digest(self.generation, payload)) + payload
        try:
            _write_at(fd, self._end, record)
        except OSError:
            # Cut off what part of it was written: records after it must follow
            # the last good one, or replay would stop short of them.
            os.ftruncate(fd, self._end)
            raise
        self._end += len(record)
        return len(record)

    def close(self) -> None:
        for parity, fd in enumerate(self._fds):
            if fd >= 0:
                os.close(fd)
                self._fds[parity] = -1


def _write_at(fd: int, offset: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
