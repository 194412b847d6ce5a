"""Wakes waiters when what they follow grows: live event streams when their task's trace
grows (`workbench_traces`, keyed by task id), long-polling channel receives when their
channel has a new message (`workbench_channels`, keyed by channel id).

One LISTEN connection per API process and channel, fanned out to the waiters on it. A
notification names only the keys that changed (comma-separated, up to 200: a batch of
claims or completions sends one per 200 tasks); each waiter then reads what is new from
Postgres, so every replica serves every task and channel, whichever wrote it.
Notifications are lost only while the LISTEN connection is down, so when it is made
again every waiter is woken to catch up; waiters check the connection often (`ensure`),
which costs no query while it is up.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

import asyncpg

from ledger.notify import Listener

TRACES = "workbench_traces"
CHANNELS = "workbench_channels"


class NotifyFeed:
    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.listener = Listener(pool, channel, self._grew)

    async def ensure(self) -> None:
        if await self.listener.ensure():
            for events in self._subscribers.values():
                for event in events:
                    event.set()

    def _grew(self, keys: str) -> None:
        for key in keys.split(","):
            for event in self._subscribers.get(key, ()):
                event.set()

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
