"""Deferred commits (the sync interval): an index that defers shows exactly
what one that commits every call shows, and its commit log brings back what
a stopped process had not synced.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axonfs.axon import Axon
from axonfs.hashing import Sha256
from axonfs.store.commitlog import LOG_NAME, ODD_LOG_NAME, CommitLog
from axonfs.store.index import Index, IndexOp
from axonfs.store.store import JOURNAL_MAX

SHAS = [Sha256(hashlib.sha256(bytes([i])).digest()) for i in range(12)]

op_strategy = st.one_of(
    st.builds(
        lambda i, size, journal: IndexOp(
            SHAS[i], size, journal=os.urandom(size) if journal else None
        ),
        st.integers(0, len(SHAS) - 1),
        st.integers(0, 64),
        st.booleans(),
    ),
    st.builds(lambda i: IndexOp(SHAS[i], delete=True), st.integers(0, len(SHAS) - 1)),
)
step_strategy = st.one_of(
    st.tuples(st.just("apply"), st.lists(op_strategy, min_size=1, max_size=6)),
    st.tuples(st.just("sync"), st.none()),
    st.tuples(st.just("hashset"), st.integers(0, len(SHAS) - 1)),
)


def everything(index: Index) -> dict[str, object]:
    """Every read the index offers, over the whole index."""
    seqn = index.seqn_batch(0, 1000)
    present, _ = index.present_batch(0, 1000)
    return {
        "rows": {sha: index.get(sha) for sha in SHAS},
        "has": [index.has(sha) for sha in SHAS],
        "metrics": index.metrics(),
        "next_indx": index.next_indx(),
        "seqn": seqn,
        "present": present,
        "history": index.history_batch((0, 0), None, 1000),
        "history_tail": index.history_batch((0, 3), None, 2),
        "blobs": index.blobs_batch(b"", 1000),
        "blobs_after": index.blobs_batch(bytes(SHAS[3]), 3),
        "journal": index.journal_batch(1000),
        "journal_get": [index.journal_get(sha) for sha in SHAS],
        "journal_entries": index.journal_entries(),
        "hashsets": [index.get_hashset(sha) for sha in SHAS],
    }


def hashset(sha: Sha256) -> dict[str, bytes]:
    return {"md5": bytes(16), "sha1": bytes(20), "sha512": bytes(sha) * 2}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step_strategy, min_size=1, max_size=25))
def test_a_deferred_index_reads_as_a_durable_one(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, object]]
) -> None:
    root = tmp_path_factory.mktemp("deferred")
    durable = Index(root / "durable.lmdb")
    deferred = Index(root / "deferred.lmdb", log_path=root / LOG_NAME, deferred=True)
    try:
        now = 1_700_000_000_000_000_000
        for kind, arg in steps:
            now += 1_000_000
            if kind == "apply":
                assert isinstance(arg, list)
                assert deferred.apply(arg, now, durable=False) == durable.apply(arg, now)
            elif kind == "sync":
                deferred.sync_deferred()
                assert deferred.deferred() == 0
            else:
                assert isinstance(arg, int)
                durable.put_hashset(SHAS[arg], hashset(SHAS[arg]))
                deferred.put_hashset(SHAS[arg], hashset(SHAS[arg]))
            assert everything(deferred) == everything(durable)
        # What a killed process left in its log comes back, the same.
        expected = everything(durable)
        kill(deferred, root)
        reopened = Index(root / "deferred.lmdb", log_path=root / LOG_NAME)
        try:
            assert everything(reopened) == expected
        finally:
            reopened.close()
    finally:
        durable.close()


def small_add(i: int, size: int = 100) -> IndexOp:
    return IndexOp(SHAS[i], size, journal=bytes([i]) * size)


@pytest.fixture
def deferred(tmp_path: Path) -> Index:
    return Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME, deferred=True)


def kill(index: Index, root: Path) -> None:
    """Leave *root* as a killed process would: the index file as LMDB last
    committed it and the commit log as written, without the sync that
    closing the index does."""
    kept = snapshot(index, root)
    index.close()
    restore(kept, root)


def snapshot(index: Index, root: Path) -> dict[Path, bytes]:
    """The files a killed process would leave: the index as LMDB last
    committed it, and the commit logs as written."""
    logs = [root / LOG_NAME, root / ODD_LOG_NAME]
    return {path: path.read_bytes() for path in (*index.path.iterdir(), *logs) if path.exists()}


def restore(kept: dict[Path, bytes], root: Path) -> None:
    for path in (root / LOG_NAME, root / ODD_LOG_NAME):
        path.unlink(missing_ok=True)
    for path, data in kept.items():
        path.write_bytes(data)


def test_deferred_commits_are_visible_and_not_durable(deferred: Index, tmp_path: Path) -> None:
    deferred.apply([small_add(0), small_add(1)], 1, durable=False)
    assert deferred.has(SHAS[0]) and deferred.journal_get(SHAS[1]) == bytes([1]) * 100
    assert deferred.deferred() == 1
    with deferred.env.begin(db=deferred.blobs) as txn:  # LMDB itself has not got them
        assert txn.get(SHAS[0]) is None
    deferred.sync_deferred()
    with deferred.env.begin(db=deferred.blobs) as txn:
        assert txn.get(SHAS[0]) is not None
    assert deferred.deferred() == 0 and deferred.syncs == 1
    deferred.close()


def test_a_durable_write_makes_the_deferred_ones_durable_first(deferred: Index) -> None:
    deferred.apply([small_add(0)], 1, durable=False)
    deferred.apply([IndexOp(SHAS[5], 10_000_000)], 2)  # a blob file's add: durable
    assert deferred.deferred() == 0
    with deferred.env.begin(db=deferred.blobs) as txn:
        assert txn.get(SHAS[0]) is not None and txn.get(SHAS[5]) is not None
    assert [row.sha256 for row, _ in deferred.seqn_batch(0, 10)] == [SHAS[0], SHAS[5]]
    deferred.close()


def test_a_killed_process_loses_no_deferred_commit(deferred: Index, tmp_path: Path) -> None:
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    deferred.apply([IndexOp(SHAS[0], delete=True), small_add(1)], 2_000_000, durable=False)
    deferred.apply([small_add(2)], 3_000_000, durable=False)
    expected = [deferred.get(sha) for sha in SHAS[:3]]
    kill(deferred, tmp_path)
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert [reopened.get(sha) for sha in SHAS[:3]] == expected
    assert reopened.metrics() == {"size:bytes": 200, "file:count": 2}
    reopened.close()
    # Replayed once: a second open finds the log spent.
    again = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert again.metrics() == {"size:bytes": 200, "file:count": 2}
    assert again.next_indx() == 3
    again.close()


def test_a_torn_record_ends_the_replay_at_the_last_whole_one(
    deferred: Index, tmp_path: Path
) -> None:
    for i in range(3):
        deferred.apply([small_add(i)], (i + 1) * 1_000_000, durable=False)
    kill(deferred, tmp_path)
    data = (tmp_path / LOG_NAME).read_bytes()
    # Flip one byte of the last record's payload: it and nothing before it is dropped.
    (tmp_path / LOG_NAME).write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert [reopened.has(sha) for sha in SHAS[:3]] == [True, True, False]
    reopened.close()


def test_a_record_lost_in_the_middle_drops_the_rest(deferred: Index, tmp_path: Path) -> None:
    """A power cut may keep a later record and lose an earlier one: the replay
    stops at the hole, so the index is as a prefix of the commits left it."""
    for i in range(3):
        deferred.apply([small_add(i)], (i + 1) * 1_000_000, durable=False)
    kill(deferred, tmp_path)
    data = bytearray((tmp_path / LOG_NAME).read_bytes())
    header, record = 20, 4 + 16
    second = header + record + struct.unpack_from(">I", data, header)[0]
    data[second + record : second + record + 8] = bytes(8)  # the second record's payload
    (tmp_path / LOG_NAME).write_bytes(bytes(data))
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert [reopened.has(sha) for sha in SHAS[:3]] == [True, False, False]
    reopened.close()


def test_a_log_already_synced_is_not_replayed(deferred: Index, tmp_path: Path) -> None:
    """The process stopped after the sync's transaction and before the log
    was started afresh: the log's generation is behind the index's."""
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    stale = (tmp_path / LOG_NAME).read_bytes()
    deferred.apply([IndexOp(SHAS[0], delete=True)], 2_000_000)  # durable: syncs the add
    deferred.close()
    (tmp_path / LOG_NAME).write_bytes(stale)
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert not reopened.has(SHAS[0])  # the stale add did not come back
    assert reopened.metrics() == {"size:bytes": 0, "file:count": 0}
    reopened.close()


def test_a_read_only_open_shows_the_log_and_writes_nothing(deferred: Index, tmp_path: Path) -> None:
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    kill(deferred, tmp_path)
    before = (tmp_path / LOG_NAME).read_bytes()
    readonly = Index(tmp_path / "index.lmdb", readonly=True, log_path=tmp_path / LOG_NAME)
    assert readonly.has(SHAS[0]) and readonly.journal_get(SHAS[0]) == bytes(100)
    readonly.close()
    assert (tmp_path / LOG_NAME).read_bytes() == before
    plain = Index(tmp_path / "index.lmdb", readonly=True)  # no log path: LMDB alone
    assert not plain.has(SHAS[0])
    plain.close()


def test_commit_log_records_round_trip(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / LOG_NAME)
    log.start(7)
    changes = [(0, b"k1", b"v1"), (3, b"k2", None), (6, b"", b"")]
    log.append(changes)
    log.append([(1, b"x", b"y" * 70_000)])
    log.close()
    assert (tmp_path / ODD_LOG_NAME).exists() and not (tmp_path / LOG_NAME).exists()
    assert CommitLog(tmp_path / LOG_NAME).replay(7) == ([changes, [(1, b"x", b"y" * 70_000)]], 7)
    assert CommitLog(tmp_path / LOG_NAME).replay(8) == ([], 8)


def test_a_log_follows_on_only_from_the_whole_previous_one(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / LOG_NAME)
    log.start(4)
    log.append([(0, b"a", b"1")])
    log.start(5, follows=True)
    log.append([(0, b"b", b"2")])
    log.close()
    both = [[(0, b"a", b"1")], [(0, b"b", b"2")]]
    assert CommitLog(tmp_path / LOG_NAME).replay(4) == (both, 5)
    assert CommitLog(tmp_path / LOG_NAME).replay(5) == ([[(0, b"b", b"2")]], 5)
    # The first log lost its last bytes (a power cut): the second does not follow on.
    data = (tmp_path / LOG_NAME).read_bytes()
    (tmp_path / LOG_NAME).write_bytes(data[:-1])
    assert CommitLog(tmp_path / LOG_NAME).replay(4) == ([], 4)


def test_a_log_of_the_one_file_layout_is_replayed(deferred: Index, tmp_path: Path) -> None:
    """A store written before the log had two files, killed with deferred commits."""
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    kill(deferred, tmp_path)
    path = tmp_path / LOG_NAME
    data = path.read_bytes()
    magic, generation, _ = struct.unpack_from(">4sQQ", data)
    assert magic == b"AXC2"
    path.write_bytes(struct.pack(">4sQ", b"AXCL", generation) + data[20:])
    reopened = Index(tmp_path / "index.lmdb", log_path=path)
    assert reopened.get(SHAS[0]) is not None
    reopened.close()


class _HeldEnv:
    """An index's LMDB environment whose next write transaction, once
    written, waits for *go* before it commits (and sets *held* then)."""

    def __init__(self, env: lmdb.Environment, held: threading.Event, go: threading.Event) -> None:
        self._env, self._held, self._go = env, held, go

    def __getattr__(self, name: str) -> object:
        return getattr(self._env, name)

    @contextmanager
    def begin(self, **kwargs: object) -> Iterator[lmdb.Transaction[bytes]]:
        with self._env.begin(**kwargs) as txn:  # type: ignore[call-overload]
            yield txn
            if kwargs.get("write"):
                self._held.set()
                assert self._go.wait(30)


def hold_a_sync(index: Index) -> tuple[threading.Thread, threading.Event]:
    """Start a sync in a thread and hold it once it has written the deferred
    commits it froze, before its transaction commits: (the thread, set to let
    it commit)."""
    held, go = threading.Event(), threading.Event()
    env = index.env
    index.env = _HeldEnv(env, held, go)  # type: ignore[assignment]
    thread = threading.Thread(target=index.sync_deferred)
    thread.start()
    assert held.wait(30)
    index.env = env
    return thread, go


def test_commits_go_on_during_a_sync(deferred: Index, tmp_path: Path) -> None:
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    thread, go = hold_a_sync(deferred)
    try:
        # Neither waits for the sync: they are staged, logged and visible now.
        deferred.apply([small_add(1)], 2_000_000, durable=False)
        deferred.apply([IndexOp(SHAS[0], delete=True)], 3_000_000, durable=False)
        assert [deferred.has(sha) for sha in SHAS[:2]] == [False, True]
        assert deferred.deferred() == 3
        # Killed here, with the sync's transaction not committed: both logs replay.
        during = snapshot(deferred, tmp_path)
    finally:
        go.set()
        thread.join()
    assert deferred.syncs == 1 and deferred.deferred() == 2
    assert [deferred.has(sha) for sha in SHAS[:2]] == [False, True]
    assert deferred.metrics() == {"size:bytes": 100, "file:count": 1}
    expected = everything(deferred)
    kill(deferred, tmp_path)  # after the sync: the newer log replays alone
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert everything(reopened) == expected
    reopened.close()
    restore(during, tmp_path)
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert everything(reopened) == expected
    reopened.close()


def test_a_sync_that_fails_leaves_everything_for_the_next(deferred: Index, tmp_path: Path) -> None:
    deferred.apply([small_add(0)], 1_000_000, durable=False)

    def fail(txn: object) -> None:
        raise OSError(errno.EIO, "the disk failed")

    with pytest.raises(OSError):
        deferred._write(fail)  # froze the first commit, moved the log on, and failed
    assert deferred.syncs == 0 and deferred.deferred() == 1
    deferred.apply([small_add(1)], 2_000_000, durable=False)
    deferred.apply([small_add(2)], 3_000_000, durable=False)
    expected = everything(deferred)
    failed = snapshot(deferred, tmp_path)
    deferred.sync_deferred()
    assert deferred.deferred() == 0 and everything(deferred) == expected
    deferred.apply([small_add(3)], 4_000_000, durable=False)
    expected = everything(deferred)
    kill(deferred, tmp_path)
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert everything(reopened) == expected
    reopened.close()
    restore(failed, tmp_path)  # killed right after the failed sync
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert [reopened.has(sha) for sha in SHAS[:4]] == [True, True, True, False]
    reopened.close()


def test_a_torn_frozen_log_stops_the_replay_before_the_next(
    deferred: Index, tmp_path: Path
) -> None:
    """Killed during a sync and then a power cut that tore the frozen log: the
    newer log's commits came after the lost one, so none of them comes back."""
    deferred.apply([small_add(0)], 1_000_000, durable=False)
    deferred.apply([small_add(1)], 2_000_000, durable=False)
    thread, go = hold_a_sync(deferred)
    try:
        deferred.apply([small_add(2)], 3_000_000, durable=False)
        during = snapshot(deferred, tmp_path)
    finally:
        go.set()
        thread.join()
    deferred.close()
    restore(during, tmp_path)
    frozen = max((tmp_path / LOG_NAME, tmp_path / ODD_LOG_NAME), key=lambda p: p.stat().st_size)
    frozen.write_bytes(frozen.read_bytes()[:-3])
    reopened = Index(tmp_path / "index.lmdb", log_path=tmp_path / LOG_NAME)
    assert [reopened.has(sha) for sha in SHAS[:3]] == [True, False, False]
    reopened.close()


