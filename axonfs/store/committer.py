"""Group commit: many concurrent callers, one synced transaction.

Each :meth:`GroupCommitter.submit` queues one operation and waits for its
result. Whoever finds no commit in progress becomes the leader: it takes the
whole queue, runs it as one batch in a worker thread, and hands every waiter
its result. Operations queued meanwhile form the next batch. A lone caller
pays one commit; a hundred concurrent callers pay about two. There is no
background task, so nothing needs a nursery.

Concurrency: the batch runs with cancellation shielded, because its results
belong to other tasks too; a cancelled leader still finishes the commit and
then sees its cancellation.

A batch that *quick* takes (it returns results instead of None) is committed
on the trio thread instead: for commits that only touch memory and a log
(deferred commits, see :mod:`axonfs.store.pending`), the trip to a worker
thread and back costs more than the commit. A caller that finds nothing
queued and no commit running tries *quick* on its own ops at once, without
queueing: batching pays for itself only when commits wait on the disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

log = logging.getLogger(__name__)

Op = TypeVar("Op")
Result = TypeVar("Result")


class _Waiter(Generic[Op, Result]):
    __slots__ = ("op", "done", "result", "error")

    def __init__(self, op: Op) -> None:
        self.op = op
        self.done = trio.Event()
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[Op, Result]):
    """Batches concurrent operations into calls of one synchronous function."""

    def __init__(
        self,
        commit: Callable[[Sequence[Op]], list[Result]],
        *,
        max_batch: int = 4096,
        quick: Callable[[Sequence[Op]], list[Result] | None] | None = None,
    ) -> None:
        self._commit = commit
        self._quick = quick
        self._max_batch = max_batch
        self._queue: list[_Waiter[Op, Result]] = []
        self._busy = False
        self._idle = trio.Event()
        self.batches = 0
        self.ops = 0

    async def submit(self, op: Op) -> Result:
        """Queue *op*, wait until its batch is committed, return its result."""
        return (await self.submit_many([op]))[0]

    async def submit_many(self, ops: Sequence[Op]) -> list[Result]:
        """Queue *ops* (kept in order, usually in one batch); return their results.

        Once queued, the ops are committed even if the caller is cancelled.
        """
        if self._quick is not None and not self._busy and not self._queue:
            await trio.lowlevel.checkpoint()
            if not self._busy and not self._queue:
                results = self._quick(ops)
                if results is not None:
                    self.batches += 1
                    self.ops += len(ops)
                    return results
        waiters: list[_Waiter[Op, Result]] = [_Waiter(op) for op in ops]
        self._queue.extend(waiters)
        while not waiters[-1].done.is_set():
            if self._busy:
                with trio.CancelScope(shield=True):
                    await self._idle.wait()
            else:
                await self._lead()
        for waiter in waiters:
            if waiter.error is not None:
                raise waiter.error
        return [w.result for w in waiters]  # type: ignore[misc]

    async def _lead(self) -> None:
        self._busy = True
        # Callers woken by the previous batch are runnable now: let them queue
        # before taking the batch, or each batch would hold only the fastest.
        await trio.lowlevel.cancel_shielded_checkpoint()
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        try:
            with trio.CancelScope(shield=True):
                try:
                    ops = [w.op for w in batch]
                    results = self._quick(ops) if self._quick is not None else None
                    if results is None:
                        results = await trio.to_thread.run_sync(self._commit, ops)
                except BaseException as exc:  # the batch failed as a whole
                    for waiter in batch:
                        waiter.error = exc
                else:
                    for waiter, result in zip(batch, results, strict=True):
                        waiter.result = result
                self.batches += 1
                self.ops += len(batch)
        finally:
            for waiter in batch:
                waiter.done.set()
            self._busy = False
            idle, self._idle = self._idle, trio.Event()
            idle.set()
