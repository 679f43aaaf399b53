"""/incoming: commit on close with real tools, errors, kills, retention."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from helpers.daemon import MakeMount, MountDaemon
from helpers.fuse import wait_until
from helpers.hashes import sha_hex

from axonfs.incoming import MEMORY_SPOOL_MAX
from mount.storeapi import get_blob, put_blobs


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=check, timeout=120
    )


def blob_count(mounted: MountDaemon) -> int:
    st = os.statvfs(mounted.mnt)
    return st.f_files - st.f_ffree


def spools(mounted: MountDaemon) -> list[Path]:
    return list((mounted.store / "tmp").iterdir())


def test_cp_then_cat_by_hash_always_works(mounted: MountDaemon, tmp_path: Path) -> None:
    for i in range(20):
        source = tmp_path / f"src{i}"
        source.write_bytes(os.urandom(1000 * i + 1))
        sha = sha_hex(source.read_bytes())
        result = sh(
            f"cp {source} {mounted.mnt}/incoming/ && cat {mounted.mnt}/by-sha256/{sha} | sha256sum"
        )
        assert result.stdout.split()[0] == sha
        entry = mounted.path("incoming", source.name)
        assert os.getxattr(entry, "user.axonfs.sha256").decode() == sha
        assert entry.read_bytes() == source.read_bytes()
        blob = mounted.path("by-sha256", sha)
        assert os.path.samefile(entry, blob)  # a hard link to its blob
        assert os.stat(entry).st_nlink == os.stat(blob).st_nlink == 2


def test_written_through_the_mount_read_back_through_the_api(mounted: MountDaemon) -> None:
    data = os.urandom(5 << 20)
    mounted.path("incoming", "big").write_bytes(data)
    mounted.umount()
    assert get_blob(mounted, hashlib.sha256(data).digest()) == data


def test_cp_r_find_and_rsync(mounted: MountDaemon, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for i in range(30):
        path = tree / f"d{i % 4}" / f"sub{i % 3}" / f"file{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(i * 700))
    sh(f"cp -r {tree} {mounted.mnt}/incoming/copy")
    sh(f"diff -r {tree} {mounted.mnt}/incoming/copy")
    found = sh(f"cd {mounted.mnt}/incoming/copy && find . -type f | sort").stdout.split()
    assert found == sh(f"cd {tree} && find . -type f | sort").stdout.split()
    for name in found:
        xattr = os.getxattr(mounted.path("incoming", "copy", name), "user.axonfs.sha256")
        assert xattr.decode() == sha_hex((tree / name).read_bytes())
    sh(f"rsync -a {tree}/ {mounted.mnt}/incoming/synced/")
    sh(f"diff -r {tree} {mounted.mnt}/incoming/synced")
    again = sh(f"rsync -a --itemize-changes {tree}/ {mounted.mnt}/incoming/synced/").stdout
    assert ">f" not in again  # nothing re-sent: sizes and mtimes were kept
    # and no mode to set again: a committed entry keeps the mode rsync gave it
    assert not [line for line in again.splitlines() if line[5:6] == "p"], again
    assert not spools(mounted)


def test_dd_redirection_truncate_and_random_writes(mounted: MountDaemon) -> None:
    incoming = mounted.path("incoming")
    sh(f"dd if=/dev/zero of={incoming}/dd bs=1M count=3 status=none")
    sh(f"echo hello > {incoming}/echo")
    sh(f"truncate -s 1000 {incoming}/trunc")
    assert (incoming / "dd").read_bytes() == bytes(3 << 20)
    assert (incoming / "echo").read_bytes() == b"hello\n"
    assert mounted.path("by-sha256", sha_hex(bytes(1000))).stat().st_size == 1000
    fd = os.open(incoming / "random", os.O_WRONLY | os.O_CREAT, 0o644)
    pieces = [os.urandom(70_000) for _ in range(8)]
    for i in reversed(range(8)):
        os.pwrite(fd, pieces[i], i * 70_000)
    os.pwrite(fd, b"XY", 5)
    os.close(fd)
    expected = bytearray(b"".join(pieces))
    expected[5:7] = b"XY"
    assert mounted.path("by-sha256", sha_hex(bytes(expected))).read_bytes() == expected


def test_small_writes_across_the_in_memory_limit(mounted: MountDaemon, tmp_path: Path) -> None:
    """Uploads start in memory and move to a spool file past MEMORY_SPOOL_MAX."""
    incoming = mounted.path("incoming")
    for size in (MEMORY_SPOOL_MAX - 1, MEMORY_SPOOL_MAX, MEMORY_SPOOL_MAX + 1, 40 * 4096 + 17):
        source = tmp_path / f"s{size}"
        source.write_bytes(os.urandom(size))
        sh(f"dd if={source} of={incoming}/s{size} bs=4k status=none")
        blob = mounted.path("by-sha256", sha_hex(source.read_bytes()))
        assert blob.read_bytes() == source.read_bytes()
    assert not spools(mounted)


def test_mv_into_incoming_and_within(mounted: MountDaemon, tmp_path: Path) -> None:
    source = tmp_path / "moved"
    source.write_bytes(b"moved in")
    sh(f"mv {source} {mounted.mnt}/incoming/")
    assert not source.exists()
    assert mounted.path("by-sha256", sha_hex(b"moved in")).exists()
    sh(
        f"mkdir {mounted.mnt}/incoming/dir && mv {mounted.mnt}/incoming/moved "
        f"{mounted.mnt}/incoming/dir/renamed"
    )
    assert mounted.path("incoming", "dir", "renamed").read_bytes() == b"moved in"
    assert os.listdir(mounted.path("incoming")) == ["dir"]


def test_same_content_twice_is_stored_once(mounted: MountDaemon) -> None:
    mounted.path("incoming", "a").write_bytes(b"same")
    mounted.path("incoming", "b").write_bytes(b"same")
    mounted.path("incoming", "empty").write_bytes(b"")
    assert blob_count(mounted) == 2
    assert os.listdir(mounted.path("by-sha256")).count(sha_hex(b"same")) == 1


def test_removing_a_committed_entry_keeps_its_blob(mounted: MountDaemon) -> None:
    entry = mounted.path("incoming", "f")
    entry.write_bytes(b"content")
    os.unlink(entry)
    assert not entry.exists()
    assert mounted.path("by-sha256", sha_hex(b"content")).exists()


def test_a_descriptor_still_writing_after_a_commit_commits_again(mounted: MountDaemon) -> None:
    # The subshell's exit closes its copy of fd 3 (a FLUSH that commits "a\n");
    # the shell then writes again through the same open file.
    path = mounted.path("incoming", "f")
    sh(f"exec 3>{path}; (echo a >&3); echo b >&3; exec 3>&-")
    assert path.read_bytes() == b"a\nb\n"
    assert os.getxattr(path, "user.axonfs.sha256").decode() == sha_hex(b"a\nb\n")


def test_commit_errors_reach_close_and_leave_nothing(make_mount: MakeMount, tmp_path: Path) -> None:
    mounted = make_mount("--max-count", "1")
    (tmp_path / "one").write_bytes(b"one")
    (tmp_path / "two").write_bytes(b"two" * 100_000)
    sh(f"cp {tmp_path}/one {mounted.mnt}/incoming/")
    result = sh(f"cp {tmp_path}/two {mounted.mnt}/incoming/", check=False)
    assert result.returncode != 0 and "No space left on device" in result.stderr
    assert os.listdir(mounted.path("incoming")) == ["one"]
    assert blob_count(mounted) == 1
    assert wait_until(lambda: not spools(mounted))


WRITER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * 100000)
print("started", flush=True)
while True:
    os.write(fd, b"x" * 100000)
    time.sleep(0.01)
"""


