"""Blob backends: where the bytes live. The index always stays local.

``add_backend_arguments`` adds the backend options to a command's parser and
``backend_from_args`` builds the backend they select (None: the default local
files under ``<store>/blobs``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from axonfs.backends.base import BlobBackend


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose and configure a blob backend."""
    del parser  # only the local backend so far; S3 options come with the S3 backend


def backend_from_args(args: argparse.Namespace, store: Path) -> BlobBackend | None:
    """Build the backend *args* select for the store at *store* (None: local)."""
    del args, store
    return None
