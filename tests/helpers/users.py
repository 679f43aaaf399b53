"""Run a piece of a test as another user: in a forked child that drops to a uid/gid."""

from __future__ import annotations

import os
from collections.abc import Callable


def as_user(uid: int, gid: int, work: Callable[[], str]) -> str:
    """Run *work* in a forked child with only *uid*/*gid* (no supplementary
    groups) and return what it returned. The child has no pytest and no event
    loop of its own to lean on: anything it raises comes back as ``failed ...``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe and leave, whatever happens
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = work()
        except BaseException as exc:  # noqa: BLE001 - anything, as long as the child exits
            result = f"failed {exc!r}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(pid, 0)
    return result
