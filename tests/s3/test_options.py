"""The S3 command-line options and the backend they build."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from axonfs.backends import add_backend_arguments, backend_from_args
from axonfs.backends.s3 import S3Backend
from axonfs.errors import BadArg


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    return parser.parse_args(argv)


def test_no_bucket_means_the_local_backend(tmp_path: Path) -> None:
    assert backend_from_args(parse(), tmp_path) is None


def test_s3_options_build_an_s3_backend(tmp_path: Path, moto_server: str) -> None:
    args = parse("--s3-bucket", "my-bucket", "--s3-endpoint", moto_server, "--s3-prefix",
                 "axon/", "--s3-region", "eu-west-1", "--cache-size", "2G",
                 "--s3-part-size", "32M", "--s3-connections", "8")
    backend = backend_from_args(args, tmp_path)
    assert isinstance(backend, S3Backend)
    try:
        config = backend.config
        assert (config.bucket, config.endpoint_url, config.prefix, config.region) == (
            "my-bucket", moto_server, "axon/", "eu-west-1")
        assert (config.cache_size, config.part_size, config.max_connections) == (
            2 << 30, 32 << 20, 8)
        assert backend.cache.root.parent == tmp_path / "cache"
        assert backend.client.meta.config.max_pool_connections == 8
        assert backend.stats().total_requests == 0  # nothing sent until first use
    finally:
        backend.close()


def test_bucket_in_another_region_is_created(tmp_path: Path, moto_server: str,
                                             raw_s3: object) -> None:
    args = parse("--s3-bucket", "axonfs-eu-bucket", "--s3-endpoint", moto_server,
                 "--s3-region", "eu-west-1")
    backend = backend_from_args(args, tmp_path)
    assert isinstance(backend, S3Backend)
    try:
        assert list(backend.list()) == []
        location = raw_s3.get_bucket_location(Bucket="axonfs-eu-bucket")  # type: ignore[attr-defined]
        assert location["LocationConstraint"] == "eu-west-1"
    finally:
        backend.close()


def test_s3_options_without_a_bucket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadArg):
        backend_from_args(parse("--s3-endpoint", "http://127.0.0.1:1"), tmp_path)


def test_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse("--s3-bucket", "b", "--cache-size", "lots")
    with pytest.raises(BadArg):
        backend_from_args(parse("--s3-bucket", "b", "--s3-part-size", "1M"), tmp_path)


def test_no_credentials_option() -> None:
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    options = {option for action in parser._actions for option in action.option_strings}
    assert not [option for option in options if "key" in option or "secret" in option]
