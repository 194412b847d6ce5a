"""Wakes live event streams when their task's trace grows.

One LISTEN connection per API process, fanned out to the streams open on it. A
notification names only the tasks that changed (comma-separated, up to 200: a batch of
claims or completions sends one per 200 tasks); each stream then reads what is new from
Postgres, so every replica serves every task. Notifications are lost only while the
LISTEN connection is down, so when it is made again every stream is woken to catch up;
streams check the connection often (`ensure`), which costs no query while it is up.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

import asyncpg

from ledger.notify import Listener


class TraceFeed:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.listener = Listener(pool, "workbench_traces", self._grew)

    async def ensure(self) -> None:
        if await self.listener.ensure():
            for events in self._subscribers.values():
                for event in events:
                    event.set()

    def _grew(self, task_ids: str) -> None:
        for task_id in task_ids.split(","):
            for event in self._subscribers.get(task_id, ()):
                event.set()

    @contextlib.contextmanager
    def subscribe(self, task_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers[task_id].add(event)
        try:
            yield event
        finally:
            self._subscribers[task_id].discard(event)
            if not self._subscribers[task_id]:
                del self._subscribers[task_id]