async def test_the_axon_syncs_within_its_interval(tmp_path: Path) -> None:
    """A small put is visible at once, not durable, and durable once the
    interval has passed (not before it)."""
    async with Axon.open(tmp_path / "store", sync_interval=0.2) as axon:
        started = trio.current_time()
        _, sha = await axon.put(b"small")
        assert await axon.has(sha)
        index = axon.store.index
        assert index.deferred() == 1 and index.syncs == 0
        with trio.fail_after(10):  # the interval, and a loaded machine's delay
            await axon.wait_synced()
        assert trio.current_time() - started >= 0.2
        assert index.deferred() == 0 and index.syncs == 1
        # A large blob is durable when its call returns, and so is every small one before it.
        await axon.put(b"more")
        assert index.deferred() == 1
        await axon.put(os.urandom(JOURNAL_MAX + 1))
        assert index.deferred() == 0 and index.syncs == 2
        await axon.put(b"last")
        assert await axon.sync() == 1 and index.deferred() == 0


async def test_a_store_without_an_interval_defers_nothing(tmp_path: Path) -> None:
    async with Axon.open(tmp_path / "store") as axon:
        await axon.put(b"small")
        assert axon.store.index.deferred() == 0
        assert await axon.sync() == 0
    assert not (tmp_path / "store" / LOG_NAME).exists()
