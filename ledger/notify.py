"""LISTEN on a channel with a connection held for the purpose, reconnecting after the
connection is lost. Notifications are wake-ups only: every loop that listens also
polls, so a notification lost while reconnecting delays work, never loses it."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog

from ledger.database import ACQUIRE_SECONDS, DATABASE_TROUBLE

log = structlog.get_logger(__name__)

T = TypeVar("T")


def is_open(connection: asyncpg.Connection | None) -> bool:
    """Whether a connection held from the pool is still usable. When the server ends
    a connection (a restart, a failover), asyncpg hands it back to the pool itself and
    detaches the proxy the holder kept: asking that proxy anything then raises
    InterfaceError instead of answering "closed"."""
    if connection is None:
        return False
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False


class Listener:
    def __init__(self, pool: asyncpg.Pool, channel: str, on_payload: Callable[[str], None]) -> None:
        self.pool = pool
        self.channel = channel
        self.on_payload = on_payload
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # several loops may call ensure() at once

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_payload(payload)

    async def ensure(self) -> bool:
        """(Re)connect if needed; cheap when already listening. True when it connected
        now: whatever was sent while nobody listened is missed. Failures are logged and
        left to the caller's polling."""
        async with self._lock:
            if is_open(self._connection):
                return False
            await self.close()
            try:
                # Bounded as a whole: ensure() runs under the lock every listening loop
                # waits on, so a LISTEN that never answered would stop them all.
                async with asyncio.timeout(ACQUIRE_SECONDS):
                    self._connection = await self.pool.acquire()
                    await self._connection.add_listener(self.channel, self._notified)
            except DATABASE_TROUBLE as error:
                log.warning("listen_failed", channel=self.channel, error=type(error).__name__)
                await self.close()
                return False
            return True

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):  # a dead connection is released all the same
            await connection.remove_listener(self.channel, self._notified)
        with contextlib.suppress(Exception):
            await self.pool.release(connection)


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when one of `events` is set, or after `seconds`."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await `work`, or cancel it when `stop` is set first and return None. For a turn
    of a loop whose work may be abandoned at any await (one transaction that rolls
    back, or a read), so that SIGTERM ends the loop even while the database does not
    answer."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            # asyncpg bounds what a cancelled statement's connection takes to release.
            await asyncio.wait((task,), timeout=ACQUIRE_SECONDS)
    if not task.done() or task.cancelled():
        return None
    return task.result()
