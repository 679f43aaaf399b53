"""The sha256 of test data, in the forms the tests compare against."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha_hex(data: bytes) -> str:
    """The sha256 of *data* as 64 hex digits (file names under ``/by-sha256``)."""
    return hashlib.sha256(data).hexdigest()


def sha_digest(data: bytes) -> bytes:
    """The sha256 of *data* as its 32 raw bytes (what the Axon API takes)."""
    return hashlib.sha256(data).digest()


def file_sha(path: Path | str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file read sequentially (through a mount, usually), as hex."""
    hasher = hashlib.sha256()
    with open(path, "rb", buffering=0) as file:
        while piece := file.read(chunk):
            hasher.update(piece)
    return hasher.hexdigest()
