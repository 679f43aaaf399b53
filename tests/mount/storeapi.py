"""Reach a (not mounted) store through the Axon API from a sync test.

Each helper takes the :class:`~helpers.daemon.MountDaemon` whose store to open, so
the store is opened with the same backend (local files or S3) as its mount.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from helpers.daemon import MountDaemon

from axonfs.axon import Axon
from axonfs.options import Settings, add_options, backend_from_settings


@asynccontextmanager
async def open_store(mounted: MountDaemon) -> AsyncIterator[Axon]:
    parser = argparse.ArgumentParser()
    add_options(parser, "serve", "backend")
    args, _ = parser.parse_known_args(list(mounted.options))
    backend = backend_from_settings(Settings.from_namespace(args), mounted.store)
    async with Axon.open(mounted.store, backend=backend) as axon:
        yield axon


def put_blobs(mounted: MountDaemon, blobs: list[bytes]) -> list[bytes]:
    """Store *blobs* through the API; return their sha256 digests."""

    async def run() -> list[bytes]:
        async with open_store(mounted) as axon:
            return [sha for _, sha in await axon.puts(blobs)]

    return trio.run(run)


def get_blob(mounted: MountDaemon, sha256: bytes) -> bytes:
    async def run() -> bytes:
        async with open_store(mounted) as axon:
            return b"".join([piece async for piece in axon.get(sha256)])

    return trio.run(run)


def has(mounted: MountDaemon, sha256: bytes) -> bool:
    async def run() -> bool:
        async with open_store(mounted) as axon:
            return await axon.has(sha256)

    return trio.run(run)
