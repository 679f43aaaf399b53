"""Blob backends: where the bytes live. The index always stays local.

``add_backend_arguments`` adds the backend options to a command's parser and
``backend_from_args`` builds the backend they select (None: the default local
files under ``<store>/blobs``). With ``--s3-bucket`` the blobs live in an
S3-compatible bucket (:mod:`axonfs.backends.s3`) and a read cache lives in
``<store>/cache/``. S3 credentials come only from boto3's chain (environment
variables, ``~/.aws``, an instance role); there is deliberately no option for
them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from axonfs.backends.base import BlobBackend
from axonfs.errors import BadArg
from axonfs.units import size_type

CACHE_DIR = "cache"
"""The read cache of a remote backend: ``<store>/cache/``."""


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose and configure a blob backend."""
    group = parser.add_argument_group(
        "S3 backend", "Keep blobs in an S3-compatible bucket instead of <store>/blobs. "
        "Credentials come from boto3's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, ~/.aws, an instance role).")
    group.add_argument("--s3-bucket", metavar="NAME", default=None,
                       help="the bucket (created when missing); selects the S3 backend")
    group.add_argument("--s3-endpoint", metavar="URL", default=None,
                       help="the S3 endpoint, for MinIO, Ceph, Garage... (default: AWS)")
    group.add_argument("--s3-prefix", metavar="P", default="",
                       help="prepended to every object key (default: none)")
    group.add_argument("--s3-region", metavar="R", default=None,
                       help="the region (default: boto3's configuration, else us-east-1)")
    group.add_argument("--cache-size", metavar="BYTES", type=size_type, default=None,
                       help="cap of the local read cache in <store>/cache, e.g. 20G "
                            "(default: 1G; 0 disables it)")
    group.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                       help="where the read cache lives (default: $AXONFS_CACHE_DIR, "
                            "else <store>/cache)")
    group.add_argument("--s3-part-size", metavar="BYTES", type=size_type, default=None,
                       help="multipart upload part size, at least 5M (default: 16M); "
                            "smaller blobs go up in one PUT")
    group.add_argument("--s3-connections", metavar="N", type=int, default=None,
                       help="S3 requests in flight at once (default: 16)")
    group.add_argument("--s3-sync-interval", metavar="SECONDS", type=float, default=None,
                       help="every SECONDS, apply the adds and deletes other hosts sharing "
                            "the bucket recorded in it (their change records; a few requests "
                            "when nothing changed); default: never, other hosts' blobs are "
                            "then indexed only by 'axonfs ctl recover'")


def backend_from_args(args: argparse.Namespace, store: Path) -> BlobBackend | None:
    """Build the backend *args* select for the store at *store* (None: local).

    Builds the client but sends no request: the bucket is checked (and
    created) on first use, from a worker thread.

    Raises:
        BadArg: an S3 option without ``--s3-bucket``, or an invalid value.
    """
    bucket = getattr(args, "s3_bucket", None)
    s3_options = ("s3_endpoint", "s3_region", "s3_part_size", "s3_connections", "cache_size",
                  "s3_sync_interval")
    if not bucket:
        given = [name for name in s3_options if getattr(args, name, None) is not None]
        prefix: str = getattr(args, "s3_prefix", "")
        if given or prefix:
            raise BadArg("S3 options need --s3-bucket", options=given)
        return None
    from axonfs.backends.s3 import S3Backend, S3Config

    settings: dict[str, object] = {}
    for option, name in (("s3_part_size", "part_size"), ("s3_connections", "max_connections"),
                         ("cache_size", "cache_size")):
        if getattr(args, option, None) is not None:
            settings[name] = getattr(args, option)
    try:
        config = S3Config(bucket=bucket, endpoint_url=args.s3_endpoint, prefix=args.s3_prefix,
                          region=args.s3_region, **settings)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadArg(str(exc)) from None
    return S3Backend(config, cache_dir=cache_directory(getattr(args, "cache_dir", None), store))


def cache_directory(option: Path | None, store: Path) -> Path:
    """``--cache-dir``, else ``$AXONFS_CACHE_DIR`` (set by the systemd unit), else
    ``<store>/cache``."""
    if option is not None:
        return option.expanduser().absolute()
    if env := os.environ.get("AXONFS_CACHE_DIR"):
        return Path(env).expanduser().absolute()
    return store / CACHE_DIR
