"""A FUSE request context for driving :class:`axonfs.ops.Operations` without a kernel."""

from __future__ import annotations

import pyfuse3


class FakeContext(pyfuse3.RequestContext):
    """What pyfuse3 passes a handler for a request from process *pid* (root, umask 022)."""

    def __init__(self, pid: int = 1, uid: int = 0, gid: int = 0, umask: int = 0o022) -> None:
        super().__init__()
        self._pid, self._uid, self._gid, self._umask = pid, uid, gid, umask

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def uid(self) -> int:
        return self._uid

    @property
    def gid(self) -> int:
        return self._gid

    @property
    def umask(self) -> int:
        return self._umask
