"""What every subtree of the mount implements, and the records it answers with.

The mount is a root directory whose entries are subtrees (``/by-sha256``,
``/history``, ``/history.log``, ``/incoming``), each answered by one handler
implementing :class:`Subtree`. :class:`~axonfs.vfs.Vfs` routes every request
to the handler that owns the inode it names (:attr:`Subtree.inodes`), so
adding a subtree is one handler plus one line in ``Vfs.__init__``.

Nothing here knows FUSE: attributes are :class:`Attributes`, errors are
``OSError(errno)``, and :mod:`axonfs.ops` translates both for pyfuse3. The
inode numbers each subtree owns are in :mod:`axonfs.inodes`.
"""

from __future__ import annotations

import abc
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

IMMUTABLE_TIMEOUT = 3600.0
"""Entry/attribute cache time of things that never change (blobs, static dirs)."""
MUTABLE_TIMEOUT = 1.0
"""Cache time of /incoming entries and history days."""
BLOCK_SIZE = 1 << 20
"""st_blksize: tools size their I/O by it (cp, cat), and FUSE requests follow."""

XATTR_PREFIX = "user.axonfs."

UID, GID = os.getuid(), os.getgid()
"""The daemon's ids: the owner of everything but /incoming's entries."""


def error(code: int, message: str = "") -> OSError:
    """The tree's one kind of refusal: ``OSError(code)`` (ops answers its errno)."""
    return OSError(code, message or os.strerror(code))


class Attributes(NamedTuple):
    """What ``stat`` shows of an inode, and how long the kernel may cache it."""

    inode: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    blocks: int
    mtime_ns: int
    """Also the access time."""
    ctime_ns: int
    entry_timeout: float
    attr_timeout: float
    reported_ino: int = 0
    """The inode number ``stat`` reports, where it is not :attr:`inode`
    (a committed /incoming entry reports its blob's, as a hard link); 0: none."""


AttrsT = TypeVar("AttrsT")
AttrsT_co = TypeVar("AttrsT_co", covariant=True)


class MakeAttributes(Protocol[AttrsT_co]):
    """Builds a front end's record of attributes from the fields of
    :class:`Attributes` (which is one such builder itself)."""

    def __call__(
        self,
        inode: int,
        mode: int,
        nlink: int,
        uid: int,
        gid: int,
        size: int,
        blocks: int,
        mtime_ns: int,
        ctime_ns: int,
        entry_timeout: float,
        attr_timeout: float,
        reported_ino: int = 0,
    ) -> AttrsT_co: ...


class Listing(abc.ABC):
    """An open directory.

    Its entries come with attributes in the caller's own record, built by
    the *make* it passes: ``ls`` of a million blobs then builds a million
    records of the kind the kernel is sent, and no other.

    Attributes:
        inode: the directory.
        counts_lookups: each listed entry hands the kernel a reference to its
            inode (see :meth:`Subtree.remember`); False where none needs counting.
    """

    counts_lookups = False

    def __init__(self, inode: int) -> None:
        self.inode = inode

    @abc.abstractmethod
    def entries(
        self, start: int, make: MakeAttributes[AttrsT]
    ) -> Iterator[tuple[str, AttrsT, int]]:
        """Yield ``(name, attributes, offset of the next entry)`` from offset
        *start* (0, or an offset an entry gave), lazily."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Who creates an entry: the requesting process and its ids."""

    uid: int
    gid: int
    pid: int


@dataclass(frozen=True, slots=True)
class AttrChange:
    """A ``setattr``: each field None unless it is to change."""

    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class TreeOptions:
    """What the tree needs from the mount's configuration."""

    allow_delete: bool = False
    socket_path: Path | None = None
    daemon_pid: int = 0


class OpenFile:
    """An open file of the tree: what ops keeps per file handle.

    Attributes:
        keep_cache: the kernel may keep the file's pages across opens (it never changes).
        direct_io: every read reaches the daemon (the file grows behind the kernel's back).
    """

    keep_cache = False
    direct_io = False

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise error(errno.EBADF)

    async def write(self, offset: int, data: bytes) -> int:
        raise error(errno.EBADF)

    async def flush(self) -> None:
        return None

    async def release(self) -> None:
        return None


