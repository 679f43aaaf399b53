"""A local, size-capped LRU cache of blob blocks for remote backends.

A remote blob is read in aligned blocks (``block_size`` bytes, the last one
shorter). Each fetched block is kept as one file::

    <cache dir>/<block_size>/<hex[:2]>/<sha256hex>.<blob size>.<block index>

Blobs are immutable, so a cached block never goes stale and needs no
validation beyond its length. The blob's size in the file name lets a reader
open a blob whose blocks are cached without asking the server (so cached
blobs stay readable while the server is down, even after a restart); the block
size in the directory name keeps blocks of an earlier configuration apart.

The cache holds at most ``capacity`` bytes of blocks: putting a block evicts
the least recently used ones. Recency lives in memory; on start-up the
directory is scanned and ordered by modification time (the best guess left
after a restart). Files are written to a temporary name and renamed, so a
crash leaves no partial block under a real name; leftovers are removed by the
scan.

Concurrency: thread-safe. One lock guards the bookkeeping; file reads and
writes run outside it. A reader that loses a race with eviction (the file is
gone between lookup and open) sees a miss.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BlockKey = tuple[str, int]
"""(sha256 hex, block index)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of the cache's counters."""

    hits: int
    misses: int
    evictions: int
    blocks: int
    bytes: int
    capacity: int


class BlockCache:
    """Blocks of immutable blobs on local disk, least recently used evicted."""

    def __init__(self, directory: Path, capacity: int, block_size: int) -> None:
        self.root = directory / str(block_size)
        self.capacity = max(0, capacity)
        self.block_size = block_size
        self._lock = threading.Lock()
        self._entries: OrderedDict[BlockKey, int] = OrderedDict()  # key -> bytes, LRU first
        self._sizes: dict[str, tuple[int, int]] = {}  # hex -> (blob size, cached blocks)
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._loaded = False

    # -- lookups -------------------------------------------------------------------

    def get(self, sha_hex: str, index: int, blob_size: int) -> bytes | None:
        """Return the cached block, or None (and count a miss)."""
        self._load()
        key = (sha_hex, index)
        with self._lock:
            present = key in self._entries
            if present:
                self._entries.move_to_end(key)
        data = self._read(key, blob_size) if present else None
        with self._lock:
            if data is None:
                self._misses += 1
            else:
                self._hits += 1
        return data

    def contains(self, sha_hex: str, index: int) -> bool:
        """True if the block is cached (no file access, no recency change)."""
        self._load()
        with self._lock:
            return (sha_hex, index) in self._entries

    def known_size(self, sha_hex: str) -> int | None:
        """The size of a blob of which at least one block is cached."""
        self._load()
        with self._lock:
            known = self._sizes.get(sha_hex)
        return None if known is None else known[0]

    # -- changes -------------------------------------------------------------------

    def put(self, sha_hex: str, index: int, blob_size: int, data: bytes) -> None:
        """Keep *data* as block *index* of the blob, evicting older blocks to fit."""
        if not self.capacity or len(data) > self.capacity:
            return
        self._load()
        key = (sha_hex, index)
        path = self._path(key, blob_size)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("read cache: cannot store a block of %s: %s", sha_hex, exc)
            return
        with self._lock:
            if key not in self._entries:
                self._account(key, blob_size, len(data))
            else:
                self._entries.move_to_end(key)
            victims = self._evict_locked()
        self._unlink(victims)

    def discard(self, sha_hex: str) -> None:
        """Forget every cached block of a blob (it was deleted)."""
        self._load()
        with self._lock:
            known = self._sizes.pop(sha_hex, None)
            keys = [key for key in self._entries if key[0] == sha_hex] if known else []
            victims = []
            for key in keys:
                self._bytes -= self._entries.pop(key)
                victims.append((key, known[0] if known else 0))
        self._unlink(victims)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                len(self._entries),
                self._bytes,
                self.capacity,
            )

    # -- internals -----------------------------------------------------------------

    def _path(self, key: BlockKey, blob_size: int) -> Path:
        sha_hex, index = key
        return self.root / sha_hex[:2] / f"{sha_hex}.{blob_size}.{index}"

    def _read(self, key: BlockKey, blob_size: int) -> bytes | None:
        expected = min(self.block_size, blob_size - key[1] * self.block_size)
        try:
            with open(self._path(key, blob_size), "rb") as file:
                data = file.read(expected + 1)
        except FileNotFoundError:
            self._forget(key)
            return None
        except OSError as exc:
            log.warning("read cache: cannot read a block of %s: %s", key[0], exc)
            return None
        if len(data) != expected:
            log.warning(
                "read cache: block %d of %s has %d bytes, not %d; dropped",
                key[1],
                key[0],
                len(data),
                expected,
            )
            self._forget(key)
            self._unlink([(key, blob_size)])
            return None
        return data

    def _account(self, key: BlockKey, blob_size: int, size: int) -> None:
        self._entries[key] = size
        self._bytes += size
        _, blocks = self._sizes.get(key[0], (blob_size, 0))
        self._sizes[key[0]] = (blob_size, blocks + 1)

    def _forget(self, key: BlockKey) -> None:
        with self._lock:
            self._forget_locked(key)

    def _forget_locked(self, key: BlockKey) -> None:
        size = self._entries.pop(key, None)
        if size is None:
            return
        self._bytes -= size
        blob_size, blocks = self._sizes[key[0]]
        if blocks <= 1:
            del self._sizes[key[0]]
        else:
            self._sizes[key[0]] = (blob_size, blocks - 1)

    def _evict_locked(self) -> list[tuple[BlockKey, int]]:
        victims: list[tuple[BlockKey, int]] = []
        while self._bytes > self.capacity and self._entries:
            key = next(iter(self._entries))
            blob_size = self._sizes[key[0]][0]
            self._forget_locked(key)
            self._evictions += 1
            victims.append((key, blob_size))
        return victims

    def _unlink(self, victims: list[tuple[BlockKey, int]]) -> None:
        for key, blob_size in victims:
            try:
                os.unlink(self._path(key, blob_size))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("read cache: cannot remove a block of %s: %s", key[0], exc)

    def _load(self) -> None:
        """Scan the directory once, on first use (it does disk I/O)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            found = self._scan()
            found.sort()
            for _, key, blob_size, size in found:
                self._account(key, blob_size, size)
            victims = self._evict_locked()
            self._loaded = True
        self._unlink(victims)
        if found:
            log.info(
                "read cache %s: %d blocks, %d bytes", self.root, len(self._entries), self._bytes
            )

    def _scan(self) -> list[tuple[float, BlockKey, int, int]]:
        found: list[tuple[float, BlockKey, int, int]] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tops = list(os.scandir(self.root))
        except OSError as exc:
            log.warning("read cache: cannot use %s: %s", self.root, exc)
            return found
        for top in tops:
            if not top.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(top.path):
                parsed = _parse_name(entry.name)
                if parsed is None:
                    os.unlink(entry.path)  # a crashed write's temp file, or a stranger
                    continue
                sha_hex, blob_size, index = parsed
                st = entry.stat(follow_symlinks=False)
                found.append((st.st_mtime, (sha_hex, index), blob_size, st.st_size))
        return found


def _parse_name(name: str) -> tuple[str, int, int] | None:
    """Split ``<hex>.<blob size>.<index>``; None for anything else."""
    parts = name.split(".")
    if len(parts) != 3 or len(parts[0]) != 64 or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return parts[0], int(parts[1]), int(parts[2])
