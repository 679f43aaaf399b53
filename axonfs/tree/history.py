"""``/history``: one directory per UTC day with blobs added that day.

::

    /history/YYYY-MM-DD/HHMMSS.mmm-<hex>   symlink to ../../by-sha256/<hex>

A day lists in added order, its offsets ``(millisecond, indx)`` packed into
one integer, so they stay stable under concurrent ingest. Only live blobs
are shown: a day whose blobs were all deleted is gone.
"""

from __future__ import annotations

import datetime
import errno
import stat
from collections.abc import Iterator

from axonfs.axon import Axon, BlobRow
from axonfs.hashing import Sha256, is_sha256_hex
from axonfs.inodes import DAY_BASE, HISTORY_INODE, INCOMING_BASE, INODE_END, LINK_BASE
from axonfs.tree.base import (
    GID,
    IMMUTABLE_TIMEOUT,
    MUTABLE_TIMEOUT,
    UID,
    Attributes,
    AttrsT,
    Listing,
    MakeAttributes,
    OpenFile,
    ReadOnlySubtree,
    dir_attrs,
    error,
    is_writing,
)
from axonfs.tree.blobs import LIST_BATCH, row_by_indx

DAY_MS = 86_400_000
_OFFSET_INDX_BITS = 36  # history-day offsets: ms-in-day << 36 | indx
_EPOCH_DAY = datetime.date(1970, 1, 1)


class HistoryTree(ReadOnlySubtree):
    """``/history``: day directories of symlinks to ``/by-sha256``."""

    name = "history"
    inode = HISTORY_INODE
    inodes = (
        range(HISTORY_INODE, HISTORY_INODE + 1),
        range(DAY_BASE, INCOMING_BASE),
        range(LINK_BASE, INODE_END),
    )

    def __init__(self, axon: Axon, started_ns: int) -> None:
        self.axon = axon
        self.started_ns = started_ns

    async def lookup(self, parent: int, name: str) -> Attributes:
        if parent == self.inode:
            return _day_attrs(self._day_by_name(name))
        if parent >= LINK_BASE:
            raise error(errno.ENOTDIR)
        return _link_attrs(self._link_by_name(parent - DAY_BASE, name))

    async def getattr(self, inode: int) -> Attributes:
        if inode == self.inode:
            return self.listed()
        if inode >= LINK_BASE:
            return _link_attrs(row_by_indx(self.axon, inode - LINK_BASE))
        return _day_attrs(inode - DAY_BASE)

    def listed(self) -> Attributes:
        return dir_attrs(self.inode, self.started_ns, IMMUTABLE_TIMEOUT)

    def readlink(self, inode: int) -> str:
        if inode < LINK_BASE:
            raise error(errno.EINVAL)
        return link_target(row_by_indx(self.axon, inode - LINK_BASE).sha256)

    def opendir(self, inode: int) -> Listing:
        if inode >= LINK_BASE:
            raise error(errno.ENOTDIR)
        return _HistoryListing(inode, self)

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        if is_writing(flags):
            raise error(errno.EROFS)
        raise error(errno.ELOOP if inode >= LINK_BASE else errno.EISDIR)

    def _day_by_name(self, name: str) -> int:
        try:
            day = datetime.date.fromisoformat(name)
        except ValueError:
            raise error(errno.ENOENT) from None
        if len(name) != 10 or day.isoformat() != name:
            raise error(errno.ENOENT)
        number = (day - _EPOCH_DAY).days
        if number < 0 or self._first_live_day(number) != number:
            raise error(errno.ENOENT)
        return number

    def _link_by_name(self, day: int, name: str) -> BlobRow:
        tick_ms = _parse_link_name(day, name)
        if tick_ms is None:
            raise error(errno.ENOENT)
        row = self.axon.stat(bytes.fromhex(name[11:]))
        if row is None or row.added_ns // 1_000_000 != tick_ms:
            raise error(errno.ENOENT)
        return row

    def day_entries(self, start: int) -> Iterator[tuple[str, Attributes, int]]:
        day = self._first_live_day(start)
        while day is not None:
            name = (_EPOCH_DAY + datetime.timedelta(days=day)).isoformat()
            yield name, _day_attrs(day), day + 1
            day = self._first_live_day(day + 1)

    def _first_live_day(self, day: int) -> int | None:
        """The first day >= *day* holding a live history row, or None."""
        key = (day * DAY_MS, 0)
        while rows := self.axon.history_rows(key, None, LIST_BATCH):
            for row in rows:
                if self._is_live(row.sha256, row.indx):
                    return row.tick_ms // DAY_MS
            key = (rows[-1].tick_ms, rows[-1].indx + 1)
        return None

    def link_entries(self, day: int, start: int) -> Iterator[tuple[str, Attributes, int]]:
        day_ms = day * DAY_MS
        key = (day_ms + (start >> _OFFSET_INDX_BITS), start & ((1 << _OFFSET_INDX_BITS) - 1))
        while rows := self.axon.history_rows(key, day_ms + DAY_MS - 1, LIST_BATCH):
            for row in rows:
                if self._is_live(row.sha256, row.indx):
                    attrs = _link_attrs(
                        BlobRow(row.sha256, row.size, row.indx, row.tick_ms * 1_000_000)
                    )
                    next_id = ((row.tick_ms - day_ms) << _OFFSET_INDX_BITS) | (row.indx + 1)
                    yield link_name(row.tick_ms - day_ms, row.sha256), attrs, next_id
            key = (rows[-1].tick_ms, rows[-1].indx + 1)

    def _is_live(self, sha256: Sha256, indx: int) -> bool:
        row = self.axon.stat(sha256)
        return row is not None and row.indx == indx


