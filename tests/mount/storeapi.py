"""Reach a (not mounted) store through the Axon API from a sync test."""

from __future__ import annotations

from pathlib import Path

import trio

from axonfs.axon import Axon


def put_blobs(store: Path, blobs: list[bytes]) -> list[bytes]:
    """Store *blobs* through the API; return their sha256 digests."""

    async def run() -> list[bytes]:
        async with Axon.open(store) as axon:
            return [sha for _, sha in await axon.puts(blobs)]

    return trio.run(run)


def get_blob(store: Path, sha256: bytes) -> bytes:
    async def run() -> bytes:
        async with Axon.open(store) as axon:
            return b"".join([piece async for piece in axon.get(sha256)])

    return trio.run(run)


def metrics(store: Path) -> dict[str, int]:
    async def run() -> dict[str, int]:
        async with Axon.open(store) as axon:
            return await axon.metrics()

    return trio.run(run)


def has(store: Path, sha256: bytes) -> bool:
    async def run() -> bool:
        async with Axon.open(store) as axon:
            return await axon.has(sha256)

    return trio.run(run)
