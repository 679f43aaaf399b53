"""Fixtures for the S3 backend tests: a moto server on loopback, buckets, backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.s3server import (  # noqa: F401 - moto and moto_server are fixtures
    MotoServer,
    moto,
    moto_server,
    new_bucket_name,
    test_config,
)

from axonfs.backends.s3 import S3Backend

MakeS3 = Callable[..., S3Backend]


@pytest.fixture
def bucket() -> str:
    """A bucket name no other test uses (the backend creates it)."""
    return new_bucket_name()


@pytest.fixture
def raw_s3(moto: MotoServer) -> Any:  # noqa: F811 - the imported fixture
    """A plain boto3 client on the moto server, to inspect or tamper with buckets."""
    return moto.client()


@pytest.fixture
def make_s3(moto_server: str, bucket: str,  # noqa: F811 - the imported fixture
            tmp_path: Path) -> Iterator[MakeS3]:
    """``make_s3(**config overrides)`` builds a backend on this test's bucket.

    Keyword ``endpoint`` redirects it (e.g. through a proxy) and ``cache_dir``
    moves its read cache; every backend built is closed at the end.
    """
    built: list[S3Backend] = []

    def make(endpoint: str | None = None, cache_dir: Path | None = None,
             **overrides: Any) -> S3Backend:
        settings: dict[str, Any] = {"bucket": bucket}
        settings.update(overrides)
        config = test_config(endpoint or moto_server, settings.pop("bucket"), **settings)
        backend = S3Backend(config, cache_dir=cache_dir or tmp_path / "cache")
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()