class _HistoryListing(Listing):
    """/history (its days) or a day (its links)."""

    def __init__(self, inode: int, tree: HistoryTree) -> None:
        super().__init__(inode)
        self.tree = tree

    def entries(
        self, start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        if self.inode == HISTORY_INODE:
            listed = self.tree.day_entries(start)
        else:
            listed = self.tree.link_entries(self.inode - DAY_BASE, start)
        for name, attrs, next_id in listed:
            yield name, make(*attrs), next_id


def day_and_name(row: BlobRow) -> tuple[int, str]:
    """The day directory's inode and the link's name of a blob in /history."""
    day, ms_in_day = divmod(row.added_ns // 1_000_000, DAY_MS)
    return DAY_BASE + day, link_name(ms_in_day, row.sha256)


def _day_attrs(day: int) -> Attributes:
    return dir_attrs(DAY_BASE + day, (day * DAY_MS) * 1_000_000, MUTABLE_TIMEOUT)


def _link_attrs(row: BlobRow) -> Attributes:
    return Attributes(
        LINK_BASE + row.indx,
        stat.S_IFLNK | 0o777,
        1,
        UID,
        GID,
        len(link_target(row.sha256)),
        0,
        row.added_ns,
        row.added_ns,
        IMMUTABLE_TIMEOUT,
        IMMUTABLE_TIMEOUT,
    )


def link_target(sha256: bytes) -> str:
    return f"../../by-sha256/{sha256.hex()}"


def link_name(ms_in_day: int, sha256: bytes) -> str:
    seconds, millis = divmod(ms_in_day, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}{minutes:02d}{seconds:02d}.{millis:03d}-{sha256.hex()}"


def _parse_link_name(day: int, name: str) -> int | None:
    """The added millisecond a ``HHMMSS.mmm-<hex>`` name in *day* stands for."""
    if len(name) != 75 or name[6] != "." or name[10] != "-" or not is_sha256_hex(name[11:]):
        return None
    digits = name[:6] + name[7:10]
    if not digits.isdigit():
        return None
    hours, minutes, seconds, millis = (
        int(digits[0:2]),
        int(digits[2:4]),
        int(digits[4:6]),
        int(digits[6:9]),
    )
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return day * DAY_MS + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis
