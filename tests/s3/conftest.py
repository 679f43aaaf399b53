"""Fixtures for the S3 backend tests: S3 servers on loopback, buckets, backends.

Every test that uses ``make_s3``, ``raw_s3`` or ``s3_server`` runs once per
server: moto, Ceph RGW over HTTP and RGW over HTTPS (see
:mod:`helpers.s3server`), unless it is marked ``s3_servers(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.s3server import (  # noqa: F401 - fixtures and the parametrising hook
    S3Server,
    _rgw_servers,
    moto,
    moto_server,
    new_bucket_name,
    pytest_generate_tests,
    rgw_cluster,
    s3_server,
    test_config,
)

from axonfs.backends.s3 import S3Backend

MakeS3 = Callable[..., S3Backend]


@pytest.fixture
def bucket() -> str:
    """A bucket name no other test uses (the backend creates it)."""
    return new_bucket_name()


@pytest.fixture
def raw_s3(s3_server: S3Server) -> Any:  # noqa: F811 - the imported fixture
    """A plain boto3 client on the test's server, to inspect or tamper with buckets."""
    return s3_server.client()


@pytest.fixture
def make_s3(
    s3_server: S3Server,  # noqa: F811 - the imported fixture
    bucket: str,
    tmp_path: Path,
) -> Iterator[MakeS3]:
    """``make_s3(**config overrides)`` builds a backend on this test's bucket.

    Keyword ``endpoint`` redirects it (e.g. through a proxy) and ``cache_dir``
    moves its read cache; every backend built is closed at the end.
    """
    built: list[S3Backend] = []

    def make(
        endpoint: str | None = None, cache_dir: Path | None = None, **overrides: Any
    ) -> S3Backend:
        settings: dict[str, Any] = {"bucket": bucket}
        settings.update(overrides)
        config = test_config(endpoint or s3_server.endpoint, settings.pop("bucket"), **settings)
        backend = S3Backend(config, cache_dir=cache_dir or tmp_path / "cache")
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()