def test_a_writer_killed_mid_copy_commits_nothing(mounted: MountDaemon) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(mounted.path("incoming", "k"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "started\n"
        assert spools(mounted)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    assert wait_until(lambda: not spools(mounted))
    assert os.listdir(mounted.path("incoming")) == []
    assert os.listdir(mounted.path("by-sha256")) == []
    assert blob_count(mounted) == 0


def test_two_writers_and_four_readers_at_once(make_mount: MakeMount, tmp_path: Path) -> None:
    mounted = make_mount(mount=False)
    stored = [os.urandom(4 << 20) for _ in range(4)]
    shas = put_blobs(mounted, stored)
    mounted.start()
    sources = []
    for i in range(2):
        sources.append(tmp_path / f"w{i}")
        sources[-1].write_bytes(os.urandom(16 << 20))
    errors: list[str] = []

    def writer(i: int) -> None:
        result = sh(f"cp {sources[i]} {mounted.mnt}/incoming/w{i}", check=False)
        if result.returncode:
            errors.append(result.stderr)

    def reader(i: int) -> None:
        for _ in range(3):
            out = sh(f"sha256sum {mounted.mnt}/by-sha256/{shas[i].hex()}").stdout
            if out.split()[0] != shas[i].hex():
                errors.append(f"reader {i} read wrong bytes")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for source in sources:
        assert sh(
            f"sha256sum < {mounted.mnt}/by-sha256/{sha_hex(source.read_bytes())}"
        ).stdout.split()[0] == sha_hex(source.read_bytes())


def test_retention(make_mount: MakeMount) -> None:
    short = make_mount("--incoming-retention", "0.5", name="short")
    short.path("incoming", "f").write_bytes(b"short")
    assert short.path("incoming", "f").exists()
    assert wait_until(lambda: os.listdir(short.path("incoming")) == [], timeout=5)
    assert short.path("by-sha256", sha_hex(b"short")).exists()
    at_once = make_mount("--incoming-retention", "0", name="zero")
    sh(
        f"cp /etc/hostname {at_once.mnt}/incoming/h && "
        f"cat {at_once.mnt}/by-sha256/{sha_hex(Path('/etc/hostname').read_bytes())}"
    )
    assert os.listdir(at_once.path("incoming")) == []
