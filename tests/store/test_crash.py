"""SIGKILL a busy writer at random moments; the store must always be consistent.

After every kill: ``axonfs fsck`` exits 0 (it opens the store, which sweeps
stale spools and settles an interrupted commit), every blob the index shows
reads back with its sha256, the counters equal the sums, and no spool is left.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.cli import run_axonfs
from helpers.hashes import sha_digest

from axonfs.hashing import Sha256
from axonfs.store import intent
from axonfs.store.index import IndexOp
from axonfs.store.store import Store
from store.storetools import PYTHON, REPO, MakeBackend, spool_files

KILLS = 24
MIN_COMMITS, MAX_COMMITS = 6, 12
"""A late kill waits for this many commits (at least, below at most)."""
WRITER = Path(__file__).with_name("crash_writer.py")


def run_and_kill(store_dir: Path, rng: random.Random, early: bool) -> int:
    """Start the writer, SIGKILL it at a random moment; return how many commits it made.

    Early: at a random time while it starts. Otherwise once it has made a random
    number of commits (so a loaded machine only slows the test down), a random
    fraction of a commit later.
    """
    seed = str(rng.randrange(1 << 30))
    committed = 0
    with subprocess.Popen(
        [PYTHON, str(WRITER), str(store_dir), seed],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        assert proc.stdout is not None
        if early:  # while it starts, sweeps and settles, opens the store
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert proc.stdout.readline() == "open\n"
            committed = rng.randrange(MIN_COMMITS, MAX_COMMITS)
            for _ in range(committed):
                assert proc.stdout.read(1) == ".", "the writer stopped"
            time.sleep(rng.uniform(0.0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        output = proc.stdout.read()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    return committed + output.count(".")


def check_blobs(store_dir: Path) -> int:
    """Every indexed blob reads back whole and hashes to its name; return the count."""
    with Store(store_dir) as store:
        rows, after = [], b""
        while batch := store.index.blobs_batch(after, 1000):
            rows.extend(batch)
            after = batch[-1].sha256
        for row in rows:
            with store.backend.open(row.sha256) as reader:
                assert reader.size == row.size
                data = reader.read(0, row.size + 1)
            assert len(data) == row.size
            assert hashlib.sha256(data).digest() == row.sha256
        assert store.index.metrics() == {
            "size:bytes": sum(r.size for r in rows),
            "file:count": len(rows),
        }
        assert len(list(store.backend.list())) == len(rows)
    return len(rows)


@pytest.mark.slow
def test_sigkill_at_random_moments(store_dir: Path) -> None:
    rng = random.Random(int(os.environ.get("AXONFS_CRASH_SEED", "20240611")))
    commits = stale_spools = settled = 0
    for kill in range(KILLS):
        commits += run_and_kill(store_dir, rng, early=kill % 6 == 5)
        stale_spools += len(spool_files(store_dir))
        settled += intent.read(store_dir / "commit.intent") is not None
        result = run_axonfs("fsck", "--store", store_dir)
        assert result.returncode == 0, f"kill {kill}: {result.stdout}{result.stderr}"
        assert "no problems found" in result.stdout
        assert spool_files(store_dir) == []
        check_blobs(store_dir)
    # The kills did land in the middle of things.
    print(f"{commits} commits, {stale_spools} stale spools, {settled} interrupted commits")
    assert commits > 100
    assert stale_spools > 0
    assert settled > 0


# -- the settling of an interrupted commit, step by step (every backend) --------------


def stage_bytes(store: Store, data: bytes, name: bytes | None = None) -> Sha256:
    """Put *data* in the backend under *name* (default: its sha256), unindexed."""
    sha = Sha256(name or sha_digest(data))
    path = store.tmp / f"staged-{os.urandom(4).hex()}"
    path.write_bytes(data)
    store.backend.put_file(sha, path)
    store.backend.flush()
    return sha


def test_open_indexes_the_blobs_of_an_interrupted_add(
    store_dir: Path, make_backend: MakeBackend
) -> None:
    with Store(store_dir, make_backend()) as store:
        kept = stage_bytes(store, b"renamed in, never indexed")
        never = Sha256(sha_digest(b"never reached the backend"))
        intent.write(store.intent_path, [(kept, True), (never, True)])
    with Store(store_dir, make_backend()) as store:
        row = store.index.get(kept)
        assert row is not None and row.size == 25
        assert not store.index.has(never)
        assert store.index.metrics() == {"size:bytes": 25, "file:count": 1}
        assert intent.read(store.intent_path) is None


def test_open_finishes_an_interrupted_delete(store_dir: Path, make_backend: MakeBackend) -> None:
    with Store(store_dir, make_backend()) as store:
        doomed = stage_bytes(store, b"index row gone, bytes not yet")
        kept = stage_bytes(store, b"delete never reached the index")
        store.index.apply([IndexOp(kept, 30)], time.time_ns())
        intent.write(store.intent_path, [(doomed, False), (kept, False)])
    with Store(store_dir, make_backend()) as store:
        assert not store.backend.exists(doomed)
        assert store.backend.exists(kept) and store.index.has(kept)


def test_open_follows_the_last_op_on_each_blob(store_dir: Path, make_backend: MakeBackend) -> None:
    with Store(store_dir, make_backend()) as store:
        added_then_deleted = stage_bytes(store, b"added then deleted in one batch")
        deleted_then_added = stage_bytes(store, b"deleted then re-added")
        intent.write(
            store.intent_path,
            [
                (added_then_deleted, True),
                (deleted_then_added, False),
                (added_then_deleted, False),
                (deleted_then_added, True),
            ],
        )
    with Store(store_dir, make_backend()) as store:
        assert not store.backend.exists(added_then_deleted)
        assert not store.index.has(added_then_deleted)
        assert store.index.has(deleted_then_added)


def test_open_removes_a_copy_that_does_not_match_its_name(
    store_dir: Path, make_backend: MakeBackend
) -> None:
    with Store(store_dir, make_backend()) as store:
        torn = stage_bytes(store, b"torn", name=sha_digest(b"the real, longer content"))
        intent.write(store.intent_path, [(torn, True)])
    with Store(store_dir, make_backend()) as store:
        assert not store.index.has(torn)
        assert not store.backend.exists(torn)


def test_a_torn_intent_line_is_ignored(store_dir: Path, make_backend: MakeBackend) -> None:
    with Store(store_dir, make_backend()) as store:
        sha = stage_bytes(store, b"whole line")
        store.intent_path.write_text(f"add {sha.hex()}\nadd {sha.hex()[:20]}")
    with Store(store_dir, make_backend()) as store:
        assert store.index.has(sha)


def test_an_intent_record_is_rewritten_in_place(tmp_path: Path) -> None:
    """A shorter record over a longer one ends at its own length, and emptying
    keeps the file's size (no truncation: no metadata for the sync to write)."""
    path = tmp_path / intent.INTENT_NAME
    shas = [Sha256(sha_digest(bytes([i]))) for i in range(3)]
    intent.write(path, [(shas[0], True), (shas[1], False)])
    intent.write(path, [(shas[2], True)])
    assert intent.read(path) == {shas[2]: True}
    size = path.stat().st_size
    intent.clear(path)
    assert intent.read(path) is None
    assert path.stat().st_size == size


def test_a_torn_intent_record_is_ignored(store_dir: Path, make_backend: MakeBackend) -> None:
    """A record whose bytes do not match its checksum never covered a move."""
    with Store(store_dir, make_backend()) as store:
        sha = stage_bytes(store, b"staged under a torn record")
        intent.write(store.intent_path, [(sha, True)])
        data = bytearray(store.intent_path.read_bytes())
        data[-5] ^= 0xFF
        store.intent_path.write_bytes(bytes(data))
        assert intent.read(store.intent_path) is None
    with Store(store_dir, make_backend()) as store:
        assert not store.index.has(sha)
