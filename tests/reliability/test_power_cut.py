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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from helpers.cli import AXONFS, run_axonfs
from helpers.hashes import sha_hex
from helpers.powercut import PowerCutDisk

from axonfs.axon import Axon
from axonfs.fsck import fsck
from axonfs.hashing import Sha256
from axonfs.store import intent
from axonfs.store.store import JOURNAL_MAX, Store

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
SWEEP_INTERVAL_MS = 600_000
"""A sync interval no sweep lasts: the sequence's own calls make every sync."""
BOUND_INTERVAL_MS = 100
BOUND_RUN_NS = 3_000_000_000
"""How long the bound's writer puts before the cut."""
SYNC_SLACK_NS = 1_500_000_000
"""How late the interval's sync may run on a loaded machine (two cores
shared with the harness, the writer and the test)."""


@dataclass
class Acks:
    """What the writer was told, in order: the puts that must survive and the
    deletes that must stay done (a delete in flight may go either way); with
    a sync interval, the puts acknowledged since the last sync (``tentative``:
    hex and the monotonic ns of the ack), which a cut may lose."""

    present: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    tentative: list[tuple[str, int]] = field(default_factory=list)
    lines: int = 0

    def feed(self, line: str) -> None:
        kind, _, rest = line.strip().partition(" ")
        hexd = rest.partition(" ")[0]
        if kind == "put":
            self.present.add(hexd)
            self.absent.discard(hexd)
        elif kind == "tput":
            self.tentative.append((hexd, int(rest.split()[1])))
            self.absent.discard(hexd)
        elif kind == "synced":
            self.present.update(hexd for hexd, _ in self.tentative)
            self.tentative.clear()
            return
        elif kind == "deleting":
            self.present.discard(hexd)
            self.tentative = [(h, t) for h, t in self.tentative if h != hexd]
        elif kind == "del":
            self.absent.add(hexd)
        else:
            return
        self.lines += 1


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[PowerCutDisk]:
    with PowerCutDisk(tmp_path / "backing", tmp_path / "disk") as harness:
        yield harness


def start_writer(
    store: Path, mode: str, seed: int = 1, sync_interval_ms: int = 0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AXONFS[:1], str(WRITER), str(store), mode, str(seed), str(sync_interval_ms)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"},
    )


def finish_writer(writer: subprocess.Popen[str], acks: Acks) -> str:
    """SIGKILL the writer if it is still running (its disk is gone); read its
    remaining acks; return its stderr."""
    writer.kill()
    out, err = writer.communicate(timeout=TIMEOUT)
    for line in out.splitlines():
        acks.feed(line)
    return err


def check_store(store: Path, acks: Acks, cli: bool = True, ordered: bool = True) -> int:
    """The checks after a power cut (the harness restarted); return the blobs checked.

    *cli*: run ``axonfs fsck`` itself; else its function in this process, on
    the store opened once for every check (the sweep's many points).

    Of the tentative puts (a sync interval's), those that survived must be
    whole and, if *ordered* (made one at a time), a prefix.
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
        survived = [
            opened.index.has(Sha256(bytes.fromhex(hexd)))
            for hexd, _ in acks.tentative
            if hexd not in acks.present
        ]
        assert not ordered or survived == sorted(survived, reverse=True), (
            f"not a prefix of the acknowledged puts survived: {survived}"
        )
    return len(acks.present)


def sequence_syncs(disk: PowerCutDisk, sync_interval_ms: int = 0) -> int:
    """Run the whole sequence without a cut; return how many syncs it made."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "sequence", sync_interval_ms=sync_interval_ms)
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


def read_acks_until(
    disk: PowerCutDisk, writer: subprocess.Popen[str], enough: Callable[[Acks], bool]
) -> Acks:
    """Read the writer's acks as they come until *enough* of them; a writer
    that gets stuck meets the watchdog, which cuts the power and so ends the read."""
    acks = Acks()
    assert writer.stdout is not None
    watchdog = threading.Timer(TIMEOUT, disk.power_cut)
    watchdog.start()
    try:
        for line in writer.stdout:
            acks.feed(line)
            if enough(acks):
                break
    finally:
        watchdog.cancel()
    return acks


