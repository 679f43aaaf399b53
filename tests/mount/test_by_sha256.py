"""/by-sha256: reading, attributes, refusals, deletion, xattrs, listing."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from helpers.daemon import MakeMount, MountDaemon

from axonfs.inodes import BLOB_BASE
from mount.storeapi import has, put_blobs

WithBlobs = tuple[MountDaemon, list[bytes], list[bytes]]
"""A mounted store, the blobs put in it, and their sha256 digests."""


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)


@pytest.fixture
def with_blobs(make_mount: MakeMount) -> tuple[MountDaemon, list[bytes], list[bytes]]:
    mounted = make_mount(mount=False)
    data = [os.urandom(n) for n in (0, 1, 4096, 3 << 20)]
    shas = put_blobs(mounted, data)
    mounted.start()
    return mounted, data, shas


def test_blobs_put_through_the_api_read_byte_exact(with_blobs: WithBlobs) -> None:
    mounted, data, shas = with_blobs
    for blob, sha in zip(data, shas, strict=True):
        path = mounted.path("by-sha256", sha.hex())
        assert path.read_bytes() == blob
        assert run("sha256sum", path).stdout.split()[0] == sha.hex()
        dd = subprocess.run(["dd", f"if={path}", "bs=1M", "status=none"], capture_output=True)
        assert dd.stdout == blob


def test_attributes(with_blobs: WithBlobs) -> None:
    mounted, data, shas = with_blobs
    inodes = []
    for blob, sha in zip(data, shas, strict=True):
        st = os.stat(mounted.path("by-sha256", sha.hex()))
        assert st.st_mode == 0o100444 and st.st_size == len(blob)
        assert abs(st.st_mtime - os.path.getmtime(mounted.store / "index.lmdb")) < 600
        inodes.append(st.st_ino)
    assert inodes == [BLOB_BASE + i for i in range(len(data))]
    out = run("stat", "-c", "%s %a %F", mounted.path("by-sha256", shas[3].hex())).stdout
    assert out.strip() == f"{3 << 20} 444 regular file"
    mounted.umount()
    mounted.start()  # inode numbers are stable across mounts
    assert os.stat(mounted.path("by-sha256", shas[2].hex())).st_ino == inodes[2]


@pytest.mark.parametrize("name", ["nothex", "A" * 64, "0" * 63, "0" * 64, "g" * 64])
def test_bad_or_missing_names_are_enoent(mounted: MountDaemon, name: str) -> None:
    with pytest.raises(FileNotFoundError):
        os.stat(mounted.path("by-sha256", name))


def test_a_blob_arriving_later_is_found(mounted: MountDaemon) -> None:
    sha = hashlib.sha256(b"later").hexdigest()
    assert not mounted.path("by-sha256", sha).exists()  # not cached as absent
    mounted.path("incoming", "later").write_bytes(b"later")
    assert mounted.path("by-sha256", sha).read_bytes() == b"later"


def test_writes_and_metadata_changes_are_refused(with_blobs: WithBlobs) -> None:
    mounted, _, shas = with_blobs
    path = mounted.path("by-sha256", shas[1].hex())
    with pytest.raises(OSError) as info:
        open(path, "r+b").close()
    assert info.value.errno == errno.EROFS
    for argv, message in [
        (["chmod", "644"], "not permitted"),
        (["touch"], "Read-only"),
        (["rm", "-f"], "not permitted"),
        (["truncate", "-s", "0"], ""),
    ]:
        result = run(*argv, path)
        assert result.returncode != 0 and message in result.stderr, argv
    assert run("mv", path, mounted.path("by-sha256", "x")).returncode != 0
    assert run("mv", path, mounted.path("incoming", "x")).returncode != 0
    assert run("sh", "-c", f"echo x > {mounted.path('by-sha256', 'new')}").returncode != 0
    assert run("mkdir", mounted.path("by-sha256", "d")).returncode != 0
    assert path.exists()


def test_rm_deletes_with_allow_delete(make_mount: MakeMount) -> None:
    mounted = make_mount("--allow-delete", mount=False)
    shas = put_blobs(mounted, [b"one", b"two"])
    mounted.start()
    assert run("rm", mounted.path("by-sha256", shas[0].hex())).returncode == 0
    assert sorted(os.listdir(mounted.path("by-sha256"))) == [shas[1].hex()]
    assert not mounted.path("by-sha256", shas[0].hex()).exists()
    mounted.umount()
    assert not has(mounted, shas[0]) and has(mounted, shas[1])


def test_xattrs(with_blobs: WithBlobs) -> None:
    mounted, data, shas = with_blobs
    path = mounted.path("by-sha256", shas[2].hex())
    result = run("getfattr", "-d", "--absolute-names", path).stdout
    for name in ("md5", "sha1", "sha256", "sha512"):
        expected = hashlib.new(name, data[2]).hexdigest()
        assert f'user.axonfs.{name}="{expected}"' in result
        assert os.getxattr(path, f"user.axonfs.{name}").decode() == expected
    added = os.getxattr(path, "user.axonfs.added").decode()
    assert len(added) == 24 and added.endswith("Z") and added[10] == "T"
    assert sorted(os.listxattr(path)) == sorted(
        f"user.axonfs.{n}" for n in ("md5", "sha1", "sha256", "sha512", "added")
    )
    with pytest.raises(OSError) as info:
        os.getxattr(path, "user.other")
    assert info.value.errno == errno.ENODATA
    with pytest.raises(OSError):
        os.setxattr(path, "user.axonfs.md5", b"x")


def test_listing_streams_with_stable_offsets(make_mount: MakeMount) -> None:
    mounted = make_mount("--allow-delete", mount=False)
    blobs = [b"blob %d" % i for i in range(3000)]
    shas = put_blobs(mounted, blobs)
    mounted.start()
    directory = mounted.path("by-sha256")
    listed = run("ls", "-f", directory).stdout.split()
    assert sorted(listed) == sorted(s.hex() for s in shas)
    sizes = {int(line.split()[4]) for line in run("ls", "-l", directory).stdout.splitlines()[1:]}
    assert sizes == {len(blob) for blob in blobs}
    found = run("find", directory, "-type", "f").stdout.split()
    assert len(found) == 3000
    # Deleting while a listing is in progress neither repeats nor skips survivors.
    with os.scandir(directory) as entries:
        seen = [next(entries).name for _ in range(100)]
        for sha in shas[1000:1100]:
            os.unlink(directory / sha.hex())
        seen += [entry.name for entry in entries]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {s.hex() for s in shas[:1000] + shas[1100:]}


def test_statfs(with_blobs: WithBlobs) -> None:
    mounted, data, _ = with_blobs
    st = os.statvfs(mounted.mnt)
    assert st.f_files - st.f_ffree == len(data)
    if not mounted.backend_options:  # local blobs: free space is the store disk's
        disk = os.statvfs(mounted.store)
        assert abs(st.f_bavail * st.f_frsize - disk.f_bavail * disk.f_frsize) < 1 << 26
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert used == pytest.approx(sum(map(len, data)), abs=8192)
    df = run("df", "-B1", mounted.mnt).stdout.splitlines()[1].split()
    assert df[0] == "axonfs"
