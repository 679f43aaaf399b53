"""Real-kernel FUSE helpers for the mount tests (after pyfuse3's test/util.py).

:class:`Mounted` runs ``axonfs mount`` as a subprocess on a fresh store and
always unmounts: ``axonfs umount`` first, then ``fusermount3 -u -z`` and a
SIGKILL of the daemon if that did not work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

AXONFS = [sys.executable, "-m", "axonfs"]
TIMEOUT = 60


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


def axonfs(*args: str | Path, check: bool = True, timeout: float = TIMEOUT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``axonfs ARGS`` and return the finished process (text output)."""
    return subprocess.run([*AXONFS, *map(str, args)], capture_output=True, text=True,
                          check=check, timeout=timeout, env=env)


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as file:
        return any(line.split()[4] == str(path) for line in file)


def axonfs_mounts() -> list[str]:
    """Mount points of every axonfs mount of this machine."""
    with open("/proc/mounts") as file:
        return [line.split()[1] for line in file if line.split()[2] == "fuse.axonfs"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def cleanup(mountpoint: Path, pid: int | None = None) -> None:
    """Force *mountpoint* unmounted and its daemon gone, whatever their state."""
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True,
                       check=False)
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=5)


@dataclass
class Mounted:
    """A store mounted through the kernel by ``axonfs mount``."""

    root: Path
    options: tuple[str, ...] = ()
    store: Path = field(init=False)
    mnt: Path = field(init=False)
    pid: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.store = self.root / "store"
        self.mnt = self.root / "mnt"
        self.mnt.mkdir(parents=True, exist_ok=True)

    @property
    def backend_options(self) -> list[str]:
        """The ``--s3-*`` options among :attr:`options` (for fsck, recover...)."""
        picked: list[str] = []
        options = list(self.options)
        for i, option in enumerate(options):
            if option.startswith("--s3-"):
                picked.append(option)
                if "=" not in option and i + 1 < len(options):
                    picked.append(options[i + 1])
        return picked

    @property
    def log(self) -> Path:
        return self.store / "axonfs.log"

    def mount(self, *extra: str) -> subprocess.CompletedProcess[str]:
        result = axonfs("mount", "--store", self.store, *self.options, *extra, self.mnt)
        self.pid = int(os.getxattr(self.mnt, "user.axonfs.pid"))
        return result

    def umount(self) -> None:
        axonfs("umount", self.mnt)
        assert not is_mounted(self.mnt)
        if self.pid is not None:
            assert not pid_alive(self.pid), "umount returned before the daemon exited"

    def close(self) -> None:
        """Unmount for sure (the fixture's finally)."""
        try:
            if is_mounted(self.mnt):
                axonfs("umount", self.mnt, check=False, timeout=30)
        finally:
            cleanup(self.mnt, self.pid)

    def log_problems(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks in the daemon's log."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]

    def path(self, *parts: str) -> Path:
        return self.mnt.joinpath(*parts)
