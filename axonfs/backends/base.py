"""The blob backend interface: where a blob's bytes live.

A backend is a small synchronous object; the :class:`~axonfs.axon.Axon` calls
it from worker threads (``trio.to_thread``), never on the trio thread, except
:meth:`BlobBackend.open` handles that read from the page cache. Backends know
nothing of the index: they store, read, list and delete byte strings named by
sha256.

Durability contract: after :meth:`BlobBackend.put_file` and then
:meth:`BlobBackend.flush` return, the blob survives a crash or power loss.
Callers commit the index row only after ``flush()``.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from axonfs.errors import AxonError
from axonfs.hashing import Sha256


@dataclass(frozen=True, slots=True)
class Listing:
    """One blob found by :meth:`BlobBackend.list`."""

    sha256: Sha256
    size: int


class BlobReader(abc.ABC):
    """An open blob: random-access reads until :meth:`close`."""

    size: int

    @abc.abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """Return up to *size* bytes at *offset* (short only at the end)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the reader holds."""

    def read_cached(self, offset: int, size: int) -> bytes | None:
        """Read without waiting for a disk: the bytes if all of them are in
        memory already, else None (then :meth:`read` them from a thread)."""
        return None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlobStream(abc.ABC):
    """One sequential read of a range of a remote blob (see :meth:`BlobBackend.stream`)."""

    @abc.abstractmethod
    def next_pieces(self) -> list[bytes]:
        """The next pieces, in order: those that arrived, waiting for one if none
        has; an empty list at the end. Blocks: call it from a worker thread."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop reading (the rest of the range may still be in flight, then
        dropped); may block briefly (call it from a worker thread)."""


class BytesReader(BlobReader):
    """A blob held in memory (a small blob read from the index journal)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def read_cached(self, offset: int, size: int) -> bytes:
        return self.read(offset, size)

    def close(self) -> None:
        pass


class StagedBlobs(abc.ABC):
    """Files a backend wrote for blobs, not yet in place nor durable
    (:meth:`BlobBackend.stage`)."""

    shas: list[Sha256]
    """The blobs that got a file (those the backend held already did not)."""

    @abc.abstractmethod
    def place(self, keep: Collection[Sha256], among: Collection[Sha256] | None = None) -> None:
        """Settle the files of *among* (default: all not settled yet): put
        those of *keep* in place, unsynced, as ``put_file(sync=False)``
        would, and remove the others."""


class BlobBackend(abc.ABC):
    """Stores blobs by sha256. Methods may block; call them from threads."""

    name: str = "backend"

    reads_are_local: bool = False
    """True if reads hit a local disk (page cache): small ones may then run
    inline on the trio thread, and recover verifies blobs by default."""

    max_connections: int = 16
    """Calls worth having in flight at once when reads are not local (a remote
    backend's connection pool): the width of the Axon's limiter of backend calls."""

    deferred_sync: bool = False
    """True if :meth:`put_file` can skip syncing (``sync=False``) and
    :meth:`sync_blobs` make such blobs durable later, in a batch. The store
    then keeps small blobs' bytes in the index until that happens."""

    durable_off_machine: bool = False
    """True if a blob is durable off this machine once :meth:`put_file`
    returns (an object store). A power cut of this machine can then lose
    index rows but never bytes, and ``recover`` finds the bytes again; with
    a sync interval the store defers the index commits of such adds too."""

    @abc.abstractmethod
    def put_file(self, sha256: Sha256, path: Path, sync: bool = True) -> None:
        """Take the spool file at *path* (whose sha256 is *sha256*) as the blob.

        The backend consumes *path*: it is moved or uploaded and then removed.
        With ``sync=False`` (only if :attr:`deferred_sync`), the blob need not
        be durable until :meth:`sync_blobs` names it.
        """

    def put_files(self, items: list[tuple[Sha256, Path]]) -> list[AxonError | None]:
        """:meth:`put_file` for several spools (a backend may send them at once).

        Returns a slot per item: None when stored, else its error (the spool
        is then still the caller's to remove).
        """
        errors: list[AxonError | None] = []
        for sha256, path in items:
            try:
                self.put_file(sha256, path)
            except AxonError as exc:
                errors.append(exc)
            else:
                errors.append(None)
        return errors

    def stage(self, blobs: Sequence[tuple[Sha256, bytes]], tmp_prefix: str) -> StagedBlobs:
        """Write files for blobs the store holds in memory (only if
        :attr:`deferred_sync`), at names starting with *tmp_prefix*; the
        store then places them (:meth:`StagedBlobs.place`) and syncs them
        (:meth:`sync_blobs`)."""
        raise NotImplementedError(f"the {self.name} backend does not write blobs in batches")

    def sync_blobs(self, sha256s: list[Sha256]) -> None:  # noqa: B027 - optional hook
        """Make blobs put with ``sync=False`` durable."""

    def stored(self, sha256s: Sequence[Sha256]) -> set[Sha256]:
        """Which of these blobs the backend holds."""
        return {sha for sha in sha256s if self.exists(sha)}

    def prepare(self, paths: list[Path]) -> None:  # noqa: B027 - optional hook
        """Get ready to take these spool files (a hint; the local backend
        starts their writeback so one journal commit covers the batch)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every blob put (and every delete) since the last flush durable."""

    @abc.abstractmethod
    def open(self, sha256: Sha256) -> BlobReader:
        """Open a blob for reading; raise BlobMissing if it is absent."""

    def stream(self, sha256: Sha256, size: int, start: int, end: int) -> BlobStream | None:
        """Read ``[start, end)`` of a blob of *size* bytes as one sequential
        stream, or None if :meth:`open` serves a whole read as well (local
        files, a range whose start is cached)."""
        return None

    @abc.abstractmethod
    def delete(self, sha256: Sha256) -> bool:
        """Remove a blob; return False if it was not there."""

    @abc.abstractmethod
    def exists(self, sha256: Sha256) -> bool:
        """True if the backend holds the blob."""

    @abc.abstractmethod
    def list(self) -> Iterator[Listing]:
        """Yield every blob the backend holds, in no particular order.

        Names that are not a sha256 are skipped; :attr:`ignored` counts them.
        """

    ignored: int = 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles."""

    def usage(self) -> tuple[int, int] | None:
        """Return (total bytes, free bytes) of the medium, if it has a size."""
        return None

    def path_of(self, sha256: Sha256) -> Path | None:
        """The file that holds a blob, where blobs are local files (None otherwise)."""
        return None

    def stats(self) -> object | None:
        """The backend's request counters, as a dataclass (None: it keeps none)."""
        return None
