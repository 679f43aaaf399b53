"""The BlobBackend contract, run against every backend in conftest.BACKENDS.

These call the synchronous backend API directly (as the store does from its
worker threads); the Axon-level suites check the same backends end to end.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from helpers.hashes import sha_digest

from axonfs.backends.base import BlobBackend, Listing
from axonfs.backends.local import LocalBackend
from axonfs.errors import BlobMissing
from axonfs.hashing import Sha256
from store.storetools import EMPTY_SHA256, MakeBackend, MiB


def put(backend: BlobBackend, spool_dir: Path, data: bytes) -> Sha256:
    """Store *data* the way the store does: a spool file handed over, then flush()."""
    spool_dir.mkdir(exist_ok=True)
    path = spool_dir / f"spool-{os.urandom(6).hex()}"
    path.write_bytes(data)
    sha = Sha256(sha_digest(data))
    backend.put_file(sha, path)
    backend.flush()
    return sha


def read(backend: BlobBackend, sha: Sha256) -> bytes:
    with backend.open(sha) as reader:
        out = bytearray()
        while piece := reader.read(len(out), MiB):
            out += piece
        return bytes(out)


def test_put_file_consumes_the_spool(backend: BlobBackend, tmp_path: Path) -> None:
    path = tmp_path / "spool-x"
    path.write_bytes(b"consumed")
    backend.put_file(Sha256(sha_digest(b"consumed")), path)
    backend.flush()
    assert not path.exists()
    assert backend.exists(Sha256(sha_digest(b"consumed")))


def test_read_ranges(backend: BlobBackend, tmp_path: Path) -> None:
    data = random.Random(8).randbytes(3 * MiB + 11)
    sha = put(backend, tmp_path, data)
    with backend.open(sha) as reader:
        assert reader.size == len(data)
        for offset, size in [
            (0, 1),
            (0, len(data)),
            (MiB - 1, 2),
            (2 * MiB, MiB + 11),
            (len(data) - 1, 1),
            (12345, 4096),
        ]:
            assert reader.read(offset, size) == data[offset : offset + size]
        assert reader.read(len(data) - 5, 100) == data[-5:]  # short only at the end
        assert reader.read(len(data), 10) == b""
        assert reader.read(len(data) + 100, 10) == b""
    assert read(backend, sha) == data


def test_empty_blob(backend: BlobBackend, tmp_path: Path) -> None:
    sha = put(backend, tmp_path, b"")
    assert sha == EMPTY_SHA256
    assert backend.exists(sha)
    with backend.open(sha) as reader:
        assert reader.size == 0
        assert reader.read(0, 10) == b""
    assert Listing(sha, 0) in list(backend.list())


def test_missing_blob(backend: BlobBackend) -> None:
    sha = Sha256(sha_digest(b"absent"))
    assert not backend.exists(sha)
    with pytest.raises(BlobMissing):
        backend.open(sha)
    assert backend.delete(sha) is False


def test_delete(backend: BlobBackend, tmp_path: Path) -> None:
    keep = put(backend, tmp_path, b"keep")
    drop = put(backend, tmp_path, b"drop")
    assert backend.delete(drop) is True
    assert not backend.exists(drop)
    with pytest.raises(BlobMissing):
        backend.open(drop)
    assert backend.delete(drop) is False
    assert [item.sha256 for item in backend.list()] == [keep]


def test_put_again_replaces_nothing_visible(backend: BlobBackend, tmp_path: Path) -> None:
    sha = put(backend, tmp_path, b"twice")
    assert put(backend, tmp_path, b"twice") == sha
    assert read(backend, sha) == b"twice"
    assert [item.sha256 for item in backend.list()] == [sha]


def test_list_names_and_sizes(backend: BlobBackend, tmp_path: Path) -> None:
    rng = random.Random(9)
    blobs = [rng.randbytes(rng.randrange(0, 70_000)) for _ in range(40)]
    for data in blobs:
        put(backend, tmp_path, data)
    listed = sorted(backend.list(), key=lambda item: item.sha256)
    expected = sorted(
        (Listing(Sha256(sha_digest(b)), len(b)) for b in set(blobs)), key=lambda item: item.sha256
    )
    assert listed == expected
    assert backend.ignored == 0


def test_blobs_outlive_the_instance(make_backend: MakeBackend, tmp_path: Path) -> None:
    first = make_backend()
    sha = put(first, tmp_path, b"durable")
    first.close()
    first.close()  # close() is idempotent
    second = make_backend()
    try:
        assert read(second, sha) == b"durable"
        assert [item.sha256 for item in second.list()] == [sha]
    finally:
        second.close()


def test_local_layout_and_ignored_names(tmp_path: Path) -> None:
    """Local only: read-only files named by hex under the root; strays are skipped and counted."""
    backend = LocalBackend(tmp_path / "blobs")
    try:
        sha = put(backend, tmp_path / "spool", b"laid out")
        path = backend.path_of(sha)
        assert path.name == sha.hex()
        assert path.is_relative_to(tmp_path / "blobs")
        assert path.read_bytes() == b"laid out"
        assert path.stat().st_mode & 0o222 == 0
        (path.parent / "notes.txt").write_text("not a blob")
        misplaced = tmp_path / "blobs" / "00" / sha.hex()  # not under its own prefix
        misplaced.parent.mkdir(parents=True)
        misplaced.write_bytes(b"laid out")
        assert list(backend.list()) == [Listing(sha, 8)]
        assert backend.ignored == 2
    finally:
        backend.close()
