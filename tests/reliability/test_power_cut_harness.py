"""The power-cut harness itself: it loses what a real power cut may lose, keeps
what was synced, and so fails a test whose sync is skipped.

Each property is checked both ways (the sync done, the sync skipped): the
skipped variant is the proof that a missing sync in the product would show.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from helpers.powercut import PowerCutDisk

from axonfs.fsutil import syncfs


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[PowerCutDisk]:
    with PowerCutDisk(tmp_path / "backing", tmp_path / "mnt") as harness:
        harness.start()
        yield harness


def write(path: Path, data: bytes, sync: bool = False, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restart(disk: PowerCutDisk) -> Path:
    disk.power_cut()
    return disk.start()


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "sync-skipped"])
def test_new_file_survives_only_if_file_and_directory_were_synced(
    disk: PowerCutDisk, synced: bool
) -> None:
    mnt = disk.mountpoint
    write(mnt / "f", b"payload", sync=synced)
    if synced:
        sync_dir(mnt)
    mnt = restart(disk)
    assert (mnt / "f").exists() == synced
    if synced:
        assert (mnt / "f").read_bytes() == b"payload"


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "sync-skipped"])
def test_overwrite_keeps_the_last_synced_data(disk: PowerCutDisk, synced: bool) -> None:
    mnt = disk.mountpoint
    write(mnt / "f", b"old data", sync=True)
    sync_dir(mnt)
    write(mnt / "f", b"new", sync=synced)
    assert (mnt / "f").read_bytes() == b"new"  # the live view shows it either way
    mnt = restart(disk)
    assert (mnt / "f").read_bytes() == (b"new" if synced else b"old data")


def test_entry_synced_without_its_data_comes_back_empty(disk: PowerCutDisk) -> None:
    """The zero-length file: the directory fsync made the name durable, nothing
    made the data durable."""
    write(disk.mountpoint / "f", b"never fsynced")
    sync_dir(disk.mountpoint)
    mnt = restart(disk)
    assert (mnt / "f").read_bytes() == b""


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "sync-skipped"])
def test_rename_needs_a_directory_fsync(disk: PowerCutDisk, synced: bool) -> None:
    mnt = disk.mountpoint
    os.mkdir(mnt / "a")
    os.mkdir(mnt / "b")
    sync_dir(mnt)
    write(mnt / "a" / "tmp", b"blob", sync=True)
    sync_dir(mnt / "a")
    os.rename(mnt / "a" / "tmp", mnt / "b" / "final")
    if synced:
        sync_dir(mnt / "b")
        sync_dir(mnt / "a")
    mnt = restart(disk)
    assert (mnt / "b" / "final").exists() == synced
    assert (mnt / "a" / "tmp").exists() != synced
    assert disk.durable_names() >= {"a", "b"}


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "sync-skipped"])
def test_unlink_and_mkdir_need_a_directory_fsync(disk: PowerCutDisk, synced: bool) -> None:
    mnt = disk.mountpoint
    write(mnt / "gone", b"x", sync=True)
    sync_dir(mnt)
    os.unlink(mnt / "gone")
    os.mkdir(mnt / "new-dir")
    if synced:
        sync_dir(mnt)
    mnt = restart(disk)
    assert (mnt / "gone").exists() != synced
    assert (mnt / "new-dir").is_dir() == synced


def test_hard_link_is_one_inode_after_the_crash(disk: PowerCutDisk) -> None:
    mnt = disk.mountpoint
    write(mnt / "one", b"shared", sync=True)
    os.link(mnt / "one", mnt / "two")
    sync_dir(mnt)
    mnt = restart(disk)
    assert (mnt / "one").stat().st_ino == (mnt / "two").stat().st_ino
    assert (mnt / "two").read_bytes() == b"shared"


@pytest.mark.parametrize("flags", [os.O_DSYNC, os.O_SYNC, 0], ids=["O_DSYNC", "O_SYNC", "none"])
def test_synchronous_writes_are_durable(disk: PowerCutDisk, flags: int) -> None:
    """LMDB writes its meta page through an O_DSYNC descriptor."""
    mnt = disk.mountpoint
    write(mnt / "f", b"", sync=True)
    sync_dir(mnt)
    fd = os.open(mnt / "f", os.O_WRONLY | flags)
    os.pwrite(fd, b"meta page", 4096)
    os.close(fd)
    mnt = restart(disk)
    expected = b"\0" * 4096 + b"meta page" if flags else b""
    assert (mnt / "f").read_bytes() == expected


@pytest.mark.parametrize("synced", [True, False], ids=["msync", "msync-skipped"])
def test_shared_mapping_is_durable_after_msync(disk: PowerCutDisk, synced: bool) -> None:
    """LMDB with ``writemap`` writes pages through a shared mapping and msyncs it."""
    mnt = disk.mountpoint
    fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 8192)
    os.fsync(fd)
    sync_dir(mnt)
    with mmap.mmap(fd, 8192) as mapping:
        mapping[4096:4101] = b"page!"
        if synced:
            mapping.flush()  # msync(MS_SYNC)
    os.close(fd)
    mnt = restart(disk)
    assert (mnt / "f").read_bytes()[4096:4101] == (b"page!" if synced else b"\0" * 5)


def test_syncfs_does_not_reach_a_fuse_file_system(disk: PowerCutDisk) -> None:
    """The kernel sends FUSE_SYNCFS to virtiofs only: on this (as on any) FUSE
    file system syncfs(2) returns 0 and makes nothing durable. Should a kernel
    ever pass it on, this fails and the harness must learn to handle it."""
    mnt = disk.mountpoint
    write(mnt / "f", b"data")
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    os.sync()  # nor sync(2)
    mnt = restart(disk)
    assert not (mnt / "f").exists()


def test_crash_at_a_sync_point_stops_before_that_sync(tmp_path: Path) -> None:
    with PowerCutDisk(tmp_path / "backing", tmp_path / "mnt") as disk:
        mnt = disk.start(crash_after_syncs=3)
        write(mnt / "f", b"one", sync=True)  # sync 1
        sync_dir(mnt)  # sync 2
        with pytest.raises(OSError):
            write(mnt / "f", b"two", sync=True)  # sync 3: the power goes out
        assert disk.wait_power_cut(timeout=10)
        mnt = disk.start()
        assert (mnt / "f").read_bytes() == b"one"
        assert disk.stop() == 0


@pytest.mark.parametrize(
    ("sync", "writemap"),
    [(True, False), (True, True), (False, False)],
    ids=["sync", "sync-writemap", "nosync"],
)
def test_lmdb_commit_is_durable_only_when_synced(
    disk: PowerCutDisk, sync: bool, writemap: bool
) -> None:
    """LMDB as axonfs opens it (``sync``, ``metasync``, no ``writemap``): a
    commit survives; the same commit without its syncs is lost, and the
    environment still opens (LMDB keeps its previous meta page)."""
    path = disk.mountpoint / "index.lmdb"
    env = lmdb.open(str(path), map_size=1 << 24, sync=True, metasync=True)
    with env.begin(write=True) as txn:
        txn.put(b"first", b"1")
    env.close()
    sync_dir(path)  # LMDB never syncs the directory its files are created in
    sync_dir(disk.mountpoint)
    env = lmdb.open(str(path), map_size=1 << 24, sync=sync, metasync=sync, writemap=writemap)
    with env.begin(write=True) as txn:
        txn.put(b"second", b"2" * 10_000)
    disk.power_cut()  # with the environment still open, like a machine losing power
    env.close()
    disk.start()
    env = lmdb.open(str(path), map_size=1 << 24)
    try:
        with env.begin() as txn:
            assert txn.get(b"first") == b"1"
            assert (txn.get(b"second") is not None) == sync
    finally:
        env.close()


@pytest.mark.parametrize("keep", [1.0, 0.0], ids=["kept", "dropped"])
def test_unsynced_writes_may_survive_when_asked(disk: PowerCutDisk, keep: float) -> None:
    """``keep_unsynced``: unsynced pieces of a durable file survive with that
    chance; a file whose name was never synced stays lost whatever it is."""
    mnt = disk.mountpoint
    write(mnt / "f", b"a" * 8192, sync=True)
    sync_dir(mnt)
    fd = os.open(mnt / "f", os.O_WRONLY)
    os.pwrite(fd, b"b" * 4096, 4096)
    os.pwrite(fd, b"c" * 4096, 8192)
    os.close(fd)
    write(mnt / "unnamed", b"x", sync=True)
    disk.power_cut()
    mnt = disk.start(keep_unsynced=keep, seed=7)
    expected = b"a" * 4096 + b"b" * 4096 + b"c" * 4096 if keep else b"a" * 8192
    assert (mnt / "f").read_bytes() == expected
    assert not (mnt / "unnamed").exists()
    mnt = restart(disk)  # what reached the disk stays there
    assert (mnt / "f").read_bytes() == expected
