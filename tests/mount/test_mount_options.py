"""Mount options as FUSE tools take them, sizes with units, and mount(8)'s helper.

``-o`` options, ``--read-only``, the refusal of a non-empty mount point,
``--max-bytes 1G`` as ``df`` shows it, and ``mount -t fuse.axonfs`` / an fstab
line through ``mount.fuse.axonfs``. mount(8) runs helpers from /sbin only, so
those tests run in a private mount namespace where an overlay adds this venv's
helper to /usr/sbin: nothing of the machine's /sbin changes, and whatever is
mounted there vanishes with the namespace.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import run_axonfs
from helpers.daemon import MountDaemon
from helpers.fuse import cleanup, pid_alive
from helpers.namespace import overlays_available, run_overlaid

HELPER = Path(sys.executable).with_name("mount.fuse.axonfs")
AXONFS_BIN = Path(sys.executable).with_name("axonfs")
MiB = 1 << 20


def df_bytes(path: Path) -> tuple[int, int, int]:
    """``df -B1``'s size, used and available columns for *path*."""
    line = subprocess.run(
        ["df", "-B1", "--output=size,used,avail", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1]
    size, used, avail = map(int, line.split())
    return size, used, avail


def mountinfo(path: Path) -> tuple[set[str], set[str]]:
    """The per-mount options and the superblock options of the mount on *path*."""
    with open("/proc/self/mountinfo") as file:
        for line in file:
            head, _, tail = line.partition(" - ")
            if head.split()[4] == str(path):
                return set(head.split()[5].split(",")), set(tail.split()[2].split(","))
    raise AssertionError(f"{path} is not mounted")


# -- sizes --------------------------------------------------------------------------


def test_max_bytes_takes_units_and_df_shows_it(local_mount: MountDaemon) -> None:
    local_mount.start("--max-bytes", "1G")
    size, used, avail = df_bytes(local_mount.mnt)
    assert size == 1 << 30
    (local_mount.mnt / "incoming" / "a").write_bytes(b"x" * MiB)
    size, used, avail = df_bytes(local_mount.mnt)
    assert (size, used) == (1 << 30, MiB)
    assert avail == (1 << 30) - MiB


def test_one_blob_cannot_overshoot_max_bytes(local_mount: MountDaemon, tmp_path: Path) -> None:
    local_mount.start("-o", "max-bytes=3M")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(os.urandom(2 * MiB))
    second.write_bytes(os.urandom(2 * MiB))
    assert subprocess.run(["cp", first, local_mount.mnt / "incoming"]).returncode == 0
    refused = subprocess.run(
        ["cp", second, local_mount.mnt / "incoming"], capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "No space left on device" in refused.stderr
    assert df_bytes(local_mount.mnt)[:2] == (3 * MiB, 2 * MiB)
    assert len(os.listdir(local_mount.mnt / "by-sha256")) == 1


def test_a_bad_size_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    result = run_axonfs(
        "mount", "--store", tmp_path / "s", "--max-bytes", "lots", tmp_path / "mnt", check=False
    )
    assert result.returncode == 2
    assert "not a byte count: 'lots'" in result.stderr


# -- -o, --read-only, non-empty mount points ------------------------------------------


def test_fuse_style_options(local_mount: MountDaemon) -> None:
    local_mount.start(
        "-o",
        "ro,allow_other,default_permissions,nosuid,noatime,noauto,x-systemd.automount,allow_delete",
    )
    per_mount, superblock = mountinfo(local_mount.mnt)
    assert {"ro", "nosuid", "noatime"} <= per_mount
    assert {"allow_other", "default_permissions"} <= superblock
    with pytest.raises(OSError) as caught:
        (local_mount.mnt / "incoming" / "f").write_bytes(b"data")
    assert caught.value.errno == errno.EROFS


def test_read_only(local_mount: MountDaemon) -> None:
    local_mount.start("--read-only")
    assert "ro" in mountinfo(local_mount.mnt)[0]
    with pytest.raises(OSError) as caught:
        (local_mount.mnt / "incoming" / "f").write_bytes(b"data")
    assert caught.value.errno == errno.EROFS
    assert sorted(os.listdir(local_mount.mnt / "by-sha256")) == []


@pytest.mark.parametrize(
    "option", ["-o bogus", "-o max-bytes", "-o allow_other=1", "-o foreground", "-o config=x.toml"]
)
def test_bad_options_are_usage_errors(tmp_path: Path, option: str) -> None:
    (tmp_path / "mnt").mkdir()
    result = run_axonfs(
        "mount", "--store", tmp_path / "s", *option.split(), tmp_path / "mnt", check=False
    )
    assert result.returncode == 2, result
    assert f"-o {option.split()[1].split('=')[0]}: " in result.stderr.splitlines()[-1]
    assert not (tmp_path / "s").exists()


def test_a_non_empty_mount_point_is_refused(local_mount: MountDaemon) -> None:
    (local_mount.mnt / "mine").write_text("hidden if mounted over")
    result = run_axonfs("mount", "--store", local_mount.store, local_mount.mnt, check=False)
    assert result.returncode == 2
    assert (
        result.stderr == f"axonfs: {local_mount.mnt} is not empty; mount over it with "
        "--nonempty (or -o nonempty)\n"
    )
    assert not local_mount.store.exists()
    local_mount.start("-o", "nonempty")
    assert sorted(os.listdir(local_mount.mnt)) == [
        "by-sha256",
        "history",
        "history.log",
        "incoming",
    ]


# -- mount(8) and fstab ----------------------------------------------------------------


needs_namespace = pytest.mark.skipif(
    not overlays_available(), reason="needs root, unshare(1) and overlayfs"
)


def in_namespace(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run *script* (sh) in a private mount namespace whose /usr/sbin has our helper.

    The script's mounts are unmounted at its end, whatever happened; a daemon
    still alive afterwards is killed (its namespace goes with it).
    """
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "mount.fuse.axonfs").symlink_to(HELPER)
    try:
        return run_overlaid(
            {"/usr/sbin": sbin},
            f"trap 'fusermount3 -u -z {tmp_path}/mnt 2>/dev/null' EXIT\n{script}",
        )
    finally:
        lock = tmp_path / "store" / "axonfs.lock"
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit() and pid_alive(int(pid)):
            cleanup(tmp_path / "mnt", int(pid))


@needs_namespace
def test_mount_t_fuse_axonfs(tmp_path: Path) -> None:
    mnt, store = tmp_path / "mnt", tmp_path / "store"
    mnt.mkdir()
    result = in_namespace(
        tmp_path,
        f"""
mount -t fuse.axonfs {store} {mnt} -o ro,max-bytes=1G || exit 1
grep ' {mnt} ' /proc/self/mountinfo
df -B1 --output=size {mnt} | tail -1
{AXONFS_BIN} umount {mnt} || exit 2
""",
    )
    assert result.returncode == 0, result.stderr
    line, size = result.stdout.splitlines()
    assert " ro," in line and " - fuse.axonfs axonfs " in line
    assert int(size) == 1 << 30
    assert (store / "index.lmdb").is_dir()


@needs_namespace
def test_fstab_line(tmp_path: Path) -> None:
    mnt, store = tmp_path / "mnt", tmp_path / "store"
    mnt.mkdir()
    config = tmp_path / "axonfs.toml"
    config.write_text("allow-delete = true\nmax-bytes = '512M'\n")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"{store} {mnt} fuse.axonfs noauto,nofail,_netdev,allow_other,"
        f"config={config},x-systemd.mount-timeout=30 0 0\n"
    )
    result = in_namespace(
        tmp_path,
        f"""
mount --fstab {fstab} {mnt} || exit 1
grep ' {mnt} ' /proc/self/mountinfo
df -B1 --output=size {mnt} | tail -1
echo data > {mnt}/incoming/f && rm {mnt}/by-sha256/$(getfattr --only-values \
    -n user.axonfs.sha256 {mnt}/incoming/f) && echo deleted
{AXONFS_BIN} umount {mnt} || exit 2
""",
    )
    assert result.returncode == 0, result.stderr
    line, size, deleted = result.stdout.splitlines()
    assert "allow_other" in line
    assert int(size) == 512 * MiB
    assert deleted == "deleted"  # allow-delete came from the config file


def test_helper_fake_mount_does_nothing(tmp_path: Path) -> None:
    """mount -f: the helper exits 0 without mounting or creating the store."""
    (tmp_path / "mnt").mkdir()
    result = subprocess.run(
        [HELPER, tmp_path / "store", tmp_path / "mnt", "-f", "-o", "rw"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "store").exists()
