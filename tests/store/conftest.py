"""Fixtures for the storage-core tests, and the blob-backend conformance matrix.

Every test under ``tests/store`` that takes the ``axon``, ``backend``,
``make_backend`` or ``open_axon`` fixture runs once per entry of
:data:`BACKENDS`, so the whole Axon-level suite (``test_axon_*.py``) and the
backend-level suite (``test_backend.py``) double as a conformance suite for
every blob backend. Tests that poke at blob *files* (fsck, crash, memory) use
the default local store directly and are not parametrized.

Adding a backend
----------------
1. Write a factory with the signature of :data:`BackendFactory`::

       def s3_backend(request: pytest.FixtureRequest, store_dir: Path) -> MakeBackend:
           endpoint = request.getfixturevalue("moto_server")   # a session fixture
           bucket = f"axonfs-test-{uuid.uuid4().hex}"          # storage for this one test
           return lambda: S3Backend(bucket=bucket, endpoint_url=endpoint)

   It is called once per test and sets up fresh, empty storage for that test;
   it returns a callable that builds a *new* backend instance onto that same
   storage each time it is called (tests close a store and reopen it, and
   :meth:`Store.close` closes its backend). ``close()`` must be idempotent.
   Servers and clean-up belong in ordinary fixtures, pulled in through
   ``request.getfixturevalue`` (or ``request.addfinalizer``).
2. Append it: ``BACKENDS["s3"] = s3_backend``. The test ids become
   ``test_x[local]`` and ``test_x[s3]``; ``pytest -k s3`` runs one backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from axonfs.axon import Axon
from axonfs.backends.base import BlobBackend
from axonfs.backends.local import LocalBackend
from axonfs.store.store import Limits
from store.storetools import MakeBackend, OpenAxon

BackendFactory = Callable[[pytest.FixtureRequest, Path], MakeBackend]
"""Sets up one test's (empty) storage; returns how to open backends onto it."""


def local_backend(request: pytest.FixtureRequest, store_dir: Path) -> MakeBackend:
    """Plain files under ``<store>/blobs``, where the store puts them by default."""
    del request
    return lambda: LocalBackend(store_dir / "blobs")


BACKENDS: dict[str, BackendFactory] = {
    "local": local_backend,
}
"""Every backend the conformance suite runs against, by test id."""

# --- S3 backend: a moto server on loopback, a fresh bucket per test. ---
from helpers.s3server import moto, moto_server, s3_backend_factory  # noqa: E402,F401,I001

BACKENDS["s3"] = s3_backend_factory
# --- end S3 ---


@pytest.fixture(params=list(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(request: pytest.FixtureRequest, backend_name: str, store_dir: Path) -> MakeBackend:
    """A callable giving fresh instances of this test's backend, on one storage."""
    store_dir.mkdir(parents=True, exist_ok=True)
    return BACKENDS[backend_name](request, store_dir)


@pytest.fixture
def backend(make_backend: MakeBackend) -> Iterator[BlobBackend]:
    """One instance of the backend under test, for backend-level tests."""
    instance = make_backend()
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def open_axon(store_dir: Path, make_backend: MakeBackend) -> OpenAxon:
    """``open_axon(limits=...)`` opens the test's store over the backend under test.

    Each call builds a new backend instance, so a test can close the store and
    open it again (as a restarted daemon would).
    """

    def opener(limits: Limits | None = None) -> AbstractAsyncContextManager[Axon]:
        return Axon.open(store_dir, backend=make_backend(), limits=limits or Limits())

    return opener


@pytest.fixture
async def axon(open_axon: OpenAxon) -> AsyncIterator[Axon]:
    """An open Axon over the backend under test (overrides tests/conftest.py's)."""
    async with open_axon() as opened:
        yield opened
