"""The store lock: one writing process per store directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from axonfs.errors import StoreLocked

LOCK_NAME = "axonfs.lock"
"""The lock file in the store directory; it holds the owner's pid."""


class StoreLock:
    """An exclusive ``flock`` on ``<store>/axonfs.lock`` holding the owner's pid.

    The kernel drops the lock when the process dies, so a crash never leaves
    a stale lock behind.
    """

    def __init__(self, store: Path, *, readonly: bool = False) -> None:
        """Take the lock; *readonly* neither creates the file nor writes our pid
        (a read-only filesystem allows neither, and flock needs neither)."""
        self.path = store / LOCK_NAME
        if readonly:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # no process ever opened the store for writing
                self.fd = -1
                return
        else:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise StoreLocked(
                f"the store {store} is already open by another process (pid {owner}); "
                "stop it first, or talk to it with 'axonfs ctl'",
                store=str(store),
                pid=owner,
            ) from None
        if not readonly:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
