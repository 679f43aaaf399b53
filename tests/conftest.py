"""Shared fixtures: a fresh store directory and an open Axon over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from axonfs.axon import Axon


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def axon(store_dir: Path) -> AsyncIterator[Axon]:
    async with Axon.open(store_dir) as opened:
        yield opened
