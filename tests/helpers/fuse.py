"""Real-kernel FUSE helpers (after pyfuse3's test/util.py): is it there, what is
mounted, is a daemon alive, and a forced cleanup.

The daemons themselves are in :mod:`helpers.daemon`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as file:
        return any(line.split()[4] == str(path) for line in file)


def mounts_of_type(fstype: str) -> list[str]:
    """Mount points of every mount of *fstype* of this machine."""
    with open("/proc/mounts") as file:
        return [line.split()[1] for line in file if line.split()[2] == fstype]


def axonfs_mounts() -> list[str]:
    """Mount points of every axonfs mount of this machine."""
    return mounts_of_type("fuse.axonfs")


def mounts_under(base: Path | str, *fstypes: str) -> list[str]:
    """Mount points of the given types at or below *base*."""
    base = str(base)
    return [
        path
        for fstype in fstypes
        for path in mounts_of_type(fstype)
        if path == base or path.startswith(base + "/")
    ]


def skip_tests_under(items: list[pytest.Item], directory: str, reason: str) -> None:
    """Mark every collected test under ``tests/DIRECTORY`` skipped (for a conftest's
    ``pytest_collection_modifyitems``, when the machine lacks what they need)."""
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if f"tests/{directory}" in str(item.fspath):
            item.add_marker(skip)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def pid_gone(pid: int) -> bool:
    """Whether process *pid* has exited (for :func:`wait_until`)."""
    return not pid_alive(pid)


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll *predicate* until it holds or *timeout* passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def cleanup(mountpoint: Path, pid: int | None = None) -> None:
    """Force *mountpoint* unmounted and its daemon gone, whatever their state."""
    if is_mounted(mountpoint):
        subprocess.run(
            ["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, check=False
        )
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=5)
