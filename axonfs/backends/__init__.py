"""Blob backends: where the bytes live. The index always stays local.

The default backend keeps the blobs as local files under ``<store>/blobs``
(:mod:`axonfs.backends.local`). With ``--s3-bucket`` they live in an
S3-compatible bucket (:mod:`axonfs.backends.s3`) and a read cache lives in
``<store>/cache/``; the options that choose the backend and the code that
builds it from them are the command line's (:mod:`axonfs.options`). S3
credentials come only from boto3's chain (environment variables, ``~/.aws``,
an instance role); there is deliberately no option for them.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = "cache"
"""The read cache of a remote backend: ``<store>/cache/``."""


def cache_directory(option: Path | None, store: Path) -> Path:
    """``--cache-dir``, else ``$AXONFS_CACHE_DIR`` (set by the systemd unit), else
    ``<store>/cache``."""
    if option is not None:
        return option.expanduser().absolute()
    if env := os.environ.get("AXONFS_CACHE_DIR"):
        return Path(env).expanduser().absolute()
    return store / CACHE_DIR
