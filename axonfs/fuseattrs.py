"""An inode number to report that differs from the FUSE node id.

In the FUSE protocol an entry has a *node id* (the handle the kernel uses in
requests) and attributes, among them the inode number ``stat()`` reports;
they may differ, and a hard link is two names whose attributes report one
inode number. pyfuse3's :class:`pyfuse3.EntryAttributes` sets both from
``st_ino``. A committed ``/incoming`` entry needs them apart: it must keep
its own node id (writing it again starts a new upload, which writing its
blob under ``/by-sha256/`` must never do) while reporting the blob's inode
number, so ``du`` and ``find -samefile`` see a hard link.

:func:`set_reported_ino` writes the ``st_ino`` of the ``struct stat`` inside
the object, at an offset found once by probing a fresh object (and checked
against the position of ``st_size``), never assumed. If the probe does not
find the expected layout, it reports ``False`` and the entry keeps its own
inode number: only the hard-link view is lost.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import sys

import pyfuse3

log = logging.getLogger(__name__)

_INO_PROBE = 0x5A5A_1234_5678_9ABC
_SIZE_PROBE = 0x1122_3344_5566_7788
# Offsets inside struct stat on Linux (x86_64 and the generic 64-bit layout
# differ after st_ino, so only the distance from st_ino to st_size is used,
# and both layouts put st_size 40 bytes after st_ino).
_STAT_INO_TO_SIZE = 40


def _find_stat_ino_offset() -> int | None:
    probe = pyfuse3.EntryAttributes()
    probe.st_ino = _INO_PROBE
    probe.st_size = _SIZE_PROBE
    raw = ctypes.string_at(id(probe), sys.getsizeof(probe))
    ino = struct.pack("=Q", _INO_PROBE)
    found = [i for i in range(len(raw) - 7) if raw[i : i + 8] == ino]
    size_at = raw.find(struct.pack("=Q", _SIZE_PROBE))
    # Two copies: the node id first, then the struct stat's st_ino.
    if len(found) != 2 or size_at - found[1] != _STAT_INO_TO_SIZE:
        log.info(
            "pyfuse3's EntryAttributes has an unexpected layout: committed "
            "/incoming entries report their own inode numbers"
        )
        return None
    return found[1]


_STAT_INO_OFFSET = _find_stat_ino_offset()


def set_reported_ino(attrs: pyfuse3.EntryAttributes, ino: int) -> bool:
    """Make *attrs* report inode number *ino* while keeping its node id.

    Call it after the last assignment to ``attrs.st_ino`` (which sets both).
    Returns False (and changes nothing) where the layout was not recognised.
    """
    if _STAT_INO_OFFSET is None:
        return False
    ctypes.c_uint64.from_address(id(attrs) + _STAT_INO_OFFSET).value = ino
    return True
