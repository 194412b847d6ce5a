"""The embedded default lane: a table claimed with `FOR UPDATE SKIP LOCKED`.

Receivers sleep on LISTEN/NOTIFY (`workbench_lanes`, payload = lane name) and poll
every `poll_interval` as a fallback, so a lost notification (a listener reconnecting)
delays a message by at most that long, never loses it.

Besides the peek-lock protocol every lane has, `take` removes messages inside a
transaction of the caller's: the worker claims the runs they name in it.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import structlog

from lanes.base import LaneMessage, LockLost, Received
from ledger.notify import Listener
from ledger.sql import query
from metrics import DEAD_LETTERS

log = structlog.get_logger(__name__)

CHANNEL = "workbench_lanes"
T = TypeVar("T")


class LaneListener:
    """One LISTEN connection per process, shared by its lanes: a notification sets the
    wake-up event of every receiver waiting on that lane. The connection is opened
    again after it is lost (a database restart), each time a receiver asks; until then
    the receivers poll."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._events: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener = Listener(pool, CHANNEL, self._notified)

    def _notified(self, lane: str) -> None:
        for event in self._events.get(lane, ()):
            event.set()

    async def subscribe(self, lane: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[lane].add(event)
        await self.ensure()
        return event

    async def ensure(self) -> None:
        """Listening again if the connection was lost; cheap while it holds."""
        await self._listener.ensure()

    async def close(self) -> None:
        await self._listener.close()


class PostgresLane:
    def __init__(
        self,
        pool: asyncpg.Pool,
        listener: LaneListener,
        name: str,
        *,
        lock_seconds: float = 30.0,
        max_delivery_count: int = 10,
        poll_interval: float = 1.0,
    ) -> None:
        self.pool = pool
        self.listener = listener
        self.name = name
        self.lock_seconds = lock_seconds
        self.max_delivery_count = max_delivery_count
        self.poll_interval = poll_interval
        self._wake: asyncio.Event | None = None

    async def send_batch(self, messages: list[LaneMessage]) -> None:
        if not messages:
            return
        # One statement, a transaction of its own: the hints and their wake-up commit
        # together, with no BEGIN, COMMIT or separate NOTIFY round trips.
        await self.pool.execute(
            query("lane_send"),
            self.name,
            [m.message_id for m in messages],
            [m.properties() for m in messages],
        )

    async def receive(self, max_messages: int, max_wait: float) -> list[Received]:
        """Up to `max_messages` locked messages; waits up to `max_wait` for the first."""
        received = await self._when_available(lambda: self._receive_now(max_messages), max_wait)
        return received or []

    async def take(
        self,
        act: Callable[[asyncpg.Connection, list[LaneMessage]], Awaitable[list[T]]],
        max_messages: int,
        max_wait: float,
    ) -> list[T]:
        """Removes up to `max_messages` messages and hands them to `act` inside the same
        transaction, so they are gone if and only if what it did commits: no lock to
        hold, renew or lose meanwhile. Returns what `act` returned (nothing, when every
        message was stale), as soon as there were messages; waits up to `max_wait` for
        the first."""
        taken = await self._when_available(lambda: self._take_now(act, max_messages), max_wait)
        return taken or []

    async def _when_available(
        self, fetch: Callable[[], Awaitable[list[T] | None]], max_wait: float
    ) -> list[T] | None:
        """What `fetch` got, as soon as it got anything: None means the lane had no
        visible message, and then this waits for a notification or the next poll."""
        if self._wake is None:
            self._wake = await self.listener.subscribe(self.name)
        else:
            await self.listener.ensure()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            self._wake.clear()
            fetched = await fetch()
            remaining = deadline - loop.time()
            if fetched is not None or remaining <= 0:
                return fetched
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(remaining, self.poll_interval))

    async def _take_now(
        self,
        act: Callable[[asyncpg.Connection, list[LaneMessage]], Awaitable[list[T]]],
        max_messages: int,
    ) -> list[T] | None:
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(query("lane_take"), self.name, max_messages)
            if not rows:
                return None
            messages = []
            for row in rows:
                try:
                    messages.append(LaneMessage.from_properties(row["message_id"], row["body"]))
                except (KeyError, TypeError, ValueError) as error:
                    await self._bury(connection, row, f"{type(error).__name__}: {error}")
            return await act(connection, messages) if messages else []

    async def _bury(
        self, connection: asyncpg.Connection, row: asyncpg.Record, description: str
    ) -> None:
        await connection.execute(
            query("lane_bury"),
            row["id"],
            row["lane"],
            row["message_id"],
            row["body"],
            row["enqueued_at"],
            row["delivery_count"] + 1,
            "MalformedMessage",
            description,
        )
        self._dead_lettered(row["message_id"], "MalformedMessage")

    def _dead_lettered(self, message_id: str, reason: str) -> None:
        DEAD_LETTERS.labels(self.name).inc()
        log.warning(
            "lane_message_dead_lettered", lane=self.name, message_id=message_id, reason=reason
        )

    async def _receive_now(self, max_messages: int) -> list[Received] | None:
        rows = await self.pool.fetch(
            query("lane_receive"), self.name, max_messages, self.lock_seconds
        )
        if not rows:
            return None
        received = []
        for row in rows:
            if row["delivery_count"] > self.max_delivery_count:
                await self.pool.execute(
                    query("lane_dead_letter"),
                    row["id"],
                    None,
                    "MaxDeliveryCountExceeded",
                    f"delivered {self.max_delivery_count} times without being completed",
                )
                self._dead_lettered(row["message_id"], "MaxDeliveryCountExceeded")
                continue
            body: dict[str, Any] = row["body"]
            received.append(
                Received(
                    message=LaneMessage.from_properties(row["message_id"], body),
                    delivery_count=row["delivery_count"],
                    locked_until=row["visible_at"],
                    handle=(row["id"], row["lock_token"]),
                )
            )
        return received

    async def _settle(self, name: str, received: Received, *args: Any) -> Any:
        message_id, lock_token = received.handle
        result = await self.pool.fetchval(query(name), message_id, lock_token, *args)
        if result is None:
            raise LockLost(f"lock on message {received.message.message_id} was lost")
        return result

    async def complete(self, received: Received) -> None:
        if await self.complete_batch([received]):
            raise LockLost(f"lock on message {received.message.message_id} was lost")

    async def complete_batch(self, batch: list[Received]) -> list[Received]:
        if not batch:
            return []
        completed = set(
            await self.pool.fetchval(
                query("lane_complete"),
                [item.handle[0] for item in batch],
                [item.handle[1] for item in batch],
            )
            or ()
        )
        return [item for item in batch if item.handle[0] not in completed]

    async def abandon(self, received: Received) -> None:
        await self._settle("lane_abandon", received)

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        await self._settle("lane_dead_letter", received, reason, description)
        DEAD_LETTERS.labels(self.name).inc()

    async def renew_lock(self, received: Received) -> datetime:
        return await self._settle("lane_renew_lock", received, self.lock_seconds)

    async def depth(self) -> tuple[int, int]:
        row = await self.pool.fetchrow(query("lane_depth"), self.name)
        return row["active"], row["dead_lettered"]

    async def close(self) -> None:
        """Nothing to release: the pool and the listener belong to the caller."""
