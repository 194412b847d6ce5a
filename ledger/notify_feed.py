"""Wakes waiters when what they follow grows: live event streams and a parent agent
waiting for its child when a task's trace grows (`workbench_traces`, keyed by task id),
long-polling channel receives when their channel has a new message
(`workbench_channels`, keyed by channel id; followed by `ledger/channel_waits.py`).
Used by the API and by the workers (the agent runtime's SDK tools,
`worker/runtime_tools.py`) alike.

One LISTEN connection per process and channel, fanned out to the waiters on it. A
notification names only the keys that changed (comma-separated, up to 200: a batch of
claims or completions sends one per 200 tasks); each waiter then reads what is new from
Postgres, so every replica serves every task and channel, whichever wrote it.
Notifications are lost only while the LISTEN connection is down, so when it is made
again every waiter is woken to catch up; waiters check the connection often (`ensure`),
which costs no query while it is up.

Besides one key's waiters, a watcher may follow every key (`watch_all`): the console's
live lists, which filter the task ids by their tenant themselves. It is told None when
the connection was made again: anything may have changed.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

import asyncpg

from ledger.notify import Listener

TRACES = "workbench_traces"
CHANNELS = "workbench_channels"


class NotifyFeed:
    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._watchers: set[Callable[[list[str] | None], None]] = set()
        self.listener = Listener(pool, channel, self._grew)

    async def ensure(self) -> None:
        if await self.listener.ensure():
            for events in self._subscribers.values():
                for event in events:
                    event.set()
            for watcher in self._watchers:
                watcher(None)

    def _grew(self, keys: str) -> None:
        changed = keys.split(",")
        for key in changed:
            for event in self._subscribers.get(key, ()):
                event.set()
        for watcher in self._watchers:
            watcher(changed)

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers[key].add(event)
        try:
            yield event
        finally:
            self._subscribers[key].discard(event)
            if not self._subscribers[key]:
                del self._subscribers[key]

    @contextlib.contextmanager
    def watch_all(self, on_change: Callable[[list[str] | None], None]) -> Iterator[None]:
        """Call `on_change` with every key that grows (on the traces feed: the id of every
        task whose trace grows, any tenant's), or None after a reconnect, while the block
        runs. It is called on the event
        loop, from the notification: it must only record, never wait."""
        self._watchers.add(on_change)
        try:
            yield
        finally:
            self._watchers.discard(on_change)
