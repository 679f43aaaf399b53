"""mount / umount / serve: readiness, clean stops, crashes and refusals."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers.cli import AXONFS, run_axonfs
from helpers.daemon import MakeMount, MountDaemon
from helpers.fuse import is_mounted, pid_alive, pid_gone, wait_until

from axonfs.config import MOUNT_SOCKET_XATTR, control_socket


def test_mount_is_ready_when_the_command_returns(mounted: MountDaemon) -> None:
    assert is_mounted(mounted.mnt)
    assert sorted(os.listdir(mounted.mnt)) == ["by-sha256", "history", "history.log", "incoming"]
    socket_path = os.getxattr(mounted.mnt, MOUNT_SOCKET_XATTR).decode()
    assert socket_path == str(control_socket(mounted.store))
    assert Path(socket_path).exists()  # the control socket is up before mount returns
    assert "user.axonfs.socket" in os.listxattr(mounted.mnt)


def test_umount_returns_after_the_daemon_exited(mounted: MountDaemon) -> None:
    (mounted.path("incoming", "a")).write_bytes(b"a" * 100_000)
    pid = mounted.pid
    mounted.umount()
    assert pid is not None and not pid_alive(pid)
    assert not (mounted.store / "run" / "daemon.pid").exists()  # stopped cleanly
    fsck = run_axonfs("fsck", "--store", mounted.store, *mounted.backend_options, check=True)
    assert fsck.returncode == 0


def test_umount_refuses_while_a_file_is_open(mounted: MountDaemon) -> None:
    with open(mounted.path("history.log"), "rb"):
        result = run_axonfs("umount", mounted.mnt, check=False)
        assert result.returncode != 0 and "busy" in result.stderr
        assert is_mounted(mounted.mnt)
    mounted.umount()


def test_sigterm_and_sigint_unmount_cleanly(make_mount: MakeMount) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        mounted = make_mount(name=f"m{signum}")
        mounted.path("incoming", "f").write_bytes(b"x")
        assert mounted.pid is not None
        os.kill(mounted.pid, signum)
        assert wait_until(mounted.gone)
        assert not (mounted.store / "run" / "daemon.pid").exists()


def test_foreground_runs_in_place(tmp_path: Path) -> None:
    mnt, store = tmp_path / "mnt", tmp_path / "store"
    mnt.mkdir()
    daemon = subprocess.Popen(
        [*AXONFS, "mount", "--foreground", "--store", str(store), str(mnt)],
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: is_mounted(mnt) and (mnt / "incoming").exists())
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(timeout=20) == 0
        assert not is_mounted(mnt)
    finally:
        daemon.kill()
        daemon.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)


def test_second_daemon_on_the_same_store_is_refused(mounted: MountDaemon, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    result = run_axonfs("mount", "--store", mounted.store, other, check=False)
    assert result.returncode == 3
    assert "already open by another process" in result.stderr
    assert not is_mounted(other)
    serve = run_axonfs("serve", "--store", mounted.store, check=False)
    assert serve.returncode == 3


def test_mounting_twice_on_one_mount_point_is_refused(mounted: MountDaemon, tmp_path: Path) -> None:
    result = run_axonfs("mount", "--store", tmp_path / "store2", mounted.mnt, check=False)
    assert result.returncode == 2 and "already mounted" in result.stderr


def test_daemon_killed_during_ingest_then_mount_recovers(make_mount: MakeMount) -> None:
    mounted = make_mount()
    writer = subprocess.Popen(
        [
            "sh",
            "-c",
            f"i=0; while :; do i=$((i+1)); head -c 200000 /dev/urandom "
            f"> {mounted.mnt}/incoming/f$i || exit 0; done",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.8)
        assert mounted.pid is not None
        os.kill(mounted.pid, signal.SIGKILL)
        writer.wait(timeout=20)
    finally:
        writer.kill()
        writer.wait()
    assert mounted.pid is not None
    assert wait_until(functools.partial(pid_gone, mounted.pid))
    try:
        os.listdir(mounted.mnt)
        raise AssertionError("the mount should be dead")
    except OSError as exc:
        assert exc.errno in (107, 103)  # ENOTCONN, ECONNABORTED
    result = mounted.start()
    assert "stopped abruptly" in result.stderr
    assert "incoming" in os.listdir(mounted.mnt)
    assert not list((mounted.store / "tmp").iterdir())  # stale spools swept
    mounted.umount()
    fsck = run_axonfs("fsck", "--store", mounted.store, *mounted.backend_options, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_umount_cleans_a_dead_mount_point(mounted: MountDaemon) -> None:
    assert mounted.pid is not None
    os.kill(mounted.pid, signal.SIGKILL)
    assert wait_until(functools.partial(pid_gone, mounted.pid))
    result = run_axonfs("umount", mounted.mnt, check=True)
    assert "stopped abruptly" in result.stderr
    assert not is_mounted(mounted.mnt)


def test_umount_of_something_not_mounted(tmp_path: Path) -> None:
    result = run_axonfs("umount", tmp_path, check=False)
    assert result.returncode == 1 and "not mounted" in result.stderr


def test_serve_without_fuse(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_axonfs("serve", "--store", store, check=True)
    pid = int((store / "run" / "daemon.pid").read_text())
    try:
        assert control_socket(store).exists()
        assert "file:count" in run_axonfs("ctl", "--store", store, "metrics", check=True).stdout
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_alive(pid))
    assert not (store / "run" / "daemon.pid").exists()
