"""The S3 command-line options and the backend they build."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import pytest
from helpers.s3server import S3Server, new_bucket_name

from axonfs.backends.s3 import S3Backend
from axonfs.errors import BackendError, BadArg
from axonfs.hashing import Sha256
from axonfs.options import Settings, add_options, backend_from_settings


def parse(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_options(parser, "serve", "backend")
    return Settings.from_namespace(parser.parse_args(argv))


def test_no_bucket_means_the_local_backend(tmp_path: Path) -> None:
    assert backend_from_settings(parse(), tmp_path) is None


def test_s3_options_build_an_s3_backend(tmp_path: Path, moto_server: str) -> None:
    args = parse(
        "--s3-bucket",
        "my-bucket",
        "--s3-endpoint",
        moto_server,
        "--s3-prefix",
        "axon/",
        "--s3-region",
        "eu-west-1",
        "--cache-size",
        "2G",
        "--s3-part-size",
        "32M",
        "--s3-connections",
        "8",
    )
    backend = backend_from_settings(args, tmp_path)
    assert isinstance(backend, S3Backend)
    try:
        config = backend.config
        assert (config.bucket, config.endpoint_url, config.prefix, config.region) == (
            "my-bucket",
            moto_server,
            "axon/",
            "eu-west-1",
        )
        assert (config.cache_size, config.part_size, config.max_connections) == (
            2 << 30,
            32 << 20,
            8,
        )
        assert backend.cache.root.parent == tmp_path / "cache"
        assert backend.client.meta.config.max_pool_connections == 8
        assert backend.stats().total_requests == 0  # nothing sent until first use
    finally:
        backend.close()


def test_bucket_in_another_region_is_created(
    tmp_path: Path, s3_server: S3Server, raw_s3: Any
) -> None:
    """AWS and moto create the bucket in the region asked for. RGW knows only its
    zonegroup (``default`` here): the creation is refused by a one-line error
    naming S3's code, and a bucket made beforehand works with any region."""
    bucket = new_bucket_name()
    args = parse(
        "--s3-bucket", bucket, "--s3-endpoint", s3_server.endpoint, "--s3-region", "eu-west-1"
    )
    backend = backend_from_settings(args, tmp_path)
    assert isinstance(backend, S3Backend)
    try:
        if s3_server.name == "moto":
            assert list(backend.list()) == []
            location = raw_s3.get_bucket_location(Bucket=bucket)
            assert location["LocationConstraint"] == "eu-west-1"
            return
        with pytest.raises(BackendError) as refused:
            list(backend.list())
        assert refused.value.fields["code_s3"] == "InvalidLocationConstraint"
        assert "zonegroup" in str(refused.value)
    finally:
        backend.close()
    raw_s3.create_bucket(Bucket=bucket)
    backend = backend_from_settings(args, tmp_path)
    assert isinstance(backend, S3Backend)
    try:
        spool = tmp_path / "spool"
        spool.write_bytes(b"signed for eu-west-1")
        backend.put_file(Sha256(hashlib.sha256(b"signed for eu-west-1").digest()), spool)
        assert [item.size for item in backend.list()] == [20]
    finally:
        backend.close()


def test_s3_options_without_a_bucket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadArg):
        backend_from_settings(parse("--s3-endpoint", "http://127.0.0.1:1"), tmp_path)


def test_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse("--s3-bucket", "b", "--cache-size", "lots")
    with pytest.raises(BadArg):
        backend_from_settings(parse("--s3-bucket", "b", "--s3-part-size", "1M"), tmp_path)


def test_no_credentials_option() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, "serve", "backend")
    options = {option for action in parser._actions for option in action.option_strings}
    assert not [option for option in options if "key" in option or "secret" in option]
