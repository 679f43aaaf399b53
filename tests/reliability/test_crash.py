"""Crash: the daemon SIGKILLed at random moments while 20 writers copy files into
/incoming and readers read; at least 20 rounds.

After each kill: ``axonfs fsck`` (the store unmounted: the dead daemon's lock is
gone) reports a clean store, ``axonfs mount`` recovers the dead mount point,
every blob whose ``close()`` returned is present and byte-exact, and nothing
else is visible: each blob under /by-sha256 hashes to its name and is the
complete content some writer wrote (no partial blob). /incoming is empty and
no spool file is left.

Scale with ``AXONFS_CRASH_ROUNDS`` (default 20) and ``AXONFS_CRASH_SEED``.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

from helpers.hashes import file_sha

from axonfs.store import intent

from .conftest import Figures, MakeDaemon
from .tools import DEAD_MOUNT_ERRNOS, assert_fsck_clean, spools, write_file

ROUNDS = max(20, int(os.environ.get("AXONFS_CRASH_ROUNDS", "20")))
WRITERS = 20
READERS = 4
KILL_AFTER = (0.15, 1.2)
"""Seconds between starting the writers and the SIGKILL (uniform)."""
JOIN_TIMEOUT = 30.0


def _size(rng: random.Random) -> int:
    """Mostly small files, some medium ones (up to 1 MiB)."""
    if rng.random() < 0.75:
        return rng.randrange(0, 64 << 10)
    return rng.randrange(256 << 10, 1 << 20)


class Round:
    """One round's writers and readers, and what they saw."""

    def __init__(self, number: int, mnt: Path, seed: int, readable: list[str]) -> None:
        self.number = number
        self.mnt = mnt
        self.seed = seed
        self.readable = readable
        self.attempted: set[str] = set()
        self.acked: dict[str, int] = {}
        self.errors: list[str] = []
        self.reads = 0
        self.lock = threading.Lock()
        self.dead = threading.Event()  # set just before the kill

    def _unexpected(self, who: str, exc: OSError) -> None:
        if exc.errno in DEAD_MOUNT_ERRNOS and self.dead.is_set():
            return
        with self.lock:
            self.errors.append(
                f"round {self.number} {who}: {exc!r} (daemon killed: {self.dead.is_set()})"
            )

    def writer(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        for n in range(10_000):
            data = rng.randbytes(_size(rng))
            sha = hashlib.sha256(data).hexdigest()
            with self.lock:
                self.attempted.add(sha)
            try:
                write_file(self.mnt / "incoming" / f"r{self.number}-w{index}-{n}", data)
            except OSError as exc:
                self._unexpected(f"writer {index}", exc)
                return
            with self.lock:
                self.acked[sha] = len(data)

    def reader(self, index: int) -> None:
        rng = random.Random(-self.seed * 1000 - index)
        while self.readable:
            name = rng.choice(self.readable)
            try:
                got = file_sha(self.mnt / "by-sha256" / name)
            except OSError as exc:
                self._unexpected(f"reader {index}", exc)
                return
            if got != name:
                with self.lock:
                    self.errors.append(f"round {self.number} reader {index}: {name} read as {got}")
                return
            with self.lock:
                self.reads += 1


def test_sigkill_during_ingest_loses_nothing(daemons: MakeDaemon, figures: Figures) -> None:
    seed = int(os.environ.get("AXONFS_CRASH_SEED", str(random.randrange(1 << 30))))
    print(f"AXONFS_CRASH_SEED={seed}")
    rng = random.Random(seed)
    daemon = daemons(name="crash")
    assert daemon.mnt is not None
    daemon.start()
    acked: dict[str, int] = {}  # every blob whose close() returned
    attempted: set[str] = set()  # every complete content any writer tried
    verified: set[str] = set()  # visible blobs already read back and hashed
    files_acked = reads = 0
    started = time.monotonic()
    for number in range(ROUNDS):
        this = Round(number, daemon.mnt, rng.randrange(1 << 30), sorted(verified))
        threads = [
            threading.Thread(target=this.writer, args=(i,), daemon=True) for i in range(WRITERS)
        ]
        threads += [
            threading.Thread(target=this.reader, args=(i,), daemon=True) for i in range(READERS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(*KILL_AFTER))
        this.dead.set()
        daemon.kill()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), f"round {number}: a thread hangs on the dead mount"
        assert not this.errors, "\n".join(this.errors)
        acked.update(this.acked)
        attempted |= this.attempted
        files_acked += len(this.acked)
        reads += this.reads

        # The store, unmounted (its daemon is dead): fsck settles and finds nothing.
        assert_fsck_clean(daemon.store)
        assert intent.read(daemon.store / "commit.intent") is None
        # The mount point is dead; mount recovers it and says so.
        result = daemon.start()
        assert "stopped abruptly" in result.stderr, result.stderr
        assert os.listdir(daemon.mnt / "incoming") == [], "uploads survived a crash"
        assert not spools(daemon.store)
        visible = set(os.listdir(daemon.mnt / "by-sha256"))
        lost = set(acked) - visible
        assert not lost, f"round {number}: acknowledged blobs lost: {sorted(lost)[:5]}"
        foreign = visible - attempted
        assert not foreign, f"round {number}: blobs nobody wrote whole: {sorted(foreign)[:5]}"
        for name in sorted(visible - verified):
            path = daemon.mnt / "by-sha256" / name
            assert file_sha(path) == name, f"round {number}: {name} is not byte-exact"
            if name in acked:
                assert path.stat().st_size == acked[name]
            verified.add(name)

    daemon.stop()
    assert_fsck_clean(daemon.store)
    elapsed = time.monotonic() - started
    figures["crash"] = {
        "rounds": ROUNDS,
        "writers": WRITERS,
        "readers": READERS,
        "files_acknowledged": files_acked,
        "distinct_blobs_acknowledged": len(acked),
        "blobs_visible": len(verified),
        "visible_but_close_never_returned": len(verified) - len(acked),
        "verified_reads_during_rounds": reads,
        "acknowledged_bytes": sum(acked.values()),
        "lost": 0,
        "partial_visible": 0,
        "seconds": round(elapsed, 1),
        "seed": seed,
    }
