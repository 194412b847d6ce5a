"""Group commit: many callers, one transaction per batch.

Each caller submits one item and awaits its own result. Items submitted while a flush
is running wait for the next flush and go in together. There is no timer: a lone item
is flushed at once, so batching adds no latency when the system is quiet and turns N
transactions into one when it is busy.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# A flush returns one entry per item, in order: its result, or the exception that
# caller should see (a refusal of that item alone).
Flush = Callable[[list[Item]], Awaitable[list[Result | BaseException]]]


class GroupCommit(Generic[Item, Result]):
    def __init__(self, flush: Flush[Item, Result], max_batch: int = 256) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        # A caller cancelled while waiting does not withdraw its item: once submitted,
        # it is committed with its batch (like a transaction already sent to COMMIT).
        # The cancellation cancels only `future`, which the flush then leaves alone; no
        # shield needed (it cost a twentieth of a noop worker's CPU).
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except asyncio.CancelledError:  # shutting down: nobody waits forever
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as error:  # the whole batch failed: every caller hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
