"""Change records and checkpoints: what hosts sharing a bucket tell each other.

Every host keeps its own index; the bucket holds the blobs and, beside them,
under ``<prefix>changes/``, small immutable objects::

    changes/h/<host>/<last:016x>       a record: the host's changes first..last
    changes/c/<total:016x>-<host>      a checkpoint: every blob a host's index held,
                                       and the records of every host it had applied

A host's changes are numbered 1, 2, 3... by that host alone (no clocks), and a
record named by its last number holds a contiguous run of them, so listing
``changes/h/<host>/`` after ``<cursor:016x>`` yields exactly the records a
reader has not applied, in order, at the cost of one request when there are
none. A record is JSON::

    {"v": 1, "host": "...", "first": 7, "last": 9,
     "changes": [[7, "a", "<sha256 hex>", 5000], [8, "d", "<hex>", 5000], ...]}

A checkpoint is one JSON header line (``{"v": 1, "host": ..., "cursors":
{host: last applied}}``) followed by 40-byte rows, a sha256 and its size as a
big-endian u64. ``total`` in its name is the sum of its cursors, so the newest
checkpoint is the last name listed.

Everything here blocks (one S3 request or a few); :mod:`axonfs.hostsync`
calls it from worker threads and owns the protocol.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from axonfs.backends.s3 import CHANGES_DIR, S3Backend
from axonfs.errors import BackendError
from axonfs.hashing import Sha256

log = logging.getLogger(__name__)

VERSION = 1
RECORDS_DIR = CHANGES_DIR + "h/"
CHECKPOINTS_DIR = CHANGES_DIR + "c/"
_ROW = struct.Struct(">32sQ")


@dataclass(frozen=True, slots=True)
class Change:
    """One add or delete a host made, numbered *seq* by that host."""

    seq: int
    added: bool
    sha256: Sha256
    size: int


@dataclass(frozen=True, slots=True)
class Record:
    """A contiguous run of one host's changes."""

    host: str
    changes: tuple[Change, ...]

    @property
    def first(self) -> int:
        return self.changes[0].seq

    @property
    def last(self) -> int:
        return self.changes[-1].seq


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The blobs *host*'s index held once it had applied *cursors* (its own included)."""

    host: str
    cursors: dict[str, int]
    blobs: list[tuple[Sha256, int]]

    @property
    def total(self) -> int:
        return sum(self.cursors.values())


@dataclass(frozen=True, slots=True)
class RecordName:
    """A record's object name and what it tells without a GET."""

    name: str
    last: int
    modified: float
    """The server's last-modified time (one clock for every host: the bucket's)."""


def record_name(host: str, last: int) -> str:
    return f"{RECORDS_DIR}{host}/{last:016x}"


def encode_record(record: Record) -> bytes:
    return json.dumps(
        {
            "v": VERSION,
            "host": record.host,
            "first": record.first,
            "last": record.last,
            "changes": [
                [c.seq, "a" if c.added else "d", c.sha256.hex(), c.size] for c in record.changes
            ],
        },
        separators=(",", ":"),
    ).encode()


def decode_record(data: bytes, name: str) -> Record:
    """Parse a record; a malformed one is a :class:`BackendError` naming it."""
    try:
        body = json.loads(data)
        if body["v"] != VERSION:
            raise ValueError(f"version {body['v']}")
        changes = tuple(
            Change(int(seq), kind == "a", Sha256(bytes.fromhex(hexd)), int(size))
            for seq, kind, hexd, size in body["changes"]
        )
        if (
            not changes
            or any(len(c.sha256) != 32 for c in changes)
            or any(b.seq != a.seq + 1 for a, b in zip(changes, changes[1:], strict=False))
        ):
            raise ValueError("changes are empty, malformed or not contiguous")
        return Record(str(body["host"]), changes)
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"the change record {name} is not valid: {exc}", name=name) from None


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    header = json.dumps(
        {
            "v": VERSION,
            "host": checkpoint.host,
            "cursors": checkpoint.cursors,
            "count": len(checkpoint.blobs),
        },
        separators=(",", ":"),
    ).encode()
    return header + b"\n" + b"".join(_ROW.pack(sha, size) for sha, size in checkpoint.blobs)


def decode_checkpoint(data: bytes, name: str) -> Checkpoint:
    try:
        line, _, rows = data.partition(b"\n")
        header = json.loads(line)
        if header["v"] != VERSION or len(rows) != header["count"] * _ROW.size:
            raise ValueError("wrong version or length")
        blobs = [(Sha256(sha), size) for sha, size in _ROW.iter_unpack(rows)]
        cursors = {str(host): int(seq) for host, seq in header["cursors"].items()}
        return Checkpoint(str(header["host"]), cursors, blobs)
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise BackendError(f"the checkpoint {name} is not valid: {exc}", name=name) from None


class ChangeLog:
    """The records and checkpoints in one bucket (under the backend's prefix)."""

    def __init__(self, backend: S3Backend) -> None:
        self.backend = backend

    def write_record(self, record: Record) -> str:
        name = record_name(record.host, record.last)
        self.backend.put_object(name, encode_record(record))
        return name

    def hosts(self) -> list[str]:
        """Every host that has records in the bucket."""
        _, rolled = self.backend.list_names(RECORDS_DIR, delimiter="/")
        return [entry[len(RECORDS_DIR) :].rstrip("/") for entry in rolled]

    def records_after(self, host: str, cursor: int) -> list[RecordName]:
        """*host*'s records whose last change is after *cursor*, oldest first."""
        names, _ = self.backend.list_names(
            f"{RECORDS_DIR}{host}/", start_after=record_name(host, cursor)
        )
        return [
            RecordName(name, int(name.rsplit("/", 1)[1], 16), modified)
            for name, modified in names
            if _is_hex(name.rsplit("/", 1)[1])
        ]

    def read_record(self, name: str) -> Record:
        return decode_record(self.backend.get_object(name), name)

    def checkpoints(self) -> list[tuple[str, int, float]]:
        """Every checkpoint as ``(name, total, modified)``, oldest (smallest total) first."""
        names, _ = self.backend.list_names(CHECKPOINTS_DIR)
        found = []
        for name, modified in names:
            total, _, host = name[len(CHECKPOINTS_DIR) :].partition("-")
            if _is_hex(total) and host:
                found.append((name, int(total, 16), modified))
        return found

    def read_checkpoint(self, name: str) -> Checkpoint:
        return decode_checkpoint(self.backend.get_object(name), name)

    def write_checkpoint(self, checkpoint: Checkpoint) -> str:
        name = f"{CHECKPOINTS_DIR}{checkpoint.total:016x}-{checkpoint.host}"
        self.backend.put_object(name, encode_checkpoint(checkpoint))
        return name

    def delete(self, names: Sequence[str]) -> None:
        if names:
            self.backend.delete_names(names)


def _is_hex(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)
