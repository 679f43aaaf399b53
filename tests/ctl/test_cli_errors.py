"""What a user sees when something is wrong: one line, a documented exit status.

Every test drives the ``axonfs`` command as a subprocess, on real filesystems:
a tmpfs for a foreign mount, a read-only bind mount for a read-only store, a
mount namespace in which ``/dev/fuse`` cannot be opened.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from helpers.cli import AXONFS, TIMEOUT, run_axonfs, run_axonfs_bytes
from helpers.daemon import MountDaemon
from helpers.fuse import fuse_available, pid_gone, wait_until
from helpers.users import as_user

from axonfs.axon import Axon
from axonfs.errors import AxonError
from axonfs.mountinfo import find_mount

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts filesystems (needs root)")


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (no traceback, no log lines)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("axonfs: "), result.stderr
    return lines[0]


@contextmanager
def mounted(*mount_args: str, target: Path) -> Iterator[Path]:
    """``mount ARGS TARGET``, unmounted (lazily if busy) on the way out."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *mount_args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


# -- umount ------------------------------------------------------------------------------


@needs_root
def test_umount_leaves_other_filesystems_alone(tmp_path: Path) -> None:
    with mounted("-t", "tmpfs", "tmpfs", target=tmp_path / "tmpfs") as target:
        (target / "kept").write_text("still here")
        result = run_axonfs("umount", target)
        assert result.returncode == 1
        assert "not an axonfs mount" in one_line(result)
        assert find_mount(target) is not None
        assert (target / "kept").read_text() == "still here"


# -- starting the daemon -----------------------------------------------------------------


def test_daemon_starts_from_a_directory_holding_an_axonfs_folder(tmp_path: Path) -> None:
    """The detached daemon imports the installed package, not ./axonfs."""
    work = tmp_path / "work"
    (work / "axonfs").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (work / "axonfs" / name).write_text("raise ImportError('the decoy was imported')\n")
    store = tmp_path / "store"
    # The parent is started so that it cannot import the decoy itself: what is
    # under test is how it starts the daemon.
    parent = [sys.executable, "-P", "-m", "axonfs"]
    try:
        started = subprocess.run(
            [*parent, "serve", "--store", str(store)],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert started.returncode == 0, started.stderr + (store / "axonfs.log").read_text()
    finally:
        run_axonfs("stop", "--store", store)
    assert "decoy" not in (store / "axonfs.log").read_text()


# -- stores that cannot be used -----------------------------------------------------------


@pytest.fixture
def filled_store(tmp_path: Path) -> Path:
    """A store holding one blob, closed."""
    store = tmp_path / "store"

    async def fill() -> None:
        async with Axon.open(store) as axon:
            await axon.put(b"a blob to check")

    trio.run(fill)
    return store


@pytest.mark.parametrize("command", ["fsck", "recover"])
def test_checks_refuse_a_directory_that_is_not_a_store(tmp_path: Path, command: str) -> None:
    typo = tmp_path / "stroe"
    result = run_axonfs(command, "--store", typo)
    assert result.returncode == 3
    assert "no store at" in one_line(result)
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_axonfs(command, "--store", empty)
    assert result.returncode == 3
    assert "is not an axonfs store" in one_line(result)
    assert list(empty.iterdir()) == []


@needs_root
def test_read_only_store(filled_store: Path, tmp_path: Path) -> None:
    """fsck checks it without writing; what must write says so in one line."""
    with mounted("--bind", str(filled_store), target=filled_store):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(filled_store)], check=True)
        checked = run_axonfs("fsck", "--store", filled_store)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.splitlines() == [
            "checked 1 indexed blob (read-only: the store cannot be written)",
            "no problems found",
        ]
        assert checked.stderr == ""
        for args in (("fsck", "--repair"), ("recover",), ("serve",), ("mount", tmp_path / "mnt")):
            (tmp_path / "mnt").mkdir(exist_ok=True)
            result = run_axonfs(*args, "--store", filled_store)
            assert result.returncode == 3, (args, result.stderr)
            assert "read-only filesystem" in one_line(result), args


@pytest.mark.parametrize("command", ["serve", "mount"])
def test_store_that_cannot_be_created(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "mnt").mkdir()
    mountpoint = [tmp_path / "mnt"] if command == "mount" else []
    result = run_axonfs(command, "--store", tmp_path / "a-file" / "store", *mountpoint)
    assert result.returncode == 3
    assert "cannot create the store" in one_line(result)
    assert "Not a directory" in result.stderr


