"""What is mounted where, from ``/proc/self/mountinfo``.

Reading the table never touches the paths themselves, which matters for
FUSE: a ``stat()`` of a mount whose daemon died fails (ENOTCONN), and one of
our own mount point from the daemon's thread would wait for a reply only
that thread can send.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

AXONFS_FSTYPE = "fuse.axonfs"
"""The type the kernel shows for an axonfs mount (FUSE with ``subtype=axonfs``)."""


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``."""

    device: str
    """``major:minor``; for FUSE also the name of the mount's bdi."""
    mountpoint: Path
    fstype: str
    source: str

    @property
    def is_axonfs(self) -> bool:
        return self.fstype == AXONFS_FSTYPE


def mounts() -> list[MountEntry]:
    """Every mount of this process's namespace, in mount order."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        return [entry for line in file if (entry := _parse(line)) is not None]


def find_mount(mountpoint: Path) -> MountEntry | None:
    """The topmost mount on exactly *mountpoint* (absolute, without symlinks)."""
    found: MountEntry | None = None
    for entry in mounts():
        if entry.mountpoint == mountpoint:
            found = entry
    return found


def containing_mount(path: Path) -> MountEntry:
    """The topmost mount that holds *path* (made absolute, symlinks resolved)."""
    resolved = Path(os.path.realpath(path))
    best: MountEntry | None = None
    for entry in mounts():
        if resolved.is_relative_to(entry.mountpoint) and (
            best is None or len(entry.mountpoint.parts) >= len(best.mountpoint.parts)
        ):
            best = entry
    if best is None:  # unreachable on Linux: "/" is always mounted
        raise FileNotFoundError(f"no mount holds {path}")
    return best


def _parse(line: str) -> MountEntry | None:
    head, _, tail = line.partition(" - ")
    fields, rest = head.split(), tail.split()
    if len(fields) < 5 or len(rest) < 2:
        return None
    return MountEntry(
        device=fields[2],
        mountpoint=Path(_unescape(fields[4])),
        fstype=rest[0],
        source=_unescape(rest[1]),
    )


def _unescape(field: str) -> str:
    r"""Undo mountinfo's octal escapes (``\040`` for a space, ...)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)
