"""Who still writes: what ``/proc`` says about the process behind an open file.

FUSE sends ``FLUSH`` on every ``close()`` of a descriptor, including the
copies a shell keeps after ``dup2`` and the ones a child inherits across
``fork``, and it does not say which process closed or whether other
descriptors of the same open file remain. The commit rule of ``/incoming``
(see :mod:`axonfs.incoming`) needs two facts the kernel does not send, both
read here from ``/proc`` of the process that opened the file:

* whether that process is exiting because of a signal (a writer killed
  mid-copy must commit nothing), and
* whether it still holds a descriptor of the file (then this close was a
  duplicate's or a child's, and the file is not finished).

Reads use ``os.open``/``os.read``/``os.readlink`` (no Python file objects):
they run on the trio thread on every committing close, where ~10 µs each
matters. Nothing here enters the mount: ``readlink`` of ``/proc/PID/fd/N``
reads the kernel's dentry cache, while a ``stat()`` through that link would
send a request to the daemon that is asking.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol

_PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit()
_DELETED = " (deleted)"


class WriterState(enum.Enum):
    """What became of the process that opened a file."""

    ALIVE = "alive"
    EXITING = "exiting"
    """In ``do_exit()`` for a normal exit: its descriptors are already detached."""
    KILLED = "killed"
    """In ``do_exit()`` because of a signal (``kill``, Ctrl-C)."""
    GONE = "gone"
    """No such process any more (or not ours to look at)."""


class Writers(Protocol):
    """The two questions the commit rule asks about an opener (tests fake it)."""

    def state(self, pid: int) -> WriterState:
        """What became of process *pid*."""
        ...

    def holds(self, pid: int, path: str) -> bool:
        """True if process *pid* still has a descriptor of the file at *path*
        (a path below the mount point)."""
        ...


class ProcWriters:
    """:class:`Writers` answered from ``/proc``.

    Args:
        mountpoint: the mount point's real path, or None when nothing is
            mounted (then no descriptor can refer to a file of the tree).
    """

    def __init__(self, mountpoint: Path | None) -> None:
        self.mountpoint = None if mountpoint is None else str(mountpoint).rstrip("/")

    def state(self, pid: int) -> WriterState:
        # /proc/PID/stat: "pid (comm) state ..." where comm may hold spaces
        # and parentheses; the fields after the last ")" start at field 3.
        # The kernel sets PF_EXITING (field 9) and the exit code (field 52)
        # before it closes an exiting process's descriptors.
        try:
            raw = _read(f"/proc/{pid}/stat")
        except OSError:
            return WriterState.GONE
        fields = raw[raw.rfind(b")") + 2 :].split()
        try:
            flags, exit_code = int(fields[6]), int(fields[49])
        except (IndexError, ValueError):
            return WriterState.ALIVE
        if not flags & _PF_EXITING:
            return WriterState.ALIVE
        return WriterState.KILLED if exit_code & 0x7F else WriterState.EXITING

    def holds(self, pid: int, path: str) -> bool:
        if self.mountpoint is None:
            return False
        target = f"{self.mountpoint}/{path}"
        directory = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(directory)
        except OSError:
            return False  # gone, or not ours to look at: nothing we can wait for
        for fd in descriptors:
            try:
                link = os.readlink(f"{directory}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if link == target or link == target + _DELETED:
                return True
        return False


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)