class Subtree(Protocol):
    """One subtree of the mount: the handler of every inode in :attr:`inodes`.

    Reads: :meth:`lookup`, :meth:`getattr`, :meth:`listed`, :meth:`readlink`,
    :meth:`opendir`, :meth:`open`, :meth:`listxattr`, :meth:`getxattr`.
    Changes: :meth:`create`, :meth:`mkdir`, :meth:`unlink`, :meth:`rmdir`,
    :meth:`rename`, :meth:`setattr`. Kernel references: :meth:`remember`,
    :meth:`forget`. :class:`ReadOnlySubtree` refuses every change and
    answers the rest for a subtree of plain read-only files.

    A method is called only with an inode (or a parent) the handler owns;
    ``rename`` only with both parents its own. Errors are ``OSError(errno)``
    or :class:`~axonfs.errors.AxonError`.
    """

    @property
    def name(self) -> str:
        """Its entry in the root directory ("" for the root itself)."""
        ...

    @property
    def inode(self) -> int:
        """Its top directory (or file)."""
        ...

    @property
    def inodes(self) -> tuple[range, ...]:
        """Every inode it answers for; no two subtrees' ranges overlap."""
        ...

    @property
    def writable(self) -> bool:
        """Takes new entries: what it does not support is EPERM, not EROFS."""
        ...

    async def lookup(self, parent: int, name: str) -> Attributes: ...

    async def getattr(self, inode: int) -> Attributes: ...

    def listed(self) -> Attributes:
        """The attributes of :attr:`inode` as the root lists them (never waits)."""
        ...

    def readlink(self, inode: int) -> str: ...

    def opendir(self, inode: int) -> Listing: ...

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile: ...

    def listxattr(self, inode: int) -> list[str]:
        """Names of the ``user.axonfs.*`` attributes of *inode*, prefix included."""
        ...

    async def getxattr(self, inode: int, key: str) -> bytes:
        """The attribute ``user.axonfs.<key>`` (ENODATA if there is none)."""
        ...

    async def create(
        self, parent: int, name: str, mode: int, owner: Owner
    ) -> tuple[OpenFile, Attributes]: ...

    def mkdir(self, parent: int, name: str, mode: int, owner: Owner) -> Attributes: ...

    async def unlink(self, parent: int, name: str) -> None: ...

    def rmdir(self, parent: int, name: str) -> None: ...

    def rename(
        self,
        parent_old: int,
        name_old: str,
        parent_new: int,
        name_new: str,
        *,
        noreplace: bool,
        exchange: bool,
    ) -> None: ...

    async def setattr(
        self, inode: int, change: AttrChange, open_file: OpenFile | None
    ) -> Attributes: ...

    def remember(self, inode: int) -> None:
        """The kernel took a reference to *inode* (a lookup, or a listed or created entry)."""
        ...

    def forget(self, inode: int, count: int) -> None:
        """The kernel dropped *count* references to *inode*."""
        ...


class ReadOnlySubtree:
    """Defaults for a :class:`Subtree` that takes no changes.

    A subclass sets the four attributes and answers :meth:`lookup`,
    :meth:`getattr`, :meth:`listed` and, where it has them, directories,
    files and extended attributes (:mod:`axonfs.tree.blobs` has a blob's).
    """

    name: str
    inode: int
    inodes: tuple[range, ...]
    writable = False

    def readlink(self, inode: int) -> str:
        raise error(errno.EINVAL)

    def opendir(self, inode: int) -> Listing:
        raise error(errno.ENOTDIR)

    async def open(self, inode: int, flags: int, pid: int) -> OpenFile:
        raise error(errno.EROFS if is_writing(flags) else errno.EISDIR)

    def listxattr(self, inode: int) -> list[str]:
        return []

    async def getxattr(self, inode: int, key: str) -> bytes:
        raise error(errno.ENODATA)

    async def create(
        self, parent: int, name: str, mode: int, owner: Owner
    ) -> tuple[OpenFile, Attributes]:
        raise error(errno.EROFS)

    def mkdir(self, parent: int, name: str, mode: int, owner: Owner) -> Attributes:
        raise error(errno.EROFS)

    async def unlink(self, parent: int, name: str) -> None:
        raise error(errno.EPERM)

    def rmdir(self, parent: int, name: str) -> None:
        raise error(errno.EPERM)

    def rename(
        self,
        parent_old: int,
        name_old: str,
        parent_new: int,
        name_new: str,
        *,
        noreplace: bool,
        exchange: bool,
    ) -> None:
        raise error(errno.EPERM)

    async def setattr(
        self, inode: int, change: AttrChange, open_file: OpenFile | None
    ) -> Attributes:
        raise error(errno.EPERM)

    def remember(self, inode: int) -> None:
        return None

    def forget(self, inode: int, count: int) -> None:
        return None


def is_writing(flags: int) -> bool:
    """True if ``open`` *flags* would change the file (write access or ``O_TRUNC``)."""
    return flags & os.O_ACCMODE != os.O_RDONLY or bool(flags & os.O_TRUNC)


def dir_attrs(inode: int, mtime_ns: int, timeout: float) -> Attributes:
    """A read-only directory owned by the daemon's user."""
    return Attributes(
        inode, stat.S_IFDIR | 0o555, 2, UID, GID, 0, 0, mtime_ns, mtime_ns, timeout, timeout
    )
