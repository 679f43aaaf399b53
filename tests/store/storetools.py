"""Small helpers shared by the storage-core tests (no fixtures here)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from pathlib import Path
from typing import TypeVar

from helpers.streams import closable

from axonfs.axon import Axon
from axonfs.backends.base import BlobBackend
from axonfs.backends.local import LocalBackend
from axonfs.hashing import Sha256

T = TypeVar("T")

MakeBackend = Callable[[], BlobBackend]
"""Builds a new backend instance onto one test's storage (see conftest.py)."""
OpenAxon = Callable[..., AbstractAsyncContextManager[Axon]]
"""The ``open_axon`` fixture: ``open_axon(limits=...)`` opens the test's store."""

EMPTY_SHA256 = hashlib.sha256(b"").digest()
EMPTY_HASHSET = {
    "md5": "d41d8cd98f00b204e9800998ecf8427e",
    "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha512": "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
}
MiB = 1 << 20

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]


async def collect(iterator: AsyncIterator[T]) -> list[T]:
    async with aclosing(closable(iterator)) as rows:
        return [row async for row in rows]


async def pieces(
    axon: Axon, sha: bytes, offs: int | None = None, size: int | None = None
) -> list[bytes]:
    return await collect(axon.get(sha, offs, size))


async def read_all(axon: Axon, sha: bytes) -> bytes:
    return b"".join(await pieces(axon, sha))


def blob_file(store_dir: Path, sha: bytes) -> Path:
    """Where the default local backend of the store at *store_dir* keeps *sha*."""
    backend = LocalBackend(store_dir / "blobs")
    try:
        return backend.path_of(Sha256(sha))
    finally:
        backend.close()


def spool_files(store_dir: Path) -> list[str]:
    tmp = store_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
