"""Power cuts: the store lives on the power-cut harness (tests/helpers/powercut.py),
which keeps only what was synced, and loses the rest when the power goes.

After every cut the harness comes back with its durable image only, and:

* ``axonfs fsck`` (which opens the store, finishing an interrupted commit or
  spill) reports no problem: no index row names missing or wrong bytes, no
  unindexed blob, counters right;
* every acknowledged put (a ``put`` that returned, a ``close()`` in
  ``/incoming`` that returned 0) is there, byte-exact;
* every acknowledged delete stays deleted.

Crash points:

* a sweep over every sync of a fixed sequence of calls (single puts, an
  upload, a multi-put, a dedup, deletes, a journal spill, the clean close):
  the durable image changes only at a sync, so cutting the power as each
  sync starts covers every distinct state that sequence can leave; run again
  with half of the unsynced file pieces surviving the cut;
* a second cut while the store recovers from the first (the open that
  settles an intent and rewrites the journal's files);
* cuts after N acknowledged puts while eight writers keep putting and
  deleting (group commits, spills beside commits);
* cuts after N files closed in ``/incoming`` of a mount whose store is on
  the harness;
* cuts during ``axonfs recover`` indexing the blob files of a store whose
  index was lost, then recover run again.

``AXONFS_POWERCUT_SWEEP=all`` cuts at every sync of the sequence and of
each recovery (the default takes a few points evenly spread over them, to
stay within the suite's time budget).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.cli import AXONFS, run_axonfs
from helpers.hashes import sha_hex
from helpers.powercut import PowerCutDisk

from axonfs.fsck import fsck
from axonfs.hashing import Sha256
from axonfs.store.store import Store

from .conftest import Figures, MakeDaemon
from .tools import assert_fsck_clean, write_file

WRITER = Path(__file__).with_name("power_cut_writer.py")
REPO = Path(__file__).parents[2]
FULL_SWEEP = os.environ.get("AXONFS_POWERCUT_SWEEP") == "all"
SWEEP_POINTS = 10
"""Crash points of the sequence sweep unless ``AXONFS_POWERCUT_SWEEP=all``:
evenly spread over its syncs (about 2 s each)."""
RECOVERY_POINTS = 4
"""Second cuts per recovery (of the open after a cut, of ``axonfs recover``)."""
TIMEOUT = 60.0


@dataclass
class Acks:
    """What the writer was told, in order: the puts that must survive and the
    deletes that must stay done (a delete in flight may go either way)."""

    present: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    lines: int = 0

    def feed(self, line: str) -> None:
        kind, _, hexd = line.strip().partition(" ")
        if kind == "put":
            self.present.add(hexd)
            self.absent.discard(hexd)
        elif kind == "deleting":
            self.present.discard(hexd)
        elif kind == "del":
            self.absent.add(hexd)
        else:
            return
        self.lines += 1


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[PowerCutDisk]:
    with PowerCutDisk(tmp_path / "backing", tmp_path / "disk") as harness:
        yield harness


def start_writer(store: Path, mode: str, seed: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AXONFS[:1], str(WRITER), str(store), mode, str(seed)], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})


def finish_writer(writer: subprocess.Popen[str], acks: Acks) -> str:
    """SIGKILL the writer if it is still running (its disk is gone); read its
    remaining acks; return its stderr."""
    writer.kill()
    out, err = writer.communicate(timeout=TIMEOUT)
    for line in out.splitlines():
        acks.feed(line)
    return err


def check_store(store: Path, acks: Acks, cli: bool = True) -> int:
    """The checks after a power cut (the harness restarted); return the blobs checked.

    *cli*: run ``axonfs fsck`` itself; else its function in this process, on
    the store opened once for every check (the sweep's many points).
    """
    if cli:
        assert_fsck_clean(store)
    with Store(store) as opened:
        if not cli:
            report = fsck(opened)
            assert report.problems == 0, report.summary()
        for hexd in acks.present:
            sha = Sha256(bytes.fromhex(hexd))
            row = opened.index.get(sha)
            assert row is not None, f"acknowledged blob {hexd} was lost"
            with opened.open_blob(sha) as reader:
                assert sha_hex(reader.read(0, row.size + 1)) == hexd, f"{hexd} is damaged"
        for hexd in acks.absent:
            assert not opened.index.has(Sha256(bytes.fromhex(hexd))), f"{hexd} came back"
    return len(acks.present)


def sequence_syncs(disk: PowerCutDisk) -> int:
    """Run the whole sequence without a cut; return how many syncs it made."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "sequence")
    acks = Acks()
    err = finish_writer_when_done(writer, acks)
    assert "done" in err, err
    syncs = disk.stop()
    disk.start()
    check_store(mnt / "store", acks)
    disk.stop()
    return syncs


def finish_writer_when_done(writer: subprocess.Popen[str], acks: Acks) -> str:
    out, err = writer.communicate(timeout=TIMEOUT)
    assert writer.returncode == 0, err
    for line in out.splitlines():
        acks.feed(line)
    return err + out


def cut_at_sync(disk: PowerCutDisk, sync: int, mode: str = "sequence") -> Acks:
    """Run the writer on a fresh store until the harness cuts the power as its
    *sync*-th sync starts; return the acks the writer had got."""
    mnt = disk.start(crash_after_syncs=sync)
    writer = start_writer(mnt / "store", mode)
    acks = Acks()
    cut = disk.wait_power_cut(timeout=TIMEOUT)
    finish_writer(writer, acks)
    assert cut, "the sequence ended before the power cut"
    return acks


def fresh(disk: PowerCutDisk) -> None:
    """Forget the previous run's disk."""
    subprocess.run(["rm", "-rf", str(disk.backing)], check=True)


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["unsynced-lost", "unsynced-half-kept"])
def test_power_cut_at_every_sync_of_a_sequence(disk: PowerCutDisk, keep: float,
                                               figures: Figures) -> None:
    """*keep*: the chance that each unsynced 4 KiB piece of a file reached the
    disk anyway (the kernel's writeback part way through at the cut)."""
    total = sequence_syncs(disk)
    points = spread(total, None if FULL_SWEEP else SWEEP_POINTS if not keep else SWEEP_POINTS // 2)
    checked = 0
    for sync in points:
        fresh(disk)
        acks = cut_at_sync(disk, sync)
        mnt = disk.start(keep_unsynced=keep, seed=sync)
        checked += check_store(mnt / "store", acks, cli=False)
        disk.stop()
    key = "power_cut_sequence" + ("_half_kept" if keep else "")
    figures[key] = {"syncs in the sequence": total, "crash points": len(points),
                    "acknowledged blobs checked": checked}


def spread(total: int, count: int | None) -> list[int]:
    """*count* sync numbers evenly spread over 1..*total* (all of them if None)."""
    if count is None or count >= total:
        return list(range(1, total + 1))
    return sorted({1 + round(i * (total - 1) / (count - 1)) for i in range(count)})


def run_from_image(disk: PowerCutDisk, saved: Path, command: str,
                   crash_after_syncs: int | None) -> bool:
    """Restore the disk from *saved*, run ``axonfs COMMAND`` on its store (the power
    going at that sync, if given); True if the power went."""
    shutil.rmtree(disk.backing)
    shutil.copytree(saved, disk.backing)
    mnt = disk.start(crash_after_syncs=crash_after_syncs)
    run_axonfs(command, "--store", mnt / "store", timeout=TIMEOUT)
    if disk.wait_power_cut(timeout=0):
        return True
    disk.stop()
    return False


@pytest.mark.parametrize("first", [22, 50], ids=lambda n: f"cut-at-sync-{n}")
def test_power_cut_during_recovery(disk: PowerCutDisk, first: int, tmp_path: Path,
                                   figures: Figures) -> None:
    """Cut once in the sequence, then again during the open that recovers from
    it (run by ``axonfs fsck``: it settles the interrupted commit and rewrites
    the journal's files); the store must recover from both."""
    acks = cut_at_sync(disk, first)
    saved = tmp_path / "after-first-cut"
    shutil.copytree(disk.backing, saved)

    def recover(crash_after_syncs: int | None) -> bool:
        return run_from_image(disk, saved, "fsck", crash_after_syncs)

    assert not recover(None)
    recovery_syncs = disk.syncs or 0
    points = spread(recovery_syncs, None if FULL_SWEEP else RECOVERY_POINTS)
    for second in points:
        assert recover(second), f"no power cut at sync {second} of {recovery_syncs}"
        mnt = disk.start()
        check_store(mnt / "store", acks)
        disk.stop()
    record = figures.setdefault("power_cut_recovery", {"crash points": 0})
    record["crash points"] += len(points)


@pytest.mark.parametrize("cut_after", [2, 25, 150], ids=lambda n: f"after-{n}-acks")
def test_power_cut_while_writers_put_and_delete(disk: PowerCutDisk, cut_after: int,
                                                figures: Figures) -> None:
    """Eight writers put (small and large blobs) and delete concurrently, so
    commits group several callers; the power goes after *cut_after* acks."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "concurrent", seed=cut_after)
    acks = Acks()
    assert writer.stdout is not None
    watchdog = threading.Timer(TIMEOUT, disk.power_cut)  # a stuck writer ends the loop
    watchdog.start()
    try:
        for line in writer.stdout:
            acks.feed(line)
            if acks.lines >= cut_after:
                break
    finally:
        watchdog.cancel()
    disk.power_cut()
    err = finish_writer(writer, acks)
    assert acks.lines >= cut_after, err
    mnt = disk.start()
    checked = check_store(mnt / "store", acks)
    disk.stop()
    record = figures.setdefault("power_cut_concurrent",
                                {"crash points": 0, "acknowledged blobs checked": 0})
    record["crash points"] += 1
    record["acknowledged blobs checked"] += checked


@pytest.mark.parametrize("cut_after", [1, 40], ids=lambda n: f"after-{n}-closes")
def test_power_cut_while_copying_into_incoming(disk: PowerCutDisk, cut_after: int,
                                               daemons: MakeDaemon,
                                               figures: Figures) -> None:
    """Four writers copy files into /incoming of a mount whose store is on the
    harness; every close() that returned 0 must survive the cut."""
    mnt = disk.start()
    daemon = daemons(store=mnt / "store")
    daemon.start()
    acks = Acks()
    enough = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def copy(number: int) -> None:
        rng = random.Random(number)
        for n in range(100_000):
            if stop.is_set():
                return
            data = rng.randbytes(rng.randrange(1, 20_000) if rng.random() < 0.7
                                 else rng.randrange(200_000, 600_000))
            try:
                write_file(daemon.mnt / "incoming" / f"w{number}-{n}", data)
            except OSError:
                return  # the power went (or the daemon with it): not acknowledged
            with lock:
                acks.feed(f"put {sha_hex(data)}")
                if acks.lines >= cut_after:
                    enough.set()

    threads = [threading.Thread(target=copy, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(TIMEOUT), "no file was committed"
        with lock:  # what was acknowledged at the instant of the cut
            daemon.kill()
            disk.power_cut()
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    daemon.close()
    mnt = disk.start()
    checked = check_store(mnt / "store", acks)
    disk.stop()
    record = figures.setdefault("power_cut_incoming",
                                {"crash points": 0, "acknowledged files checked": 0})
    record["crash points"] += 1
    record["acknowledged files checked"] += checked


def test_power_cut_while_recover_rebuilds_a_lost_index(disk: PowerCutDisk, tmp_path: Path,
                                                       figures: Figures) -> None:
    """The index is lost; ``axonfs recover`` indexes the blob files again and is
    cut at its syncs; run again after the cut, it must finish the job."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "sequence")
    acks = Acks()
    finish_writer_when_done(writer, acks)
    shutil.rmtree(mnt / "store" / "index.lmdb")
    fd = os.open(mnt / "store", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # the loss is durable
    finally:
        os.close(fd)
    disk.stop()
    saved = tmp_path / "index-lost"
    shutil.copytree(disk.backing, saved)

    def recover(crash_after_syncs: int | None) -> bool:
        return run_from_image(disk, saved, "recover", crash_after_syncs)

    assert not recover(None)
    recover_syncs = disk.syncs or 0
    points = spread(recover_syncs, None if FULL_SWEEP else RECOVERY_POINTS)
    for sync in points:
        assert recover(sync), f"no power cut at sync {sync} of {recover_syncs}"
        mnt = disk.start()
        run_axonfs("recover", "--store", mnt / "store", timeout=TIMEOUT)
        check_store(mnt / "store", acks)
        disk.stop()
    figures["power_cut_index_recover"] = {"syncs of the recover": recover_syncs,
                                          "crash points": len(points)}
