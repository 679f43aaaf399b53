"""A daemon-wide byte budget for what clients make the daemon hold in memory.

Every front end that reads requests off a socket (the control socket, a
Telepath listener) buffers frames before it can decode them and then holds
the decoded objects while the request runs. Limits per connection or per frame
do not bound the sum: forty connections each part way through a 32 MiB frame
took the daemon from 32 MB to 1.36 GB. :class:`MemoryBudget` is the shared
account: a front end takes bytes from it before it buffers or decodes a large
frame, refuses the frame when the budget is spent, and gives the bytes back
once the request is done.

:func:`request_budget` returns the budget of one Axon, so every front end
serving the same Axon draws on the same account without being wired together.

Concurrency: the budget is plain bookkeeping without locks; every front end
of a daemon runs on its trio thread. :meth:`MemoryBudget.take` waits (for at
most a given time) for others to release; a front end waits there before it
reads a frame's body, so a client whose frame must wait is simply not read
from (back-pressure), and one that cannot be served in time is refused.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import trio

from axonfs.errors import HitLimit

REQUEST_BUDGET = 256 << 20
"""Bytes of request frames (buffered, then decoded) the daemon holds at once.
Eight frames of the largest size the control socket accepts; small frames are
not counted against it (see ``axonfs.protocol.UNCOUNTED_FRAME``)."""


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    limit: int
    used: int
    peak: int
    refused: int


BUDGET_WAIT = 5.0
"""Seconds a frame may wait for budget before it is refused: long enough for
busy uploads to drain, short enough that a client of a daemon held by
unfinished frames hears why."""


class MemoryBudget:
    """A count of bytes out of *limit*; :meth:`try_take` never waits, :meth:`take` may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._peak = 0
        self._refused = 0
        self._room = trio.lowlevel.ParkingLot()

    async def take(self, size: int, wait: float = BUDGET_WAIT) -> None:
        """Take *size* bytes, waiting up to *wait* seconds for room.

        Raises:
            HitLimit: no room came in time (or *size* exceeds the limit).
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # before anything is taken
        if size <= self.limit:
            with trio.move_on_after(wait):
                while self.used + size > self.limit:
                    await self._room.park()
        if not self.try_take(size):
            raise HitLimit(
                f"a request of {size} bytes found no room in the daemon's request "
                f"memory budget of {self.limit} bytes within {wait:g} s; try again "
                "later",
                size=size,
                limit=self.limit,
            )

    def try_take(self, size: int) -> bool:
        """Take *size* bytes if they fit; False (and nothing taken) if not."""
        if self.used + size > self.limit:
            self._refused += 1
            return False
        self.used += size
        self._peak = max(self._peak, self.used)
        return True

    def release(self, size: int) -> None:
        if size:
            self.used -= size
            assert self.used >= 0, "released more than was taken"
            self._room.unpark_all()

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(self.limit, self.used, self._peak, self._refused)


_budgets: weakref.WeakKeyDictionary[object, MemoryBudget] = weakref.WeakKeyDictionary()


def request_budget(owner: object, limit: int = REQUEST_BUDGET) -> MemoryBudget:
    """The request budget of *owner* (an Axon), made with *limit* on first use."""
    budget = _budgets.get(owner)
    if budget is None:
        budget = _budgets[owner] = MemoryBudget(limit)
    return budget
