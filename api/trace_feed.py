"""Wakes live event streams when their task's trace grows.

One LISTEN connection per API process, fanned out to the streams open on it. A
notification names only the tasks that changed (comma-separated, up to 200: a batch of
claims or completions sends one per 200 tasks); each stream then reads what is new from
Postgres, so every replica serves every task. Notifications are lost only while the
LISTEN connection is down, so when it is made again every stream is woken to catch up;
streams check the connection often (`ensure`), which costs no query while it is up.

Besides one task's stream, a watcher may follow every task (`watch_all`): the console's
live lists, which filter the ids by their tenant themselves. It is told None when the
connection was made again: anything may have changed.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

import asyncpg

from ledger.notify import Listener


class TraceFeed:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._watchers: set[Callable[[list[str] | None], None]] = set()
        self.listener = Listener(pool, "workbench_traces", self._grew)

    async def ensure(self) -> None:
        if await self.listener.ensure():
            for events in self._subscribers.values():
                for event in events:
                    event.set()
            for watcher in self._watchers:
                watcher(None)

    def _grew(self, task_ids: str) -> None:
        changed = task_ids.split(",")
        for task_id in changed:
            for event in self._subscribers.get(task_id, ()):
                event.set()
        for watcher in self._watchers:
            watcher(changed)

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

    @contextlib.contextmanager
    def watch_all(self, on_change: Callable[[list[str] | None], None]) -> Iterator[None]:
        """Call `on_change` with the ids of every task whose trace grows (any tenant's),
        or None after a reconnect, while the block runs. It is called on the event
        loop, from the notification: it must only record, never wait."""
        self._watchers.add(on_change)
        try:
            yield
        finally:
            self._watchers.discard(on_change)