@needs_root
def test_mount_without_a_usable_dev_fuse(tmp_path: Path) -> None:
    """/dev/fuse made unopenable (nodev) in a private mount namespace."""
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    script = (
        'mount --bind /dev/fuse /dev/fuse && mount -o remount,bind,nodev /dev/fuse && exec "$@"'
    )
    try:
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                *AXONFS,
                "mount",
                "--store",
                str(store),
                str(mnt),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        run_axonfs("stop", "--store", store)  # had it mounted after all, in that namespace
    assert result.returncode == 4, result.stderr
    line = one_line(result)
    assert "cannot open /dev/fuse" in line and "Permission denied" in line


# -- ctl -m: which mount, and why it cannot be reached -----------------------------------


needs_fuse = pytest.mark.skipif(
    not (os.geteuid() == 0 and fuse_available()),
    reason="mounts through the kernel (needs root and /dev/fuse)",
)


@pytest.fixture
def mount_in_open_directory() -> Iterator[MountDaemon]:
    """A mount whose parents every user may traverse (pytest's own temporary
    directories are private, which would deny another user before the mount does)."""
    root = Path(tempfile.mkdtemp(prefix="axonfs-ctl-m-"))
    root.chmod(0o755)
    mount = MountDaemon.under(root)
    try:
        mount.start()
        yield mount
    finally:
        try:
            mount.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@needs_fuse
def test_ctl_m_finds_the_mount_holding_a_subdirectory(
    mount_in_open_directory: MountDaemon, tmp_path: Path
) -> None:
    mount = mount_in_open_directory
    for path in (mount.mnt, mount.path("by-sha256"), mount.path("incoming")):
        result = run_axonfs("ctl", "-m", path, "metrics")
        assert result.returncode == 0, result.stderr
        assert "file:count 0" in result.stdout
    elsewhere = run_axonfs("ctl", "-m", tmp_path, "metrics")
    assert elsewhere.returncode == 3
    assert "is not in an axonfs mount" in one_line(elsewhere)


@needs_fuse
def test_ctl_m_on_another_users_private_mount(mount_in_open_directory: MountDaemon) -> None:
    from axonfs.client import mount_socket

    def reach() -> str:
        try:
            return f"reached {mount_socket(mount_in_open_directory.mnt)}"
        except AxonError as exc:
            return f"{type(exc).__name__}: {exc}"

    said = as_user(65534, 65534, reach)
    assert said.startswith("AccessDenied: access to the axonfs mount"), said
    assert "--allow-other" in said


@needs_fuse
def test_ctl_m_on_a_mount_whose_daemon_died(mount_in_open_directory: MountDaemon) -> None:
    mount = mount_in_open_directory
    assert mount.pid is not None
    os.kill(mount.pid, signal.SIGKILL)
    assert mount.pid is not None
    assert wait_until(functools.partial(pid_gone, mount.pid))
    result = run_axonfs("ctl", "-m", mount.path("by-sha256"), "metrics")
    assert result.returncode == 3
    assert f"'axonfs umount {mount.mnt}'" in one_line(result)
    # ... and what it says works.
    assert run_axonfs("umount", mount.mnt).returncode == 0
    assert find_mount(mount.mnt) is None


@needs_fuse
def test_hex_case_rule(mount_in_open_directory: MountDaemon) -> None:
    """Hashes are read in either case on the command line; a blob has one name
    in the mount, the lower-case one that listings show."""
    mount = mount_in_open_directory
    put = run_axonfs_bytes("ctl", "-m", mount.mnt, "put", stdin=b"case", check=True)
    sha = put.stdout.decode().split()[1]
    assert sha == sha.lower()
    has = run_axonfs("ctl", "-m", mount.mnt, "has", sha.upper())
    assert has.returncode == 0 and has.stdout == f"{sha} present\n"
    assert os.listdir(mount.path("by-sha256")) == [sha]
    assert mount.path("by-sha256", sha).read_bytes() == b"case"
    assert not mount.path("by-sha256", sha.upper()).exists()


# -- options checked before anything is created -----------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ("--metrics-listen", "no-port"),
        ("--metrics-listen", "0.0.0.0:9567"),
        ("--telepath-listen", "bogus://x"),
        ("--ctl-group", "no-such-group-here"),
    ],
)
def test_bad_daemon_options_create_no_store(tmp_path: Path, option: tuple[str, str]) -> None:
    store = tmp_path / "store"
    result = run_axonfs("serve", "--store", store, *option)
    assert result.returncode == 2
    one_line(result)
    assert not store.exists()


@pytest.mark.parametrize("command", ["stop", "fsck", "recover"])
def test_help_of_commands_that_never_create_a_store(command: str) -> None:
    text = run_axonfs(command, "--help").stdout
    assert "created on first use" not in text
    assert "must exist" in text