def cut_at_sync(
    disk: PowerCutDisk, sync: int, mode: str = "sequence", sync_interval_ms: int = 0
) -> Acks:
    """Run the writer on a fresh store until the harness cuts the power as its
    *sync*-th sync starts; return the acks the writer had got."""
    mnt = disk.start(crash_after_syncs=sync)
    writer = start_writer(mnt / "store", mode, sync_interval_ms=sync_interval_ms)
    acks = Acks()
    cut = disk.wait_power_cut(timeout=TIMEOUT)
    finish_writer(writer, acks)
    assert cut, "the sequence ended before the power cut"
    return acks


def fresh(disk: PowerCutDisk) -> None:
    """Forget the previous run's disk."""
    subprocess.run(["rm", "-rf", str(disk.backing)], check=True)


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["unsynced-lost", "unsynced-half-kept"])
@pytest.mark.parametrize(
    "interval_ms", [0, SWEEP_INTERVAL_MS], ids=["durable-calls", "sync-interval"]
)
def test_power_cut_at_every_sync_of_a_sequence(
    disk: PowerCutDisk, keep: float, interval_ms: int, figures: Figures
) -> None:
    """*keep*: the chance that each unsynced 4 KiB piece of a file reached the
    disk anyway (the kernel's writeback part way through at the cut).

    With a sync interval (one too long to pass within the sequence, so that
    its calls make every sync, the same ones on every run), puts of small
    blobs may be lost, as a prefix; nothing else may.
    """
    total = sequence_syncs(disk, interval_ms)
    points = spread(
        total,
        None if FULL_SWEEP else SWEEP_POINTS if not keep and not interval_ms else SWEEP_POINTS // 2,
    )
    checked = 0
    for sync in points:
        fresh(disk)
        acks = cut_at_sync(disk, sync, sync_interval_ms=interval_ms)
        mnt = disk.start(keep_unsynced=keep, seed=sync)
        checked += check_store(mnt / "store", acks, cli=False)
        disk.stop()
    key = (
        "power_cut_sequence" + ("_interval" if interval_ms else "") + ("_half_kept" if keep else "")
    )
    figures[key] = {
        "syncs in the sequence": total,
        "crash points": len(points),
        "acknowledged blobs checked": checked,
    }


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["unsynced-lost", "unsynced-half-kept"])
def test_power_cut_with_a_sync_interval_loses_at_most_the_interval(
    disk: PowerCutDisk, keep: float, figures: Figures
) -> None:
    """Small puts one after the other with a short sync interval; the power
    goes after a few seconds of them. Every put acknowledged more than the
    interval (plus :data:`SYNC_SLACK` for a late sync on a loaded machine)
    before the cut survives, and those that survived are a prefix."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "small", sync_interval_ms=BOUND_INTERVAL_MS)
    acks = read_acks_until(
        disk,
        writer,
        lambda acks: (
            bool(acks.tentative) and acks.tentative[-1][1] - acks.tentative[0][1] > BOUND_RUN_NS
        ),
    )
    cut_ns = time.monotonic_ns()
    disk.power_cut()
    err = finish_writer(writer, acks)
    assert acks.tentative, err
    mnt = disk.start(keep_unsynced=keep, seed=len(acks.tentative))
    check_store(mnt / "store", acks)
    with Store(mnt / "store", readonly=True) as opened:
        survived = [
            hexd for hexd, _ in acks.tentative if opened.index.has(Sha256(bytes.fromhex(hexd)))
        ]
    disk.stop()
    bound_ns = cut_ns - (BOUND_INTERVAL_MS * 1_000_000 + SYNC_SLACK_NS)
    promised = [hexd for hexd, acked_ns in acks.tentative if acked_ns <= bound_ns]
    assert promised, "the writer ran too short for the bound to promise anything"
    assert set(promised) <= set(survived), (
        f"{len(set(promised) - set(survived))} puts older than the interval were lost"
    )
    lost = len(acks.tentative) - len(survived)
    figures.setdefault("power_cut_interval_bound", {})[
        "unsynced-half-kept" if keep else "unsynced-lost"
    ] = {
        "sync interval ms": BOUND_INTERVAL_MS,
        "puts acknowledged": len(acks.tentative),
        "lost (none acknowledged longer than the interval plus 1.5 s before the cut)": lost,
    }


def spread(total: int, count: int | None) -> list[int]:
    """*count* sync numbers evenly spread over 1..*total* (all of them if None)."""
    if count is None or count >= total:
        return list(range(1, total + 1))
    return sorted({1 + round(i * (total - 1) / (count - 1)) for i in range(count)})


def run_from_image(
    disk: PowerCutDisk, saved: Path, command: str, crash_after_syncs: int | None
) -> bool:
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
def test_power_cut_during_recovery(
    disk: PowerCutDisk, first: int, tmp_path: Path, figures: Figures
) -> None:
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


@pytest.mark.parametrize(
    ("cut_after", "interval_ms"),
    [(2, 0), (25, 0), (150, 0), (150, 100)],
    ids=["after-2-acks", "after-25-acks", "after-150-acks", "after-150-acks-sync-interval"],
)
def test_power_cut_while_writers_put_and_delete(
    disk: PowerCutDisk, cut_after: int, interval_ms: int, figures: Figures
) -> None:
    """Eight writers put (small and large blobs) and delete concurrently, so
    commits group several callers; the power goes after *cut_after* acks.
    With a sync interval, small blobs acknowledged since the last sync may be
    lost; nothing else."""
    mnt = disk.start()
    writer = start_writer(mnt / "store", "concurrent", seed=cut_after, sync_interval_ms=interval_ms)
    acks = read_acks_until(disk, writer, lambda acks: acks.lines >= cut_after)
    disk.power_cut()
    err = finish_writer(writer, acks)
    assert acks.lines >= cut_after, err
    mnt = disk.start()
    checked = check_store(mnt / "store", acks, ordered=False)
    disk.stop()
    record = figures.setdefault(
        "power_cut_concurrent", {"crash points": 0, "acknowledged blobs checked": 0}
    )
    record["crash points"] += 1
    record["acknowledged blobs checked"] += checked


@pytest.mark.parametrize(
    ("cut_after", "interval_ms"),
    [(1, 0), (40, 0), (40, 100)],
    ids=["after-1-closes", "after-40-closes", "after-40-closes-sync-interval"],
)
def test_power_cut_while_copying_into_incoming(
    disk: PowerCutDisk, cut_after: int, interval_ms: int, daemons: MakeDaemon, figures: Figures
) -> None:
    """Four writers copy files into /incoming of a mount whose store is on the
    harness; every close() that returned 0 must survive the cut (with a sync
    interval: every close of a file over 128 KiB; a small file's may be lost)."""
    mnt = disk.start()
    daemon = daemons(
        store=mnt / "store", options=("--sync-interval", str(interval_ms)) if interval_ms else ()
    )
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
            data = rng.randbytes(
                rng.randrange(1, 20_000) if rng.random() < 0.7 else rng.randrange(200_000, 600_000)
            )
            try:
                write_file(daemon.mnt / "incoming" / f"w{number}-{n}", data)
            except OSError:
                return  # the power went (or the daemon with it): not acknowledged
            with lock:
                if interval_ms and len(data) <= JOURNAL_MAX:
                    acks.feed(f"tput {sha_hex(data)} {time.monotonic_ns()}")
                else:
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
    checked = check_store(mnt / "store", acks, ordered=False)
    disk.stop()
    record = figures.setdefault(
        "power_cut_incoming", {"crash points": 0, "acknowledged files checked": 0}
    )
    record["crash points"] += 1
    record["acknowledged files checked"] += checked


def test_power_cut_while_recover_rebuilds_a_lost_index(
    disk: PowerCutDisk, tmp_path: Path, figures: Figures
) -> None:
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
    figures["power_cut_index_recover"] = {
        "syncs of the recover": recover_syncs,
        "crash points": len(points),
    }


async def _put_and_delete(store: Path) -> None:
    async with Axon.open(store) as axon:
        _, sha = await axon.put(os.urandom(300_000))  # a blob file: its add writes an intent
        assert await axon.del_(sha)


def test_a_delete_leaves_no_intent_for_a_power_cut_to_bring_back(disk: PowerCutDisk) -> None:
    """Settled again after a cut, a stale ``del`` would remove bytes that another
    host sharing the bucket may have added since: a delete's record is emptied
    durably (a record of adds may come back: settling it is harmless)."""
    mnt = disk.start()
    trio.run(_put_and_delete, mnt / "store")
    disk.power_cut()
    mnt = disk.start()
    assert intent.read(mnt / "store" / intent.INTENT_NAME) is None
    disk.stop()
