"""What the tree tells the kernel when it changes without a request from it.

The kernel caches names and attributes of the mount for as long as the
timeouts the daemon gave allow (an hour for blobs). When a blob is deleted
through the control socket, or an ``/incoming`` entry expires, nothing asks
the daemon, so the tree says so itself through a :class:`KernelCache`. The
mount's implementation is :class:`axonfs.ops.FuseKernelCache`; in-process
tests record the calls.
"""

from __future__ import annotations

from typing import Protocol


class KernelCache(Protocol):
    """Drops what the kernel may have cached about part of the tree."""

    def forget_entry(self, parent_inode: int, name: str) -> None:
        """The name *name* in directory *parent_inode* changed or went away."""
        ...

    def forget_attrs(self, inode: int) -> None:
        """The attributes of *inode* changed (size, link count, inode number)."""
        ...


class NoKernelCache:
    """Nothing is mounted: nothing to tell."""

    def forget_entry(self, parent_inode: int, name: str) -> None:
        return None

    def forget_attrs(self, inode: int) -> None:
        return None
