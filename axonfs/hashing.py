"""SHA-256 identities and the hashset (md5, sha1, sha256, sha512) of a blob."""

from __future__ import annotations

import hashlib
from typing import NewType

from axonfs.errors import BadArg

Sha256 = NewType("Sha256", bytes)
"""A blob's identity: the 32 raw bytes of its SHA-256 digest."""

EMPTY_SHA256 = Sha256(hashlib.sha256(b"").digest())
HASHSET_NAMES = ("md5", "sha1", "sha256", "sha512")
HEX_DIGITS = frozenset("0123456789abcdef")


def is_sha256_hex(text: str) -> bool:
    """True if *text* is exactly 64 lowercase hex digits (the canonical name)."""
    return len(text) == 64 and HEX_DIGITS.issuperset(text)


def parse_sha256(text: str) -> Sha256:
    """Parse a hex digest (either case) into a :data:`Sha256`, or raise BadArg."""
    lowered = text.strip().lower()
    if not is_sha256_hex(lowered):
        raise BadArg(f"Hash is not a SHA-256: {text!r}", value=text)
    return Sha256(bytes.fromhex(lowered))


def require_sha256(value: object) -> Sha256:
    """Accept raw 32-byte digests (the Axon API's form) and reject anything else."""
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 32:
        return Sha256(bytes(value))
    raise BadArg("sha256 must be 32 raw bytes", value=repr(value)[:80])


class HashSet:
    """All four digests of one stream, updated in a single pass."""

    def __init__(self) -> None:
        self._hashes = [hashlib.new(name) for name in HASHSET_NAMES]

    def update(self, data: bytes | memoryview) -> None:
        for hasher in self._hashes:
            hasher.update(data)

    def digests(self) -> dict[str, bytes]:
        return {name: h.digest() for name, h in zip(HASHSET_NAMES, self._hashes, strict=True)}

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in zip(HASHSET_NAMES, self._hashes, strict=True)}
